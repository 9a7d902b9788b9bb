package app

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/anomaly"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/web"
)

// anomalyConsumer is the durable consumer of the streaming detectors.
const anomalyConsumer = "anomaly"

// Timing of the detectors' alerts, as the rule engine's defaults: resolved alerts are listed
// this long, and firing and resolved ones re-sent to the notifier this often (its log keeps
// receivers from being told twice).
const (
	anomalyResolvedRetention = 15 * time.Minute
	anomalyResendInterval    = time.Minute
)

// anomalyMaxReadingAge: older readings (imports, late uploads) train the baselines and are
// recorded in ops.anomalies but raise no alert, like the rule engine's MaxReadingAge.
const anomalyMaxReadingAge = time.Hour

// anomalyColumns are the columns of ops.anomalies: one row per reading a detector flagged.
var anomalyColumns = []lake.Column{
	{Name: "time", Type: lake.Timestamp}, // the reading's time
	{Name: "detector", Type: lake.String},
	{Name: "method", Type: lake.String},
	{Name: "subject", Type: lake.String},
	{Name: "device", Type: lake.String},
	{Name: "kind", Type: lake.String},
	{Name: "value", Type: lake.Float64}, // the watched value (NULL when several are)
	{Name: "values", Type: lake.String}, // JSON: every watched value
	{Name: "score", Type: lake.Float64},
	{Name: "threshold", Type: lake.Float64}, // NULL: the method's own rule decided
	{Name: "detected_at", Type: lake.Timestamp},
}

// AnomalyEvent is the data of a web.Event{Type: "anomaly"} and of an ops.anomalies row.
type AnomalyEvent struct {
	Detector string             `json:"detector"`
	Method   string             `json:"method"`
	Subject  string             `json:"subject"`
	Device   string             `json:"device"`
	Kind     string             `json:"kind"`
	Time     time.Time          `json:"time"`
	Values   map[string]float64 `json:"values"`
	Score    float64            `json:"score"`
}

// startDetectors runs the configured streaming anomaly detectors (config key detectors).
func startDetectors(n *node) error {
	ds, err := n.cfg.CompiledDetectors()
	if err != nil {
		return err
	}
	if len(ds) == 0 {
		return nil
	}
	r, err := newAnomalyRunner(n.log.With("component", "anomaly"), n.reg, ds, anomalyOutputs{
		record: func(e AnomalyEvent, threshold float64) {
			n.lake.ops.Add(lake.ZoneOps, "anomalies", anomalyColumns, anomalyRow(e, threshold))
		},
		publish: func(e AnomalyEvent) { n.hub.Publish(web.Event{Type: "anomaly", Subject: e.Subject, Data: e}) },
		alerts:  n.alerting.outputs,
	})
	if err != nil {
		return err
	}
	n.alerting.addSource(r.Alerts)
	n.addEraser("anomaly detectors: alerts, baselines (serve memory)", r.eraseSubject)
	n.onClose(r.close)
	n.runProc("anomaly", func(ctx context.Context) error { return r.run(ctx, n.conn.JS, n.kinds) })
	return nil
}

func anomalyRow(e AnomalyEvent, threshold float64) []any {
	var thr any
	if !math.IsNaN(threshold) {
		thr = threshold
	}
	return []any{e.Time.UTC(), e.Detector, e.Method, e.Subject, e.Device, e.Kind,
		firstValue(e.Values), jsonText(e.Values), e.Score, thr, time.Now().UTC()}
}

// firstValue is the value of a one-value detector; NULL for several values.
func firstValue(m map[string]float64) any {
	if len(m) != 1 {
		return nil
	}
	for _, v := range m {
		return v
	}
	return nil
}

// anomalyOutputs are where the runner's results go.
type anomalyOutputs struct {
	record  func(e AnomalyEvent, threshold float64)
	publish func(e AnomalyEvent)
	// alerts receive the detectors' alerts, as they receive the rules' ones.
	alerts alert.Outputs
}

// anomalyRunner feeds readings to per-baseline streaming detectors and keeps the state of the
// detectors' alerts (in memory only). All methods are safe for concurrent use.
type anomalyRunner struct {
	log  *slog.Logger
	dets []*detectorState
	out  anomalyOutputs
	now  func() time.Time

	mu       sync.Mutex
	alerts   map[alert.Key]*alert.Alert // firing and recently resolved alerts
	lastSend time.Time

	mPoints    *prometheus.CounterVec
	mAnomalies *prometheus.CounterVec
	mEvicted   *prometheus.CounterVec
	mOrder     *prometheus.CounterVec
}

// Alerts lists the detectors' alerts in a state ("" for all) for GET /v1/alerts: firing ones
// and those resolved in the last anomalyResolvedRetention (they are never pending).
func (r *anomalyRunner) Alerts(state string) []alert.Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]alert.Alert, 0, len(r.alerts))
	for _, a := range r.alerts {
		if state == "" || a.State == state {
			out = append(out, *a)
		}
	}
	return out
}

// detectorState holds the baselines of one detector: at most MaxSubjects, least recently
// seen first out.
type detectorState struct {
	d     *anomaly.Detector
	base  map[string]*list.Element // of *baseline
	lru   *list.List               // front: most recently seen
	value []float64
}

type baseline struct {
	key      string
	det      anomaly.Streaming
	last     time.Time // time of the last reading scored
	lastSeen time.Time // processing time of the last reading
}

func newAnomalyRunner(log *slog.Logger, reg prometheus.Registerer, ds []*anomaly.Detector, out anomalyOutputs) (*anomalyRunner, error) {
	r := &anomalyRunner{log: log, out: out, now: time.Now, alerts: map[alert.Key]*alert.Alert{},
		mPoints: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_anomaly_points_total",
			Help: "Readings scored by a streaming anomaly detector, by detector."}, []string{"detector"}),
		mAnomalies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_anomaly_anomalies_total",
			Help: "Readings a streaming anomaly detector flagged, by detector."}, []string{"detector"}),
		mEvicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_anomaly_baselines_evicted_total",
			Help: "Baselines dropped because they were idle or the detector held max_subjects, by detector."}, []string{"detector"}),
		mOrder: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_anomaly_out_of_order_total",
			Help: "Readings not scored because their baseline already saw a later (or equal) time, by detector."}, []string{"detector"}),
	}
	for _, d := range ds {
		r.dets = append(r.dets, &detectorState{d: d, base: map[string]*list.Element{}, lru: list.New(), value: make([]float64, len(d.Values))})
	}
	if reg != nil {
		gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pulselake_anomaly_baselines", Help: "Baselines held by the streaming anomaly detectors."},
			func() float64 {
				r.mu.Lock()
				defer r.mu.Unlock()
				n := 0
				for _, s := range r.dets {
					n += s.lru.Len()
				}
				return float64(n)
			})
		for _, c := range []prometheus.Collector{r.mPoints, r.mAnomalies, r.mEvicted, r.mOrder, gauge} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering anomaly metrics: %w", err)
			}
		}
	}
	return r, nil
}

// run consumes the ingest stream with its own durable consumer until ctx is cancelled, and
// resolves quiet alerts and drops idle baselines once a second.
func (r *anomalyRunner) run(ctx context.Context, js jetstream.JetStream, kinds *reading.Registry) error {
	cons, err := stream.Follow(ctx, js, stream.Follower{Durable: anomalyConsumer,
		Description: "pulselake: streaming anomaly detectors", AckWait: 30 * time.Second, MaxAckPending: 1000})
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(stream.FollowerPullBytes))
	if err != nil {
		return fmt.Errorf("consuming %s: %w", stream.IngestStream, err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		it.Stop()
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.tick(ctx)
			}
		}
	}()
	defer wg.Wait()
	parser := reading.NewParser(kinds)
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			r.log.Warn("reading from the ingest stream", "err", err)
			continue
		}
		b, err := stream.Decode(msg.Data(), parser)
		if err != nil {
			r.log.Error("skipping undecodable ingest message", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
			continue
		}
		for i := range b.Entries {
			if rd := b.Entries[i].Reading; rd != nil {
				r.observe(ctx, rd)
			}
		}
		_ = msg.Ack()
	}
}

// observe runs every detector of the reading's kind on it.
func (r *anomalyRunner) observe(ctx context.Context, rd *reading.Reading) {
	now := r.now()
	var ts []alert.Transition
	r.mu.Lock()
	for _, s := range r.dets {
		d := s.d
		if d.Kind != rd.Kind {
			continue
		}
		present := false
		for j, name := range d.Values {
			v, ok := rd.Values[name]
			if !ok {
				v = math.NaN()
			} else {
				present = true
			}
			s.value[j] = v
		}
		if !present {
			continue
		}
		key := rd.Subject
		if d.PerDevice {
			key += "\x00" + rd.Device
		}
		b, err := s.baseline(key, now, r.mEvicted.WithLabelValues(d.Name))
		if err != nil {
			r.log.Error("starting an anomaly detector", "detector", d.Name, "err", err)
			continue
		}
		if !b.last.IsZero() && !rd.Time.After(b.last) {
			r.mOrder.WithLabelValues(d.Name).Inc()
			continue
		}
		b.last = rd.Time
		score, methodFlag := b.det.Observe(rd.Time, s.value)
		r.mPoints.WithLabelValues(d.Name).Inc()
		if !d.Flag(score, methodFlag) {
			continue
		}
		r.mAnomalies.WithLabelValues(d.Name).Inc()
		vals := make(map[string]float64, len(d.Values))
		for j, name := range d.Values {
			if !math.IsNaN(s.value[j]) {
				vals[name] = s.value[j]
			}
		}
		e := AnomalyEvent{Detector: d.Name, Method: d.Method, Subject: rd.Subject, Device: rd.Device, Kind: rd.Kind,
			Time: rd.Time, Values: vals, Score: score}
		if r.out.record != nil {
			r.out.record(e, d.Threshold)
		}
		if r.out.publish != nil {
			r.out.publish(e)
		}
		if now.Sub(rd.Time) <= anomalyMaxReadingAge {
			if t, ok := r.anomalyLocked(d, e, now); ok {
				ts = append(ts, t)
			}
		}
	}
	r.mu.Unlock()
	r.emit(ctx, ts, nil)
}

// baseline returns the detector state of key, creating it (and evicting the least recently
// seen baseline when full).
func (s *detectorState) baseline(key string, now time.Time, evicted prometheus.Counter) (*baseline, error) {
	if el, ok := s.base[key]; ok {
		s.lru.MoveToFront(el)
		b := el.Value.(*baseline)
		b.lastSeen = now
		return b, nil
	}
	det, err := s.d.New()
	if err != nil {
		return nil, err
	}
	for s.lru.Len() >= s.d.MaxSubjects {
		s.drop(s.lru.Back())
		evicted.Inc()
	}
	b := &baseline{key: key, det: det, lastSeen: now}
	s.base[key] = s.lru.PushFront(b)
	return b, nil
}

func (s *detectorState) drop(el *list.Element) {
	b := el.Value.(*baseline)
	if c, ok := b.det.(io.Closer); ok {
		c.Close()
	}
	s.lru.Remove(el)
	delete(s.base, b.key)
}

// anomalyLocked evaluates the alert of (detector, subject, device) on an anomaly: its
// condition holds, so it fires (detectors have no `for`) or, firing, takes the latest values.
// It returns the transition when the alert started firing.
func (r *anomalyRunner) anomalyLocked(d *anomaly.Detector, e AnomalyEvent, now time.Time) (alert.Transition, bool) {
	k := alert.Key{Rule: d.Name, Subject: e.Subject, Device: e.Device}
	a := r.alerts[k]
	fresh := a == nil || a.State == alert.StateResolved
	if fresh {
		labels := map[string]string{"alertname": d.Name, "subject": e.Subject, "device": e.Device, "kind": d.Kind,
			"severity": d.Severity, "detector": d.Method}
		maps.Copy(labels, d.Labels)
		a = &alert.Alert{Rule: d.Name, Source: alert.SourceDetector, Subject: e.Subject, Device: e.Device, Kind: d.Kind,
			Severity: d.Severity, Labels: labels}
		r.alerts[k] = a
	}
	a.Values, a.ReadingTime = alertValues(e), e.Time
	a.Annotations = map[string]string{"summary": fmt.Sprintf("unusual %s %s for %s on %s (%s score %s)",
		d.Kind, valuesText(d.Values, e.Values), e.Subject, e.Device, d.Method, strconv.FormatFloat(e.Score, 'f', 3, 64))}
	var ch alert.Change
	if fresh {
		ch = a.Activate(now, alert.Timing{})
	} else {
		ch = a.Eval(now, true, false, alert.Timing{})
	}
	return ch.Transition(a), ch.Moved
}

func alertValues(e AnomalyEvent) map[string]float64 {
	m := make(map[string]float64, len(e.Values)+1)
	for k, v := range e.Values {
		m[k] = v
	}
	m["score"] = e.Score
	return m
}

func valuesText(names []string, vals map[string]float64) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += " "
		}
		if v, ok := vals[n]; ok {
			s += n + " " + strconv.FormatFloat(v, 'g', 6, 64)
		}
	}
	return s
}

// tick resolves alerts whose series had no anomaly for resolve_after (their condition no
// longer holds), forgets old resolved ones, re-sends firing and resolved ones every
// anomalyResendInterval, and drops baselines idle for idle_after.
func (r *anomalyRunner) tick(ctx context.Context) {
	now := r.now()
	var ts []alert.Transition
	var resend []notify.Alert // nil: no re-send due
	r.mu.Lock()
	byName := map[string]*anomaly.Detector{}
	for _, s := range r.dets {
		byName[s.d.Name] = s.d
		for el := s.lru.Back(); el != nil && now.Sub(el.Value.(*baseline).lastSeen) > s.d.IdleAfter; el = s.lru.Back() {
			s.drop(el)
			r.mEvicted.WithLabelValues(s.d.Name).Inc()
		}
	}
	for k, a := range r.alerts {
		if a.Expired(now, anomalyResolvedRetention) {
			delete(r.alerts, k)
			continue
		}
		// LastEval is the last anomaly: the alert is evaluated on anomalies only.
		if d := byName[k.Rule]; a.State == alert.StateFiring && (d == nil || now.Sub(a.LastEval) >= d.ResolveAfter) {
			if ch := a.Eval(now, false, true, alert.Timing{}); ch.Moved {
				ts = append(ts, ch.Transition(a))
			}
		}
	}
	if now.Sub(r.lastSend) >= anomalyResendInterval {
		r.lastSend = now
		resend = []notify.Alert{}
		for _, a := range r.alerts {
			if a.State == alert.StateFiring || a.State == alert.StateResolved {
				resend = append(resend, a.ToNotify())
			}
		}
	}
	r.mu.Unlock()
	r.emit(ctx, ts, resend)
}

// emit hands transitions to the alert outputs: the notifications of the firing and resolved
// ones (or resend, when not nil: all firing and resolved alerts, these included), then every
// transition to the record.
func (r *anomalyRunner) emit(ctx context.Context, ts []alert.Transition, resend []notify.Alert) {
	if n := r.out.alerts.Notify; n != nil {
		out := resend
		if out == nil {
			out = alert.Notifications(ts)
		}
		if len(out) > 0 {
			if err := n(ctx, out); err != nil {
				r.log.Warn("handing anomaly alerts to notification", "err", err)
			}
		}
	}
	if rec := r.out.alerts.Record; rec != nil && len(ts) > 0 {
		if err := rec(ctx, ts); err != nil {
			r.log.Warn("recording anomaly alert transitions", "transitions", len(ts), "err", err)
		}
	}
}

// close stops the detectors' background work (Isolation Forest refits).
func (r *anomalyRunner) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.dets {
		for el := s.lru.Back(); el != nil; el = s.lru.Back() {
			s.drop(el)
		}
	}
}
