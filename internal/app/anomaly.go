package app

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/anomaly"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/web"
)

// anomalyConsumer is the durable consumer of the streaming detectors.
const anomalyConsumer = "anomaly"

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
		alert: func(ctx context.Context, ts []rules.Transition, out []notify.Alert) {
			if err := n.alerting.dispatcher.Notify(ctx, out); err != nil {
				n.log.Warn("handing anomaly alerts to notification", "err", err)
			}
			for _, t := range ts {
				n.hub.Publish(web.Event{Type: "alert", Subject: t.Alert.Subject, Data: t.Alert})
			}
			n.lake.recordAlerts(ts)
		},
	})
	if err != nil {
		return err
	}
	n.alerting.addSource(r.Alerts)
	n.addEraser("anomaly detectors: alerts, baselines (serve memory)", r.eraseSubject)
	n.onClose(r.close)
	c, err := stream.NewConsumer(n.log.With("component", "anomaly"), n.reg, stream.ConsumerOptions{Name: anomalyConsumer,
		Kinds: n.kinds, Handle: r.handle, Quarantine: n.quarantine})
	if err != nil {
		return err
	}
	n.runProc("anomaly", func(ctx context.Context) error { return r.run(ctx, n.conn.JS, c) })
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
	// alert receives alert transitions and their notifications (firing and resolved).
	alert func(ctx context.Context, ts []rules.Transition, out []notify.Alert)
}

// anomalyRunner feeds readings to per-baseline streaming detectors and keeps the alert state
// of the detectors' alerts. All methods are safe for concurrent use.
type anomalyRunner struct {
	log  *slog.Logger
	dets []*detectorState
	out  anomalyOutputs
	now  func() time.Time

	mu     sync.Mutex
	alerts map[alertKey]*rules.Alert // firing alerts

	mPoints    *prometheus.CounterVec
	mAnomalies *prometheus.CounterVec
	mEvicted   *prometheus.CounterVec
	mOrder     *prometheus.CounterVec
}

type alertKey struct{ detector, subject, device string }

// Alerts lists the detectors' firing alerts for GET /v1/alerts (state "" or firing): they are
// never pending, and a resolved one is dropped once its notification is sent.
func (r *anomalyRunner) Alerts(state string) []rules.Alert {
	if state != "" && state != rules.StateFiring {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]rules.Alert, 0, len(r.alerts))
	for _, a := range r.alerts {
		out = append(out, *a)
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
	r := &anomalyRunner{log: log, out: out, now: time.Now, alerts: map[alertKey]*rules.Alert{},
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

// run consumes the ingest stream with its own durable consumer (through c, whose handler is
// handle) until ctx is cancelled, and resolves quiet alerts and drops idle baselines once a
// second.
func (r *anomalyRunner) run(ctx context.Context, js jetstream.JetStream, c *stream.Consumer) error {
	cons, err := stream.Follow(ctx, js, stream.Follower{Durable: anomalyConsumer,
		Description: "pulselake: streaming anomaly detectors", AckWait: 30 * time.Second, MaxAckPending: 1000})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
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
	})
	return c.Run(ctx, cons)
}

// handle feeds the readings of one stream message to the detectors.
func (r *anomalyRunner) handle(ctx context.Context, m *stream.Msg) error {
	for i := range m.Batch.Entries {
		if rd := m.Batch.Entries[i].Reading; rd != nil {
			r.observe(ctx, rd)
		}
	}
	return nil
}

// observe runs every detector of the reading's kind on it.
func (r *anomalyRunner) observe(ctx context.Context, rd *reading.Reading) {
	now := r.now()
	var ts []rules.Transition
	var out []notify.Alert
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
			if t, ok := r.fireLocked(d, e, now); ok {
				ts = append(ts, t)
				out = append(out, toNotify(&t.Alert))
			}
		}
	}
	r.mu.Unlock()
	if len(ts) > 0 && r.out.alert != nil {
		r.out.alert(ctx, ts, out)
	}
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

// fireLocked makes (detector, subject, device) firing, or refreshes it when it already is.
// It returns the transition when the alert started firing.
func (r *anomalyRunner) fireLocked(d *anomaly.Detector, e AnomalyEvent, now time.Time) (rules.Transition, bool) {
	k := alertKey{d.Name, e.Subject, e.Device}
	if a, ok := r.alerts[k]; ok {
		a.LastEval, a.ReadingTime, a.Values = now, e.Time, alertValues(e)
		return rules.Transition{}, false
	}
	labels := map[string]string{"alertname": d.Name, "subject": e.Subject, "device": e.Device, "kind": d.Kind,
		"severity": d.Severity, "detector": d.Method}
	for k, v := range d.Labels {
		labels[k] = v
	}
	a := &rules.Alert{Rule: d.Name, Subject: e.Subject, Device: e.Device, Kind: d.Kind, State: rules.StateFiring,
		Severity: d.Severity, Labels: labels,
		Annotations: map[string]string{"summary": fmt.Sprintf("unusual %s %s for %s on %s (%s score %s)",
			d.Kind, valuesText(d.Values, e.Values), e.Subject, e.Device, d.Method, strconv.FormatFloat(e.Score, 'f', 3, 64))},
		Values: alertValues(e), ReadingTime: e.Time, ActiveAt: now, FiredAt: now, LastEval: now, Cond: true}
	r.alerts[k] = a
	return rules.Transition{From: rules.StateInactive, Alert: *a}, true
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

func toNotify(a *rules.Alert) notify.Alert {
	n := notify.Alert{Labels: a.Labels, Annotations: a.Annotations, Values: a.Values, StartsAt: a.FiredAt}
	if a.State == rules.StateResolved {
		n.EndsAt = a.ResolvedAt
	}
	return n
}

// tick resolves alerts whose series had no anomaly for resolve_after and drops baselines
// idle for idle_after.
func (r *anomalyRunner) tick(ctx context.Context) {
	now := r.now()
	var ts []rules.Transition
	var out []notify.Alert
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
		d := byName[k.detector]
		if now.Sub(a.LastEval) < d.ResolveAfter {
			continue
		}
		delete(r.alerts, k)
		a.State, a.ResolvedAt, a.Cond = rules.StateResolved, now, false
		ts = append(ts, rules.Transition{From: rules.StateFiring, Alert: *a})
		out = append(out, toNotify(a))
	}
	r.mu.Unlock()
	if len(ts) > 0 && r.out.alert != nil {
		r.out.alert(ctx, ts, out)
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
