package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/pulselake/pulselake/internal/reading"
)

// Options configures a simulation run.
type Options struct {
	Kind     string        // bp, hr, accelerometer or ecg
	Target   string        // http(s)://host:port or mqtt://host:port
	Token    string        // ingest token
	Devices  int           // number of devices (default 10)
	Rate     float64       // readings per second over all devices (default 10)
	Duration time.Duration // how long to run (0: until ctx ends)
	Seed     uint64        // random seed; same seed, same readings
	Abnormal float64       // share of clinically abnormal readings (default 0.01)
	Invalid  float64       // share of invalid readings that must be rejected (default 0)
	Batch    int           // readings per HTTP request at most (default 500)
	// Start is the time of the first reading (default now); readings advance in real time.
	Start time.Time
	// OnResult is called after each HTTP batch or MQTT message with its counts.
	OnResult func(Stats)
}

// Stats counts what a run sent and what the server answered.
type Stats struct {
	Sent, Accepted, Duplicates, Rejected, Failed int64
	Abnormal, Invalid                            int64
}

// ErrTokenRefused is returned by Run when the server refuses the token (HTTP 401 or 403): every
// later reading would be refused too, so the run stops at once.
var ErrTokenRefused = errors.New("the server refused the token")

// Backoff between attempts while the server cannot be reached: doubling from the first wait up
// to the last, so a simulator left running against a stopped server costs nothing.
const (
	unreachableFirstWait = 250 * time.Millisecond
	unreachableMaxWait   = 5 * time.Second
)

// Run simulates until the duration elapses or ctx ends, and returns the totals. When the server
// cannot be reached, production pauses and sends are retried with back-off (one log line when it
// goes away, one when it is back); readings still unsent at the end count as failed. When the
// server refuses the token, Run stops and returns an error wrapping ErrTokenRefused.
func Run(ctx context.Context, log *slog.Logger, o Options) (Stats, error) {
	o = o.withDefaults()
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	devs, err := newFleet(o.Kind, o.Devices, rng)
	if err != nil {
		return Stats{}, err
	}
	send, closeSender, err := openSender(ctx, o)
	if err != nil {
		return Stats{}, err
	}
	defer closeSender()
	// The duration ends production; batches already handed to the workers are still sent
	// (under the caller's context), so a run's last batch is not counted as failed.
	sendCtx := ctx
	ctx, stop := context.WithCancelCause(ctx) // stop ends production on a refused token
	defer stop(nil)
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}

	var st statsCounter
	w := &worker{log: log.With("target", o.Target), send: send, st: &st, onResult: o.OnResult, stop: stop}
	// Readings are sent by a few workers so throughput does not wait on round trips.
	batches := make(chan simBatch, 8)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.sendBatches(sendCtx, ctx, batches)
		}()
	}
	produce(ctx, o, rng, devs, batches)
	close(batches)
	wg.Wait()
	if err := context.Cause(ctx); errors.Is(err, ErrTokenRefused) {
		return st.snapshot(), err
	}
	return st.snapshot(), nil
}

// withDefaults returns o with its documented defaults filled in.
func (o Options) withDefaults() Options {
	if o.Devices <= 0 {
		o.Devices = 10
	}
	if o.Rate <= 0 {
		o.Rate = 10
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.Start.IsZero() {
		o.Start = time.Now()
	}
	return o
}

// newFleet returns n devices of kind, numbered from 1.
func newFleet(kind string, n int, rng *rand.Rand) ([]*device, error) {
	devs := make([]*device, n)
	for i := range devs {
		d, err := newDevice(kind, i+1, rng)
		if err != nil {
			return nil, err
		}
		devs[i] = d
	}
	return devs, nil
}

// openSender connects to o.Target over HTTP or MQTT and returns the sender with a func that
// closes it.
func openSender(ctx context.Context, o Options) (sender, func(), error) {
	u, err := url.Parse(o.Target)
	if err != nil || u.Host == "" {
		return nil, nil, fmt.Errorf("target %q: want http://host:port or mqtt://host:port", o.Target)
	}
	switch u.Scheme {
	case "http", "https":
		return newHTTPSender(strings.TrimSuffix(o.Target, "/")+"/v1/readings", o.Token), func() {}, nil
	case "mqtt", "tcp":
		s, err := newMQTTSender(ctx, u.Host, o.Token, min(o.Devices, 32))
		if err != nil {
			return nil, nil, err
		}
		return s, s.close, nil
	default:
		return nil, nil, fmt.Errorf("target scheme %q: want http or mqtt", u.Scheme)
	}
}

// simBatch is one request's worth of readings. It carries its own abnormal/invalid counts,
// added to the totals only when it is sent, so readings produced but never sent (at the
// deadline) are not counted.
type simBatch struct {
	readings          []json.RawMessage
	abnormal, invalid int64
}

// worker is what the sending goroutines of a run share.
type worker struct {
	log      *slog.Logger
	send     sender
	st       *statsCounter
	onResult func(Stats)
	stop     context.CancelCauseFunc // ends production (a refused token)

	mu        sync.Mutex
	downSince time.Time // when the server stopped answering; zero while it answers
	failures  int       // other send failures logged, to log only the first few
}

// sendBatches sends batches until the channel closes, counting the outcomes. Sends run under
// ctx; waiting for an unreachable server ends with produce (the run's duration). After a refused
// token the remaining batches are counted as failed without being sent.
func (w *worker) sendBatches(ctx, produce context.Context, batches <-chan simBatch) {
	for b := range batches {
		var res result
		var err error
		if cause := context.Cause(produce); errors.Is(cause, ErrTokenRefused) {
			err = cause
		} else {
			res, err = w.sendRetrying(ctx, produce, b.readings)
		}
		w.st.abnormal.Add(b.abnormal)
		w.st.invalid.Add(b.invalid)
		w.st.add(res, err, len(b.readings))
		if w.onResult != nil {
			w.onResult(w.st.snapshot())
		}
	}
}

// sendRetrying sends one batch, retrying with back-off while the server cannot be reached and
// produce lasts.
func (w *worker) sendRetrying(ctx, produce context.Context, batch []json.RawMessage) (result, error) {
	wait := unreachableFirstWait
	for {
		res, err := w.send.send(ctx, batch)
		var unreachable *unreachableError
		switch {
		case err == nil:
			w.reachable()
			return res, nil
		case ctx.Err() != nil:
			return res, err
		case errors.Is(err, ErrTokenRefused):
			w.reachable()
			w.stop(err)
			return res, err
		case errors.As(err, &unreachable):
			w.unreachable(err)
			select {
			case <-time.After(wait):
				wait = min(2*wait, unreachableMaxWait)
				continue
			case <-produce.Done():
				return res, err
			}
		}
		w.reachable()
		w.mu.Lock()
		w.failures++
		first := w.failures <= 3
		w.mu.Unlock()
		if first {
			w.log.Warn("sending readings failed", "err", err)
		}
		return res, err
	}
}

// unreachable logs the first failure of an outage; the workers' later failures are quiet.
func (w *worker) unreachable(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.downSince.IsZero() {
		w.downSince = time.Now()
		w.log.Warn("server not reachable; readings wait and are retried with back-off (up to every "+unreachableMaxWait.String()+") until it answers", "err", err)
	}
}

// reachable ends an outage with one line.
func (w *worker) reachable() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.downSince.IsZero() {
		w.log.Info("server reachable again", "after", time.Since(w.downSince).Round(time.Millisecond))
		w.downSince = time.Time{}
	}
}

// unreachableError is a send that got no answer from the server (connection refused, reset or
// timed out): worth retrying.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// produce makes readings round-robin over devs on a 50 ms tick, in proportion to o.Rate, and
// hands them to batches in batches of at most o.Batch, until ctx ends.
func produce(ctx context.Context, o Options, rng *rand.Rand, devs []*device, batches chan<- simBatch) {
	const tick = 50 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start, produced, next := time.Now(), 0.0, 0
	var b simBatch
	flush := func() bool {
		select {
		case batches <- b:
			b = simBatch{}
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := o.Rate * now.Sub(start).Seconds()
			for produced < due {
				produced++
				d := devs[next%len(devs)]
				next++
				// Each reading's nominal time: evenly spaced at the rate, so a device's
				// readings never share a timestamp (which would make them one identity).
				at := o.Start.Add(time.Duration(produced / o.Rate * float64(time.Second)))
				abnormal := rng.Float64() < o.Abnormal
				r := d.reading(rng, at, abnormal)
				if abnormal {
					b.abnormal++
				}
				if rng.Float64() < o.Invalid {
					b.invalid++
					corrupt(&r)
				}
				b.readings = append(b.readings, r.AppendJSON(nil))
				if len(b.readings) == o.Batch && !flush() {
					return
				}
			}
			if len(b.readings) > 0 && !flush() {
				return
			}
		}
	}
}

// corrupt makes a reading invalid: a value far outside its plausible range.
func corrupt(r *reading.Reading) {
	for _, k := range []string{"systolic", "bpm", "x"} {
		if _, ok := r.Values[k]; ok {
			r.Values[k] = 1e6
			return
		}
	}
}

type statsCounter struct {
	sent, accepted, dups, rejected, failed, abnormal, invalid atomic.Int64
}

func (s *statsCounter) add(r result, err error, n int) {
	s.sent.Add(int64(n))
	if err != nil {
		s.failed.Add(int64(n))
		return
	}
	s.accepted.Add(int64(r.Accepted))
	s.dups.Add(int64(r.Duplicates))
	s.rejected.Add(int64(r.Rejected))
}

func (s *statsCounter) snapshot() Stats {
	return Stats{Sent: s.sent.Load(), Accepted: s.accepted.Load(), Duplicates: s.dups.Load(), Rejected: s.rejected.Load(),
		Failed: s.failed.Load(), Abnormal: s.abnormal.Load(), Invalid: s.invalid.Load()}
}

type result struct{ Accepted, Duplicates, Rejected int }

type sender interface {
	send(ctx context.Context, batch []json.RawMessage) (result, error)
}

type httpSender struct {
	url, token string
	client     *http.Client
}

func newHTTPSender(u, token string) *httpSender {
	return &httpSender{url: u, token: token, client: &http.Client{Timeout: 30 * time.Second}}
}

func (s *httpSender) send(ctx context.Context, batch []json.RawMessage) (result, error) {
	var body bytes.Buffer
	for _, r := range batch {
		body.Write(r)
		body.WriteByte('\n')
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body.Bytes()))
		if err != nil {
			return result{}, err
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := s.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return result{}, err
			}
			return result{}, &unreachableError{err}
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && attempt < 5 {
			select {
			case <-time.After(time.Duration(200*(attempt+1)) * time.Millisecond):
				continue
			case <-ctx.Done():
				return result{}, ctx.Err()
			}
		}
		var out struct {
			Accepted, Duplicates int
			Rejected             []json.RawMessage
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return result{}, fmt.Errorf("%w (POST %s: %s: %s); simulate needs a valid ingest token not bound to another subject: pulselake token create --scope ingest",
				ErrTokenRefused, s.url, resp.Status, bytes.TrimSpace(data))
		}
		if err := json.Unmarshal(data, &out); err != nil || resp.StatusCode >= 500 {
			return result{}, fmt.Errorf("POST %s: %s: %s", s.url, resp.Status, bytes.TrimSpace(data))
		}
		rejected := map[int]bool{}
		for _, r := range out.Rejected {
			var x struct{ Index int }
			_ = json.Unmarshal(r, &x)
			rejected[x.Index] = true
		}
		return result{Accepted: out.Accepted, Duplicates: out.Duplicates, Rejected: len(rejected)}, nil
	}
}

// mqttSender publishes each reading with QoS1 over a few connections, round robin.
type mqttSender struct {
	clients []mqtt.Client
	next    atomic.Uint64
}

func newMQTTSender(ctx context.Context, host, token string, conns int) (*mqttSender, error) {
	s := &mqttSender{}
	for i := range conns {
		opts := mqtt.NewClientOptions().AddBroker("tcp://" + host).
			SetClientID(fmt.Sprintf("pulselake-sim-%d-%d", time.Now().UnixNano()%1e6, i)).
			SetUsername("simulator").SetPassword(token).
			SetCleanSession(true).SetAutoReconnect(true).SetConnectTimeout(10 * time.Second).
			SetMaxResumePubInFlight(1024)
		c := mqtt.NewClient(opts)
		tok := c.Connect()
		if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
			s.close()
			err := tok.Error()
			if err == nil {
				err = errors.New("timed out")
			}
			switch {
			case errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
				return nil, fmt.Errorf("%w (MQTT %s: %v); simulate over MQTT needs an ingest token not bound to a subject: pulselake token create --scope ingest",
					ErrTokenRefused, host, err)
			case strings.HasSuffix(err.Error(), "EOF"):
				// The NATS MQTT listener closes the connection on a token it refuses, often
				// before the client reads its CONNACK.
				return nil, fmt.Errorf("connecting to MQTT %s: the server closed the connection at CONNECT (%w): most likely it refused the token; simulate over MQTT needs an ingest token not bound to a subject: pulselake token create --scope ingest",
					host, err)
			}
			return nil, fmt.Errorf("connecting to MQTT %s: %w (is serve running there with MQTT on?)", host, err)
		}
		s.clients = append(s.clients, c)
	}
	return s, nil
}

func (s *mqttSender) send(ctx context.Context, batch []json.RawMessage) (result, error) {
	toks := make([]mqtt.Token, 0, len(batch))
	for _, r := range batch {
		var head struct{ Kind, Device string }
		_ = json.Unmarshal(r, &head)
		c := s.clients[s.next.Add(1)%uint64(len(s.clients))]
		toks = append(toks, c.Publish("readings/"+head.Kind+"/"+head.Device, 1, false, []byte(r)))
	}
	var res result
	for _, t := range toks {
		if !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			return res, fmt.Errorf("MQTT publish not acknowledged: %v", t.Error())
		}
		res.Accepted++ // acknowledged = stored; validation happens after (rejects go to quarantine)
	}
	return res, nil
}

func (s *mqttSender) close() {
	for _, c := range s.clients {
		c.Disconnect(250)
	}
}
