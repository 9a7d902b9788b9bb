package stream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/reading"
)

// consumeFixture is a durable consumer of the ingest stream and a Consumer loop over it,
// run in the background until the test ends.
type consumeFixture struct {
	t     *testing.T
	srv   *Server
	conn  *Conn
	kinds *reading.Registry
	reg   *prometheus.Registry

	mu          sync.Mutex
	quarantined []Poisoned
}

func newConsumeFixture(t *testing.T) *consumeFixture {
	t.Helper()
	srv, conn := startTest(t)
	kinds, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return &consumeFixture{t: t, srv: srv, conn: conn, kinds: kinds, reg: prometheus.NewRegistry()}
}

// follow creates the durable consumer name (before anything is published: it delivers new
// messages only).
func (f *consumeFixture) follow(conn *Conn, name string, ackWait time.Duration) jetstream.Consumer {
	f.t.Helper()
	cons, err := Follow(context.Background(), conn.JS, Follower{Durable: name, AckWait: ackWait, MaxAckPending: 100})
	if err != nil {
		f.t.Fatal(err)
	}
	return cons
}

// run starts the loop with o (Name, Kinds and Quarantine filled in); it stops when the test
// ends or when the returned cancel is called, which waits for it.
func (f *consumeFixture) run(cons jetstream.Consumer, o ConsumerOptions) (cancel func()) {
	f.t.Helper()
	if o.Name == "" {
		o.Name = "test"
	}
	o.Kinds = f.kinds
	o.FetchWait = 200 * time.Millisecond
	o.Quarantine = func(_ context.Context, p Poisoned) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.quarantined = append(f.quarantined, p)
		return nil
	}
	c, err := NewConsumer(slog.New(slog.NewTextHandler(io.Discard, nil)), f.reg, o)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx, cons); err != nil {
			f.t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	cancel = func() { once.Do(func() { stop(); <-done }) }
	f.t.Cleanup(cancel)
	return cancel
}

// publish stores one batch of one heart-rate reading of subject and returns its sequence.
func (f *consumeFixture) publish(subject string) uint64 {
	f.t.Helper()
	p := reading.NewParser(f.kinds)
	raw := []byte(`{"subject":"` + subject + `","device":"hr-1","kind":"heart_rate","time":1795428000000,"values":{"bpm":70}}`)
	r, errs := p.Parse(raw)
	if errs != nil {
		f.t.Fatal(errs)
	}
	b := &Batch{Source: SourceHTTP, Received: time.Now(), Entries: []Entry{{Identity: r.Identity(), Reading: &r, Raw: raw}}}
	if _, err := f.conn.Publish(context.Background(), b); err != nil {
		f.t.Fatal(err)
	}
	return f.lastSeq()
}

// publishRaw stores data as is (not an envelope) and returns its sequence.
func (f *consumeFixture) publishRaw(data string) uint64 {
	f.t.Helper()
	ack, err := f.conn.JS.Publish(context.Background(), SubjectFor(SourceHTTP), []byte(data))
	if err != nil {
		f.t.Fatal(err)
	}
	return ack.Sequence
}

func (f *consumeFixture) lastSeq() uint64 {
	f.t.Helper()
	s, err := f.conn.JS.Stream(context.Background(), IngestStream)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return info.State.LastSeq
}

func (f *consumeFixture) poisoned() []Poisoned {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Poisoned(nil), f.quarantined...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ackedThrough waits until the consumer's ack floor reached seq and nothing is pending.
func ackedThrough(t *testing.T, cons jetstream.Consumer, seq uint64) {
	t.Helper()
	waitFor(t, "the consumer to acknowledge everything", 10*time.Second, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0 && info.NumPending == 0
	})
}

// attempts records each handler call of a subject: when and at which delivery.
type attempts struct {
	mu    sync.Mutex
	times map[string][]time.Time
	deliv map[string][]uint64
}

func (a *attempts) add(m *Msg) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.times == nil {
		a.times, a.deliv = map[string][]time.Time{}, map[string][]uint64{}
	}
	s := m.Batch.Entries[0].Reading.Subject
	a.times[s] = append(a.times[s], time.Now())
	a.deliv[s] = append(a.deliv[s], m.Delivered)
	return s
}

func (a *attempts) get(subject string) ([]time.Time, []uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.times[subject]...), append([]uint64(nil), a.deliv[subject]...)
}

// A handler error makes JetStream deliver the message again; once the handler succeeds the
// message is acknowledged and never delivered again, and messages behind it were not held up.
func TestConsumeRedeliversAfterHandlerError(t *testing.T) {
	f := newConsumeFixture(t)
	cons := f.follow(f.conn, "redeliver", 30*time.Second)
	var a attempts
	f.run(cons, ConsumerOptions{Name: "redeliver", Backoff: Backoff{Min: 50 * time.Millisecond, Max: time.Second},
		Handle: func(_ context.Context, m *Msg) error {
			if s := a.add(m); s == "flaky" && m.Delivered < 3 {
				return errors.New("state store unavailable")
			}
			return nil
		}})
	f.publish("flaky")
	last := f.publish("steady")
	ackedThrough(t, cons, last)
	_, deliv := a.get("flaky")
	if len(deliv) != 3 || deliv[0] != 1 || deliv[1] != 2 || deliv[2] != 3 {
		t.Fatalf("flaky message handled at deliveries %v, want [1 2 3]", deliv)
	}
	if _, d := a.get("steady"); len(d) != 1 {
		t.Errorf("steady message handled %d times", len(d))
	}
	// Acknowledged once done: no further delivery comes.
	time.Sleep(300 * time.Millisecond) // longer than the largest back-off used above
	if _, d := a.get("flaky"); len(d) != 3 {
		t.Errorf("delivered again after success: %v", d)
	}
	if got := f.counter(t, "pulselake_stream_consumer_retries_total", "redeliver"); got != 2 {
		t.Errorf("retries metric = %v, want 2", got)
	}
	if got := f.counter(t, "pulselake_stream_consumer_handled_total", "redeliver"); got != 2 {
		t.Errorf("handled metric = %v, want 2", got)
	}
	if len(f.poisoned()) != 0 {
		t.Errorf("quarantined %+v", f.poisoned())
	}
}

// counter finds the consumer's series of a metric family.
func (f *consumeFixture) counter(t *testing.T, name, consumer string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer" && l.GetValue() == consumer {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{consumer=%q}", name, consumer)
	return -1
}

// The waits between deliveries of a failing message grow: with Min 100 ms, the wait after
// the n-th failure is at least 50·2^(n-1) ms (and at most twice that, Max permitting; only the
// lower bounds are asserted on measured times, which a loaded machine can only lengthen).
func TestConsumeBackoffGrows(t *testing.T) {
	f := newConsumeFixture(t)
	cons := f.follow(f.conn, "backoff", 30*time.Second)
	var a attempts
	b := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	f.run(cons, ConsumerOptions{Name: "backoff", Backoff: b, Handle: func(_ context.Context, m *Msg) error {
		if a.add(m); m.Delivered < 5 {
			return errors.New("not yet")
		}
		return nil
	}})
	seq := f.publish("slow")
	ackedThrough(t, cons, seq)
	times, deliv := a.get("slow")
	if len(times) != 5 {
		t.Fatalf("%d deliveries %v, want 5", len(times), deliv)
	}
	var gaps []time.Duration
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]))
	}
	for i, g := range gaps {
		lower := b.Min << i / 2
		if g < lower {
			t.Errorf("wait after failure %d was %s, want at least %s (all: %v)", i+1, g, lower, gaps)
		}
	}
	// The first wait is at most 100 ms and the last at least 400 ms: a constant back-off
	// fails this whatever its value (300 ms of margin for a loaded machine).
	if first, last := gaps[0], gaps[len(gaps)-1]; first >= last {
		t.Errorf("the first wait %s is not shorter than the last %s: the back-off does not grow (%v)", first, last, gaps)
	}
	for attempt := 1; attempt <= 8; attempt++ {
		d := b.Delay(attempt)
		want := min(b.Min<<(attempt-1), b.Max)
		if d < want/2 || d > want {
			t.Errorf("Delay(%d) = %s, want in [%s, %s]", attempt, d, want/2, want)
		}
	}
}

// A message that cannot be decoded, one the handler rejects as poison, and one that fails
// MaxDeliver times are terminated: never delivered again, exactly one quarantine record each
// with its reason, and the messages behind them are handled.
func TestConsumePoisonIsTerminatedAndQuarantined(t *testing.T) {
	for _, tc := range []struct {
		name      string
		publish   func(f *consumeFixture) uint64
		handler   func(m *Msg) error
		reason    string
		delivered uint64
		calls     int // handler calls for the poison message
	}{
		{name: "undecodable", publish: func(f *consumeFixture) uint64 { return f.publishRaw("{\"v\":9}\nnot an envelope") },
			handler: func(*Msg) error { return nil }, reason: PoisonUndecodable, delivered: 1},
		{name: "rejected", publish: func(f *consumeFixture) uint64 { return f.publish("poison") },
			handler: func(m *Msg) error {
				if m.Batch.Entries[0].Reading.Subject == "poison" {
					return Poison(errors.New("reading refers to an unknown model"))
				}
				return nil
			}, reason: PoisonRejected, delivered: 1, calls: 1},
		{name: "max-deliver", publish: func(f *consumeFixture) uint64 { return f.publish("poison") },
			handler: func(m *Msg) error {
				if m.Batch.Entries[0].Reading.Subject == "poison" {
					return errors.New("always fails")
				}
				return nil
			}, reason: PoisonMaxDeliver, delivered: 3, calls: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newConsumeFixture(t)
			cons := f.follow(f.conn, "poison", 30*time.Second)
			var mu sync.Mutex
			calls := 0
			f.run(cons, ConsumerOptions{Name: "poison", MaxDeliver: 3, Backoff: Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
				Handle: func(_ context.Context, m *Msg) error {
					if m.Batch.Entries[0].Reading.Subject == "poison" {
						mu.Lock()
						calls++
						mu.Unlock()
					}
					return tc.handler(m)
				}})
			seq := tc.publish(f)
			last := f.publish("after")
			ackedThrough(t, cons, last)
			time.Sleep(200 * time.Millisecond) // a redelivery would come within the 50 ms back-off
			mu.Lock()
			if calls != tc.calls {
				t.Errorf("handler called %d times for the poison message, want %d", calls, tc.calls)
			}
			mu.Unlock()
			ps := f.poisoned()
			if len(ps) != 1 {
				t.Fatalf("quarantine records %+v, want exactly one", ps)
			}
			p := ps[0]
			if p.Reason != tc.reason || p.Seq != seq || p.Consumer != "poison" || p.Delivered != tc.delivered || p.Err == "" ||
				len(p.Data) == 0 || p.Subject != SubjectFor(SourceHTTP) || p.Stored.IsZero() {
				t.Errorf("quarantine record %+v, want reason %s seq %d delivered %d", p, tc.reason, seq, tc.delivered)
			}
			if tc.name == "undecodable" && string(p.Data) != "{\"v\":9}\nnot an envelope" {
				t.Errorf("raw payload %q", p.Data)
			}
			info, err := cons.Info(context.Background())
			if err != nil || info.NumAckPending != 0 || info.NumPending != 0 {
				t.Errorf("consumer still holds messages: %+v %v", info, err)
			}
			if got := f.counterWith(t, tc.reason); got != 1 {
				t.Errorf("poisoned metric = %v", got)
			}
		})
	}
}

func (f *consumeFixture) counterWith(t *testing.T, reason string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pulselake_stream_consumer_poisoned_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no poisoned_total{reason=%q}", reason)
	return -1
}

// A message is acknowledged only after its handler returned nil: when the consumer dies in
// the middle of the handler (its connection gone, nothing acknowledged), the message is
// delivered again, and acknowledged by the consumer that completes it.
func TestConsumeAcksOnlyAfterHandler(t *testing.T) {
	f := newConsumeFixture(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	doomed, err := Connect(context.Background(), log, ConnOptions{Server: f.srv, Name: "doomed"})
	if err != nil {
		t.Fatal(err)
	}
	const ackWait = time.Second
	cons := f.follow(doomed, "crash", ackWait)
	inHandler, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	stop := f.run(cons, ConsumerOptions{Name: "crash", Handle: func(context.Context, *Msg) error {
		once.Do(func() { close(inHandler) })
		<-release
		return nil
	}})
	seq := f.publish("p1")
	select {
	case <-inHandler:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not called")
	}
	info, err := f.follow(f.conn, "crash", ackWait).Info(context.Background())
	if err != nil || info.AckFloor.Stream >= seq || info.NumAckPending != 1 {
		t.Fatalf("acknowledged while the handler runs: %+v %v", info, err)
	}
	doomed.NC.Close() // the process dies: no acknowledgement, no negative one
	close(release)
	stop()
	doomed.pubNC.Close()

	var deliveries []uint64
	var mu sync.Mutex
	again := f.follow(f.conn, "crash", ackWait)
	f.run(again, ConsumerOptions{Name: "crash", Handle: func(_ context.Context, m *Msg) error {
		mu.Lock()
		deliveries = append(deliveries, m.Delivered)
		mu.Unlock()
		return nil
	}})
	ackedThrough(t, again, seq)
	mu.Lock()
	defer mu.Unlock()
	if len(deliveries) != 1 || deliveries[0] != 2 {
		t.Errorf("after the crash the message was handled at deliveries %v, want [2]", deliveries)
	}
}

// A consumer that stops (ctx cancelled) while its handler fails because of it hands the
// message back at once: the next run gets it without waiting for the ack wait.
func TestConsumeStopHandsMessageBack(t *testing.T) {
	f := newConsumeFixture(t)
	cons := f.follow(f.conn, "stop", time.Hour)
	inHandler := make(chan struct{})
	var once sync.Once
	stop := f.run(cons, ConsumerOptions{Name: "stop", Handle: func(ctx context.Context, _ *Msg) error {
		once.Do(func() { close(inHandler) })
		<-ctx.Done()
		return ctx.Err()
	}})
	seq := f.publish("p1")
	<-inHandler
	stop()
	got := make(chan uint64, 1)
	f.run(cons, ConsumerOptions{Name: "stop", Handle: func(_ context.Context, m *Msg) error {
		select {
		case got <- m.Delivered:
		default:
		}
		return nil
	}})
	select {
	case d := <-got:
		if d != 2 {
			t.Errorf("delivery %d, want 2", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message not delivered again within 10 s (the ack wait is an hour)")
	}
	ackedThrough(t, cons, seq)
}

// A HandleBatch consumer holds messages until FlushInterval, retries a failing batch in
// place (no redelivery, stream order kept) and acknowledges it once handled.
func TestConsumeBatchRetriesInPlace(t *testing.T) {
	f := newConsumeFixture(t)
	cons := f.follow(f.conn, "batch", 30*time.Second)
	var mu sync.Mutex
	var calls [][]uint64
	f.run(cons, ConsumerOptions{Name: "batch", Mode: ModeRetryInPlace, FlushInterval: 300 * time.Millisecond,
		Backoff: Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		HandleBatch: func(_ context.Context, msgs []*Msg) error {
			mu.Lock()
			defer mu.Unlock()
			var seqs []uint64
			for _, m := range msgs {
				if m.Delivered != 1 {
					t.Errorf("message %d delivered %d times", m.Seq, m.Delivered)
				}
				seqs = append(seqs, m.Seq)
			}
			calls = append(calls, seqs)
			if len(calls) < 3 {
				return errors.New("catalog unavailable")
			}
			return nil
		}})
	f.publish("a")
	f.publish("b")
	last := f.publish("c")
	ackedThrough(t, cons, last)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 3 {
		t.Fatalf("calls %v", calls)
	}
	// The retries hand over the same messages in stream order.
	for _, c := range calls[:3] {
		if len(c) != len(calls[0]) || c[0] != calls[0][0] {
			t.Errorf("retries differ: %v", calls)
		}
		for i := 1; i < len(c); i++ {
			if c[i] != c[i-1]+1 {
				t.Errorf("not in stream order: %v", c)
			}
		}
	}
}
