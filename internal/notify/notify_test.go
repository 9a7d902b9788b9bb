package notify

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func dur(d time.Duration) *yamlconf.Duration { v := yamlconf.Duration(d); return &v }

type receiver struct {
	mu   sync.Mutex
	msgs []WebhookMessage
	hits int
	fail int
	srv  *httptest.Server
}

func newReceiver(t *testing.T, fail int) *receiver {
	r := &receiver{fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.hits++
		if r.hits <= r.fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var m WebhookMessage
		if err := json.NewDecoder(req.Body).Decode(&m); err != nil {
			t.Errorf("decoding: %v", err)
		}
		r.msgs = append(r.msgs, m)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []WebhookMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]WebhookMessage(nil), r.msgs...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func run(t *testing.T, o Options, reg prometheus.Registerer) *Dispatcher {
	t.Helper()
	d, err := New(context.Background(), discard(), reg, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return d
}

func alert(name, subject, device, severity string) Alert {
	return Alert{Labels: map[string]string{"alertname": name, "subject": subject, "device": device, "severity": severity},
		Annotations: map[string]string{"summary": name + " on " + device}, StartsAt: time.Now()}
}

func TestGroupingWaitsAndBatches(t *testing.T) {
	rcv := newReceiver(t, 0)
	d := run(t, Options{Config: Config{
		Channels: []Channel{{Name: "hook", Webhook: &WebhookConfig{URL: rcv.srv.URL}}},
		Route:    &Route{GroupBy: []string{"subject"}, GroupWait: dur(200 * time.Millisecond), GroupInterval: dur(time.Hour)},
	}}, nil)
	ctx := context.Background()
	_ = d.Notify(ctx, []Alert{alert("crisis", "p1", "bp-1", "critical")})
	_ = d.Notify(ctx, []Alert{alert("tachy", "p1", "hr-1", "warning")})
	_ = d.Notify(ctx, []Alert{alert("crisis", "p2", "bp-2", "critical")})
	waitFor(t, "two group notifications", func() bool { return len(rcv.got()) == 2 })
	bySubject := map[string]int{}
	for _, m := range rcv.got() {
		bySubject[m.GroupLabels["subject"]] = len(m.Alerts)
	}
	if bySubject["p1"] != 2 || bySubject["p2"] != 1 {
		t.Errorf("alerts per group = %v, want p1:2 p2:1", bySubject)
	}
	// A re-sent firing alert within repeat_interval is de-duplicated.
	_ = d.Notify(ctx, []Alert{alert("crisis", "p2", "bp-2", "critical")})
	if n := len(rcv.got()); n != 2 {
		t.Errorf("got %d notifications after a duplicate", n)
	}
}

func TestSilencesMute(t *testing.T) {
	rcv := newReceiver(t, 0)
	sil, err := NewSilences(context.Background(), discard(), SilencesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sil.Close()
	d := run(t, Options{Silences: sil, Config: Config{
		Channels: []Channel{{Name: "hook", Webhook: &WebhookConfig{URL: rcv.srv.URL}}},
		Route:    &Route{GroupBy: []string{"device"}, GroupWait: dur(0), GroupInterval: dur(20 * time.Millisecond)},
	}}, nil)
	// Create through the HTTP API.
	h := SilencesHandler(sil, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/silences",
		strings.NewReader(`{"matchers":["device=bp-1"],"duration":"1h","createdBy":"nurse","comment":"cuff being replaced"}`)))
	if w.Code != http.StatusOK {
		t.Fatalf("POST /v1/silences: %d %s", w.Code, w.Body)
	}
	var created struct{ SilenceID string }
	_ = json.Unmarshal(w.Body.Bytes(), &created)

	ctx := context.Background()
	_ = d.Notify(ctx, []Alert{alert("crisis", "p1", "bp-1", "critical"), alert("crisis", "p1", "bp-2", "critical")})
	waitFor(t, "the unsilenced alert", func() bool { return len(rcv.got()) == 1 })
	if dev := rcv.got()[0].Alerts[0].Labels["device"]; dev != "bp-2" {
		t.Errorf("notified %s, want bp-2 only", dev)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/silences", nil))
	if !strings.Contains(w.Body.String(), `"state":"active"`) || !strings.Contains(w.Body.String(), "cuff being replaced") {
		t.Errorf("GET /v1/silences = %s", w.Body)
	}
	// Expiring the silence lets the alert through at the next group interval.
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodDelete, "/v1/silences/"+created.SilenceID, nil))
	if w.Code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body)
	}
	waitFor(t, "the alert after the silence expired", func() bool { return len(rcv.got()) == 2 })
}

func TestInhibition(t *testing.T) {
	rcv := newReceiver(t, 0)
	d := run(t, Options{Config: Config{
		Channels:     []Channel{{Name: "hook", Webhook: &WebhookConfig{URL: rcv.srv.URL}}},
		Route:        &Route{GroupBy: []string{"alertname"}, GroupWait: dur(50 * time.Millisecond), GroupInterval: dur(time.Hour)},
		InhibitRules: []InhibitRule{{SourceMatchers: []string{"alertname=crisis-severe"}, TargetMatchers: []string{"alertname=crisis"}, Equal: []string{"device"}}},
	}}, nil)
	ctx := context.Background()
	_ = d.Notify(ctx, []Alert{
		alert("crisis-severe", "p1", "bp-1", "critical"),
		alert("crisis", "p1", "bp-1", "critical"), // inhibited: same device
		alert("crisis", "p2", "bp-2", "critical"), // not inhibited
	})
	waitFor(t, "two notifications", func() bool { return len(rcv.got()) == 2 })
	for _, m := range rcv.got() {
		if m.GroupLabels["alertname"] == "crisis" && (len(m.Alerts) != 1 || m.Alerts[0].Labels["device"] != "bp-2") {
			t.Errorf("crisis notification = %+v, want only bp-2", m.Alerts)
		}
	}
}

func TestWebhookRetriesFlakyReceiver(t *testing.T) {
	rcv := newReceiver(t, 3)
	reg := prometheus.NewRegistry()
	d := run(t, Options{RetryBase: 10 * time.Millisecond, RetryMax: 40 * time.Millisecond, Config: Config{
		Channels: []Channel{{Name: "hook", Webhook: &WebhookConfig{URL: rcv.srv.URL}}},
		Route:    &Route{GroupWait: dur(0), GroupInterval: dur(time.Hour)},
	}}, reg)
	a := alert("crisis", "p1", "bp-1", "critical")
	_ = d.Notify(context.Background(), []Alert{a})
	waitFor(t, "delivery after retries", func() bool { return len(rcv.got()) == 1 })
	if n := counter(d.mRetries.WithLabelValues("hook")); n != 3 {
		t.Errorf("retries = %v, want 3", n)
	}
	// Resolved notice.
	a.EndsAt = time.Now()
	_ = d.Notify(context.Background(), []Alert{a})
	if len(rcv.got()) != 1 {
		t.Fatal("resolved notice before group_interval")
	}
}

func TestQueueDropsAreCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	d := run(t, Options{QueueSize: 1, Workers: 1, Config: Config{
		Channels: []Channel{{Name: "hook", Webhook: &WebhookConfig{URL: srv.URL}}},
		Route:    &Route{GroupBy: []string{"device"}, GroupWait: dur(0), GroupInterval: dur(time.Hour)},
	}}, reg)
	for _, dev := range []string{"a", "b", "c", "d"} {
		_ = d.Notify(context.Background(), []Alert{alert("x", "p", dev, "info")})
	}
	waitFor(t, "drops", func() bool { return counter(d.mDropped) >= 1 })
}

func TestConfigValidate(t *testing.T) {
	c := Config{
		Channels: []Channel{
			{Name: "mail", Email: &EmailConfig{To: []string{"nurse"}, SMTP: "nohost"}},
			{Name: "mail", Webhook: &WebhookConfig{URL: "ftp://x"}},
			{Name: "both"},
		},
		Route:        &Route{Receiver: "nope", Routes: []*Route{{Matchers: []string{"severity=~("}}}},
		InhibitRules: []InhibitRule{{}},
	}
	var all []string
	for _, e := range c.Validate() {
		all = append(all, e.Error())
	}
	got := strings.Join(all, "\n")
	for _, want := range []string{"notify[0].email.to[0]:", "notify[0].email.smtp:", "notify[1].name:", "notify[1].webhook.url:",
		"notify[2]: want exactly one", "route.receiver:", "route.routes[0].matchers[0]:", "inhibit_rules[0].source_matchers:"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
}

func TestMatchers(t *testing.T) {
	l := map[string]string{"severity": "critical", "device": "bp-1"}
	for s, want := range map[string]bool{
		"severity=critical": true, "severity!=critical": false, `device=~"bp-.*"`: true, "device!~bp-.*": false, "missing=": true,
	} {
		m, err := ParseMatcher(s)
		if err != nil {
			t.Fatal(err)
		}
		if m.Matches(l) != want {
			t.Errorf("%s matches = %v", s, !want)
		}
	}
}

func counter(c prometheus.Metric) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

func TestSilencesListFilteredBySubject(t *testing.T) {
	sil, err := NewSilences(context.Background(), discard(), SilencesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sil.Close()
	all := SilencesHandler(sil, nil)
	for _, body := range []string{
		`{"matchers":["subject=p1"],"duration":"1h","comment":"p1 only"}`,
		`{"matchers":["subject=p1","device=bp-1"],"duration":"1h","comment":"p1 cuff"}`,
		`{"matchers":["subject=~p1|p2"],"duration":"1h","comment":"regex"}`,
		`{"matchers":["subject!=p1"],"duration":"1h","comment":"not p1"}`,
		`{"matchers":["device=bp-1"],"duration":"1h","comment":"any subject"}`,
		`{"matchers":["subject=p2"],"duration":"1h","comment":"p2 only"}`,
	} {
		w := httptest.NewRecorder()
		all.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/silences", strings.NewReader(body)))
		if w.Code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", body, w.Code, w.Body)
		}
	}
	list := func(h http.Handler) []string {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/silences", nil))
		var got []Silence
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("GET: %d %s", w.Code, w.Body)
		}
		var comments []string
		for _, s := range got {
			comments = append(comments, s.Comment)
		}
		slices.Sort(comments)
		return comments
	}
	if got := list(all); len(got) != 6 {
		t.Errorf("unfiltered list = %q", got)
	}
	p1 := SilencesHandler(sil, func(s Silence) bool { return SilenceSubject(s) == "p1" })
	if got, want := list(p1), []string{"p1 cuff", "p1 only"}; !slices.Equal(got, want) {
		t.Errorf("list for p1 = %q, want %q", got, want)
	}
}

// An alert that resolves while its firing notification is still being delivered gets its
// resolved notice once that delivery is recorded: the receiver was told it fires.
func TestResolvedWhileFiringInFlight(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []WebhookMessage
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var m WebhookMessage
		if err := json.NewDecoder(req.Body).Decode(&m); err != nil {
			t.Errorf("decoding: %v", err)
		}
		mu.Lock()
		got = append(got, m)
		first := len(got) == 1
		mu.Unlock()
		if first {
			<-release // the firing notification is slow to deliver
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	messages := func() []WebhookMessage {
		mu.Lock()
		defer mu.Unlock()
		return append([]WebhookMessage(nil), got...)
	}
	d := run(t, Options{Config: Config{
		Channels: []Channel{{Name: "hook", Webhook: &WebhookConfig{URL: srv.URL}}},
		Route:    &Route{GroupWait: dur(0), GroupInterval: dur(20 * time.Millisecond), RepeatInterval: dur(time.Hour)},
	}}, nil)
	ctx := context.Background()
	a := alert("crisis", "p1", "bp-1", "critical")
	_ = d.Notify(ctx, []Alert{a})
	waitFor(t, "the firing notification to reach the receiver", func() bool { return len(messages()) == 1 })
	a.EndsAt = time.Now()
	_ = d.Notify(ctx, []Alert{a})
	// Several group intervals pass while the firing notification is in flight.
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		d.poke()
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	waitFor(t, "the resolved notification", func() bool { return len(messages()) == 2 })
	if m := messages()[1]; m.Status != StatusResolved {
		t.Errorf("second notification status = %q, want resolved", m.Status)
	}
}
