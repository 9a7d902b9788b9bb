package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startStream starts an embedded JetStream server in a temporary directory.
func startStream(t testing.TB) *stream.Conn {
	t.Helper()
	log := discard()
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := stream.Connect(context.Background(), log, stream.ConnOptions{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Shutdown(context.Background())
	})
	if err := conn.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return conn
}

func publish(t testing.TB, conn *stream.Conn, readings ...string) {
	t.Helper()
	p := reading.NewParser(registry(t))
	b := &stream.Batch{Source: stream.SourceHTTP, Received: time.Now()}
	for _, raw := range readings {
		r, errs := p.Parse([]byte(raw))
		if errs != nil {
			t.Fatalf("parsing %s: %v", raw, errs)
		}
		b.Entries = append(b.Entries, stream.Entry{Identity: r.Identity(), Reading: &r, Raw: []byte(raw)})
	}
	if _, err := conn.Publish(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func bp(device string, sys, dia int, at time.Time) string {
	return fmt.Sprintf(`{"subject":"patient-17","device":%q,"kind":"blood_pressure","time":%d,"values":{"systolic":%d,"diastolic":%d}}`,
		device, at.UnixMilli(), sys, dia)
}

// mailbox is an SMTP backend that keeps every message.
type mailbox struct {
	mu    sync.Mutex
	msgs  []string
	auths []string
}

func (m *mailbox) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{m: m}, nil }

type session struct {
	m  *mailbox
	to []string
}

func (s *session) Reset()                                    {}
func (s *session) Logout() error                             { return nil }
func (s *session) Mail(string, *smtp.MailOptions) error      { return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = append(s.to, to); return nil }
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.mu.Lock()
	s.m.msgs = append(s.m.msgs, "RCPT "+strings.Join(s.to, ",")+"\r\n"+string(b))
	s.m.mu.Unlock()
	return nil
}

func (m *mailbox) all() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.msgs...)
}

func startSMTP(t testing.TB) (*mailbox, string) {
	t.Helper()
	mb := &mailbox{}
	s := smtp.NewServer(mb)
	s.Domain = "localhost"
	s.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return mb, l.Addr().String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dur(d time.Duration) *yamlconf.Duration { v := yamlconf.Duration(d); return &v }

type running struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (r *running) stop() {
	r.cancel()
	r.wg.Wait()
}

func start(fns ...func(context.Context) error) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel}
	for _, f := range fns {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			_ = f(ctx)
		}()
	}
	return r
}

func kv(t testing.TB, conn *stream.Conn, name string) jetstream.KeyValue {
	t.Helper()
	b, err := conn.KV(context.Background(), name, "test")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A crisis reading published into the stream produces exactly one email with the reading in
// it; a second crisis within repeat_interval produces none; normal readings bring the
// resolved notice.
func TestCrisisEmailEndToEnd(t *testing.T) {
	conn := startStream(t)
	mb, addr := startSMTP(t)
	ctx := context.Background()
	d, err := notify.New(ctx, discard(), prometheus.NewRegistry(), notify.Options{
		Config: notify.Config{
			Channels: []notify.Channel{{Name: "ward-email", Email: &notify.EmailConfig{To: []string{"nurse@example.org"}, SMTP: addr, From: "pulselake@example.org"}}},
			Route:    &notify.Route{GroupWait: dur(0), GroupInterval: dur(50 * time.Millisecond), RepeatInterval: dur(time.Hour)},
		},
		Log: kv(t, conn, "notify_log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(ctx, discard(), prometheus.NewRegistry(), Options{
		Rules: []Rule{{Name: "hypertensive-crisis", Kind: "blood_pressure", When: "systolic >= 180 || diastolic >= 120",
			Severity: "critical", Summary: "BP {{.systolic}}/{{.diastolic}} on {{.device}}"}},
		JS: conn.JS, State: kv(t, conn, "alerts"), Notify: d.Notify, TickInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := start(e.Run, d.Run)
	defer r.stop()
	waitFor(t, "the rules consumer", 10*time.Second, func() bool {
		_, err := conn.JS.Consumer(ctx, stream.IngestStream, "rules")
		return err == nil
	})

	now := time.Now()
	publish(t, conn, bp("bp-0042", 185, 95, now))
	waitFor(t, "the crisis email", 10*time.Second, func() bool { return len(mb.all()) >= 1 })
	msg := mb.all()[0]
	for _, want := range []string{"nurse@example.org", "FIRING", "hypertensive-crisis", "BP 185/95 on bp-0042", "systolic=185", "diastolic=95", "patient-17"} {
		if !strings.Contains(msg, want) {
			t.Errorf("email lacks %q:\n%s", want, msg)
		}
	}

	// A second crisis for the same device within repeat_interval: no email.
	publish(t, conn, bp("bp-0042", 190, 100, now.Add(time.Second)))
	waitFor(t, "the second reading evaluated", 10*time.Second, func() bool {
		as := e.Alerts(StateFiring)
		return len(as) == 1 && as[0].Values["systolic"] == 190
	})
	// The reading normalizes: the resolved notice arrives.
	publish(t, conn, bp("bp-0042", 128, 82, now.Add(2*time.Second)))
	waitFor(t, "the resolved email", 10*time.Second, func() bool { return len(mb.all()) >= 2 })
	msgs := mb.all()
	if len(msgs) != 2 {
		t.Fatalf("got %d emails, want 2 (firing, resolved):\n%s", len(msgs), strings.Join(msgs, "\n----\n"))
	}
	if !strings.Contains(msgs[1], "RESOLVED") || !strings.Contains(msgs[1], "Subject: [RESOLVED]") {
		t.Errorf("second email is not the resolved notice:\n%s", msgs[1])
	}
	if got := e.Alerts(StateResolved); len(got) != 1 {
		t.Errorf("resolved alerts = %+v", got)
	}
}

// webhookReceiver counts notifications; fail makes the first n requests fail with 500.
type webhookReceiver struct {
	mu   sync.Mutex
	msgs []notify.WebhookMessage
	fail int
	hits int
	srv  *httptest.Server
}

func newReceiver(t testing.TB, fail int) *webhookReceiver {
	w := &webhookReceiver{fail: fail}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.hits++
		if w.hits <= w.fail {
			rw.WriteHeader(http.StatusInternalServerError)
			return
		}
		var m notify.WebhookMessage
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&m); err != nil {
			t.Errorf("decoding webhook: %v", err)
		}
		w.msgs = append(w.msgs, m)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookReceiver) got() []notify.WebhookMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]notify.WebhookMessage(nil), w.msgs...)
}

// clock is the real time shifted by an offset that tests advance.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.offset) }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.offset += d; c.mu.Unlock() }

// Restarts during pending and firing keep the state (KV) and send no duplicate.
func TestRestartKeepsAlertState(t *testing.T) {
	conn := startStream(t)
	rcv := newReceiver(t, 0)
	state, nflog := kv(t, conn, "alerts"), kv(t, conn, "notify_log")
	ck := &clock{}
	ctx := context.Background()
	rules := []Rule{{Name: "crisis", Kind: "blood_pressure", When: "systolic >= 180", For: yamlconf.Duration(time.Minute), Severity: "critical"}}
	boot := func() (*Engine, *running) {
		d, err := notify.New(ctx, discard(), nil, notify.Options{
			Config: notify.Config{Channels: []notify.Channel{{Name: "hook", Webhook: &notify.WebhookConfig{URL: rcv.srv.URL}}},
				Route: &notify.Route{GroupWait: dur(0), GroupInterval: dur(20 * time.Millisecond)}},
			Log: nflog, Now: ck.now,
		})
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewEngine(ctx, discard(), nil, Options{Rules: rules, JS: conn.JS, State: state, Notify: d.Notify, Now: ck.now, TickInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return e, start(e.Run, d.Run)
	}
	e, r := boot()
	waitFor(t, "the rules consumer", 10*time.Second, func() bool {
		_, err := conn.JS.Consumer(ctx, stream.IngestStream, "rules")
		return err == nil
	})
	publish(t, conn, bp("bp-1", 200, 90, time.Now()))
	waitFor(t, "pending", 10*time.Second, func() bool { return len(e.Alerts(StatePending)) == 1 })
	activeAt := e.Alerts(StatePending)[0].ActiveAt
	r.stop()

	// Restart during pending: the alert is still pending with the same start.
	e, r = boot()
	if p := e.Alerts(StatePending); len(p) != 1 || !p[0].ActiveAt.Equal(activeAt) {
		t.Fatalf("after restart pending = %+v", p)
	}
	ck.add(61 * time.Second)
	e.Tick(ctx)
	waitFor(t, "the firing webhook", 10*time.Second, func() bool { return len(rcv.got()) == 1 })
	r.stop()

	// Restart during firing: still firing, and the receiver is not told again.
	e, r = boot()
	defer r.stop()
	if f := e.Alerts(StateFiring); len(f) != 1 {
		t.Fatalf("after restart firing = %+v", f)
	}
	publish(t, conn, bp("bp-1", 120, 80, time.Now()))
	waitFor(t, "the resolved webhook", 10*time.Second, func() bool { return len(rcv.got()) == 2 })
	got := rcv.got()
	if got[0].Status != "firing" || got[1].Status != "resolved" {
		t.Errorf("statuses %s, %s; want firing, resolved", got[0].Status, got[1].Status)
	}
}
