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

	"github.com/pulselake/pulselake/internal/reading"
)

// Options configures a simulation run.
type Options struct {
	Kind     string        // bp, hr or accelerometer
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

// Run simulates until the duration elapses or ctx ends, and returns the totals.
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
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}

	var st statsCounter
	// Readings are sent by a few workers so throughput does not wait on round trips.
	batches := make(chan simBatch, 8)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sendBatches(sendCtx, log, send, batches, &st, o.OnResult)
		}()
	}
	produce(ctx, o, rng, devs, batches)
	close(batches)
	wg.Wait()
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

// sendBatches sends batches until the channel closes, counting the outcomes in st.
func sendBatches(ctx context.Context, log *slog.Logger, send sender, batches <-chan simBatch, st *statsCounter, onResult func(Stats)) {
	for b := range batches {
		res, err := send.send(ctx, b.readings)
		if err != nil && ctx.Err() == nil {
			log.Warn("sending readings failed", "err", err)
		}
		st.abnormal.Add(b.abnormal)
		st.invalid.Add(b.invalid)
		st.add(res, err, len(b.readings))
		if onResult != nil {
			onResult(st.snapshot())
		}
	}
}

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
			return result{}, err
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
		if err := json.Unmarshal(data, &out); err != nil || resp.StatusCode >= 500 || resp.StatusCode == 401 || resp.StatusCode == 403 {
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
			return nil, fmt.Errorf("connecting to MQTT %s: %w (is the token an ingest token?)", host, err)
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
