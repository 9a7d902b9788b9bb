package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/anomaly"
	"github.com/pulselake/pulselake/internal/detectors"
	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

// TestRuleAndDetectorAlertsLookAlike raises a rule alert (a rule engine consuming an embedded
// JetStream) and a detector alert (the streaming runner) on the same heart-rate series, and
// checks that GET /v1/alerts lists both with the same JSON fields and that their
// notifications carry the same fields, firing and resolved.
func TestRuleAndDetectorAlertsLookAlike(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := stream.Connect(ctx, log, stream.ConnOptions{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	defer conn.Close()
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	notices := map[string][]notify.Alert{} // by alertname
	var recorded []alert.Transition
	out := alert.Outputs{
		Notify: func(_ context.Context, as []notify.Alert) error {
			mu.Lock()
			defer mu.Unlock()
			for _, a := range as {
				notices[a.Labels["alertname"]] = append(notices[a.Labels["alertname"]], a)
			}
			return nil
		},
		Record: func(_ context.Context, ts []alert.Transition) error {
			mu.Lock()
			defer mu.Unlock()
			recorded = append(recorded, ts...)
			return nil
		},
	}
	eng, err := rules.NewEngine(ctx, log, nil, rules.Options{
		Rules: []rules.Rule{{Name: "hr-high", Kind: "heart_rate", When: "bpm > 150", Severity: "critical",
			Labels: map[string]string{"team": "cardio"}, Summary: "heart rate {{ .bpm }} for {{ .subject }}"}},
		JS: conn.JS, Consumer: "rules-test", Notify: out.Notify, Sink: out.Record, TickInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := eng.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	defer wg.Wait()
	defer cancel()
	// The engine's consumer delivers what is stored after it exists: wait for it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := conn.JS.Consumer(ctx, stream.IngestStream, "rules-test"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rule engine did not create its consumer")
		}
	}

	now := time.Now().UTC().Truncate(time.Second)
	ds, errs := anomaly.CompileDetectors([]anomaly.DetectorSpec{{Name: "hr-shift", Kind: "heart_rate", Value: "bpm", Method: "timeshift",
		Params:   anomaly.Params{Set: &anomaly.TimeShiftParams{Shift: anomaly.Duration(2 * time.Minute), Step: anomaly.Duration(time.Minute)}},
		Severity: "critical", Labels: map[string]string{"team": "cardio"}, ResolveAfter: anomaly.Duration(30 * time.Second)}}, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	detNow := now
	det, err := detectors.New(log, nil, detectors.Options{Detectors: ds, Out: detectors.Outputs{Alerts: out},
		Now: func() time.Time { return detNow }})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()

	// The series: steady, then a jump that both the rule (> 150) and the detector flag.
	t0 := now.Add(-5 * time.Minute)
	series := []*reading.Reading{hr("s1", "w1", t0, 70), hr("s1", "w1", t0.Add(time.Minute), 70),
		hr("s1", "w1", t0.Add(2*time.Minute), 70), hr("s1", "w1", t0.Add(3*time.Minute), 200)}
	b := &stream.Batch{Source: stream.SourceHTTP, Received: now}
	for _, r := range series {
		det.Observe(ctx, r)
		raw, _ := json.Marshal(map[string]any{"subject": r.Subject, "device": r.Device, "kind": r.Kind, "time": r.Time.UnixMilli(), "values": r.Values})
		b.Entries = append(b.Entries, stream.Entry{Identity: r.Identity(), Reading: r, Raw: raw})
	}
	if _, err := conn.Publish(ctx, b); err != nil {
		t.Fatal(err)
	}
	a := &alerting{engine: eng}
	a.addSource(det.Alerts)
	listed := func() map[string]map[string]any {
		rec := httptest.NewRecorder()
		a.listAlerts(rec, httptest.NewRequest(http.MethodGet, "/v1/alerts", nil), token.Token{})
		var body struct{ Alerts []map[string]any }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("GET /v1/alerts: %d %s", rec.Code, rec.Body)
		}
		m := map[string]map[string]any{}
		for _, al := range body.Alerts {
			m[al["rule"].(string)] = al
		}
		return m
	}
	deadline := time.Now().Add(10 * time.Second)
	var got map[string]map[string]any
	for got = listed(); len(got) < 2 && time.Now().Before(deadline); got = listed() {
		time.Sleep(20 * time.Millisecond)
	}
	rule, detector := got["hr-high"], got["hr-shift"]
	if rule == nil || detector == nil {
		t.Fatalf("GET /v1/alerts listed %v", got)
	}
	if k1, k2 := slices.Sorted(maps.Keys(rule)), slices.Sorted(maps.Keys(detector)); !slices.Equal(k1, k2) {
		t.Errorf("JSON fields differ:\n rule     %v\n detector %v", k1, k2)
	}
	for field, want := range map[string][2]any{"state": {"firing", "firing"}, "source": {"rule", "detector"},
		"subject": {"s1", "s1"}, "device": {"w1", "w1"}, "kind": {"heart_rate", "heart_rate"}, "severity": {"critical", "critical"}} {
		if rule[field] != want[0] || detector[field] != want[1] {
			t.Errorf("%s: rule %v detector %v", field, rule[field], detector[field])
		}
	}
	for _, l := range []string{"alertname", "subject", "device", "kind", "severity", "team"} {
		if rule["labels"].(map[string]any)[l] == nil || detector["labels"].(map[string]any)[l] == nil {
			t.Errorf("label %s: rule %v detector %v", l, rule["labels"], detector["labels"])
		}
	}

	// Resolution: the rule's condition clears, the detector sees no anomaly for resolve_after.
	b = &stream.Batch{Source: stream.SourceHTTP, Received: now}
	r := hr("s1", "w1", t0.Add(4*time.Minute), 70)
	raw, _ := json.Marshal(map[string]any{"subject": r.Subject, "device": r.Device, "kind": r.Kind, "time": r.Time.UnixMilli(), "values": r.Values})
	b.Entries = append(b.Entries, stream.Entry{Identity: r.Identity(), Reading: r, Raw: raw})
	if _, err := conn.Publish(ctx, b); err != nil {
		t.Fatal(err)
	}
	detNow = detNow.Add(30 * time.Second)
	det.Tick(ctx)
	for time.Now().Before(deadline) {
		if got = listed(); got["hr-high"]["state"] == "resolved" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got["hr-high"]["state"] != "resolved" || got["hr-shift"]["state"] != "resolved" {
		t.Fatalf("after resolution: %v", got)
	}
	if k1, k2 := slices.Sorted(maps.Keys(got["hr-high"])), slices.Sorted(maps.Keys(got["hr-shift"])); !slices.Equal(k1, k2) {
		t.Errorf("resolved JSON fields differ:\n rule     %v\n detector %v", k1, k2)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{"hr-high", "hr-shift"} {
		ns := notices[name]
		if len(ns) < 2 {
			t.Fatalf("%s: notices %+v", name, ns)
		}
		fire, res := ns[0], ns[len(ns)-1]
		if fire.StartsAt.IsZero() || !fire.EndsAt.IsZero() || fire.Labels["team"] != "cardio" || fire.Values["bpm"] != 200 ||
			fire.Annotations["summary"] == "" || fire.Labels["subject"] != "s1" {
			t.Errorf("%s firing notice %+v", name, fire)
		}
		if !res.StartsAt.Equal(fire.StartsAt) || res.EndsAt.IsZero() || !res.EndsAt.After(res.StartsAt) && !res.EndsAt.Equal(res.StartsAt) {
			t.Errorf("%s resolved notice %+v (fired %v)", name, res, fire.StartsAt)
		}
	}
	var froms []string
	for _, tr := range recorded {
		froms = append(froms, tr.Alert.Rule+":"+tr.From+">"+tr.Alert.State)
	}
	slices.Sort(froms)
	if want := []string{"hr-high:firing>resolved", "hr-high:inactive>firing", "hr-shift:firing>resolved", "hr-shift:inactive>firing"}; !slices.Equal(froms, want) {
		t.Errorf("recorded transitions %v, want %v", froms, want)
	}
}

func hr(subject, device string, at time.Time, bpm float64) *reading.Reading {
	return &reading.Reading{Subject: subject, Device: device, Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": bpm}}
}
