// Package detectors runs the streaming anomaly detectors of serve (config key detectors,
// docs/anomaly.md): a durable consumer of the ingest stream feeds every reading to the
// detectors of its kind, each keeping one baseline per subject (or device); a reading a
// detector flags is an anomaly, recorded in ops.anomalies, sent to the live feed and made an
// alert of the shared alert model (internal/alert), which resolves after resolve_after
// without anomalies.
//
// Invariants: baselines are bounded (max_subjects per detector, least recently seen out, idle
// ones dropped); readings older than an hour train baselines and are recorded but raise no
// alert; a reading not after its baseline's last one is not scored. With a KV bucket
// (Options.State) the baselines and alerts are checkpointed to it and restored when Run
// starts (checkpoint.go).
//
// Concurrency: every method of Runner is safe for concurrent use; Run owns its goroutines
// and waits for them.
package detectors

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"strconv"
	"strings"
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
)

// ConsumerName is the durable consumer of the streaming detectors.
const ConsumerName = "anomaly"

// Timing of the detectors' alerts, as the rule engine's defaults: resolved alerts are listed
// this long, and firing and resolved ones re-sent to the notifier this often (its log keeps
// receivers from being told twice).
const (
	resolvedRetention = 15 * time.Minute
	resendInterval    = time.Minute
)

// maxReadingAge: older readings (imports, late uploads) train the baselines and are
// recorded in ops.anomalies but raise no alert, like the rule engine's MaxReadingAge.
const maxReadingAge = time.Hour

// AnomalyColumns are the columns of ops.anomalies: one row per reading a detector flagged.
var AnomalyColumns = []lake.Column{
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

// AnomaliesTable is the ops table of anomalies, with AnomalyColumns.
const AnomaliesTable = "anomalies"

// Anomaly is a reading a detector flagged: the data of a live-feed event "anomaly" and of an
// ops.anomalies row.
type Anomaly struct {
	Detector string             `json:"detector"`
	Method   string             `json:"method"`
	Subject  string             `json:"subject"`
	Device   string             `json:"device"`
	Kind     string             `json:"kind"`
	Time     time.Time          `json:"time"`
	Values   map[string]float64 `json:"values"`
	Score    float64            `json:"score"`
}

func anomalyRow(e Anomaly, threshold float64) []any {
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

// Outputs are where the runner's results go; any may be nil.
type Outputs struct {
	// Row queues a row for the ops table (lake.RowBuffer.Add in zone ops).
	Row func(table string, cols []lake.Column, row []any)
	// Event publishes an anomaly to the live feed.
	Event func(e Anomaly)
	// Alerts receive the detectors' alerts, as they receive the rules' ones.
	Alerts alert.Outputs
	// Quarantine receives the stream messages the consumer terminated.
	Quarantine func(ctx context.Context, p stream.Poisoned) error
}

// Options configures a Runner.
type Options struct {
	// Detectors are the compiled detectors (config.CompiledDetectors).
	Detectors []*anomaly.Detector
	// JS is the JetStream whose ingest stream Run consumes, Kinds decodes its readings; both
	// may be nil when readings are given to Observe directly.
	JS    jetstream.JetStream
	Kinds *reading.Registry
	Out   Outputs
	// Now is the clock (default time.Now).
	Now func() time.Time
	// State is the KV bucket (Bucket) Run restores the baselines and alerts from and
	// checkpoints them to every CheckpointEvery (default 30s) and when it ends; nil keeps
	// them in memory only.
	State           jetstream.KeyValue
	CheckpointEvery time.Duration
}

// Runner feeds readings to per-baseline streaming detectors and keeps the state of the
// detectors' alerts (in memory, checkpointed with Options.State). All methods are safe for
// concurrent use.
type Runner struct {
	log      *slog.Logger
	dets     []*detectorState
	out      Outputs
	now      func() time.Time
	js       jetstream.JetStream
	consumer *stream.Consumer // nil without JS
	ck       *checkpointer    // nil without Options.State

	mu       sync.Mutex
	alerts   map[alert.Key]*alert.Alert // firing and recently resolved alerts
	lastSend time.Time

	mPoints    *prometheus.CounterVec
	mAnomalies *prometheus.CounterVec
	mEvicted   *prometheus.CounterVec
	mOrder     *prometheus.CounterVec
}

// Alerts lists the detectors' alerts in a state ("" for all) for GET /v1/alerts: firing ones
// and those resolved in the last resolvedRetention (they are never pending).
func (r *Runner) Alerts(state string) []alert.Alert {
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

// New returns a runner of o.Detectors and registers its metrics.
func New(log *slog.Logger, reg prometheus.Registerer, o Options) (*Runner, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Runner{log: log, out: o.Out, now: o.Now, js: o.JS, alerts: map[alert.Key]*alert.Alert{},
		mPoints: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_anomaly_points_total",
			Help: "Readings scored by a streaming anomaly detector, by detector."}, []string{"detector"}),
		mAnomalies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_anomaly_anomalies_total",
			Help: "Readings a streaming anomaly detector flagged, by detector."}, []string{"detector"}),
		mEvicted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_anomaly_baselines_evicted_total",
			Help: "Baselines dropped because they were idle or the detector held max_subjects, by detector."}, []string{"detector"}),
		mOrder: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_anomaly_out_of_order_total",
			Help: "Readings not scored because their baseline already saw a later (or equal) time, by detector."}, []string{"detector"}),
	}
	for _, d := range o.Detectors {
		r.dets = append(r.dets, &detectorState{d: d, base: map[string]*list.Element{}, lru: list.New(), value: make([]float64, len(d.Values))})
	}
	if o.State != nil {
		r.ck = newCheckpointer(o.State, o.CheckpointEvery)
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
		cs := []prometheus.Collector{r.mPoints, r.mAnomalies, r.mEvicted, r.mOrder, gauge}
		if r.ck != nil {
			cs = append(cs, r.ck.collectors()...)
		}
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering anomaly metrics: %w", err)
			}
		}
	}
	if o.JS != nil {
		var err error
		watched := map[string]bool{}
		for _, s := range r.dets {
			watched[s.d.Kind] = true
		}
		// Only the kinds some detector scores are decoded; the rest of a batch is skipped.
		r.consumer, err = stream.NewConsumer(log, reg, stream.ConsumerOptions{Name: ConsumerName, Kinds: o.Kinds,
			Handle: r.handle, Quarantine: o.Out.Quarantine, Filter: stream.Filter{Kinds: func(kind string) bool { return watched[kind] }}})
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Run consumes the ingest stream with its own durable consumer until ctx is cancelled (the
// detectors never fail a message: it is acknowledged once scored), and resolves quiet alerts
// and drops idle baselines once a second.
func (r *Runner) Run(ctx context.Context) error {
	if r.js == nil {
		return errors.New("running anomaly detectors: no stream to consume")
	}
	cons, err := stream.Follow(ctx, r.js, stream.Follower{Durable: ConsumerName,
		Description: "pulselake: streaming anomaly detectors", AckWait: 30 * time.Second, MaxAckPending: 1000})
	if err != nil {
		return err
	}
	if err := r.Restore(ctx); err != nil {
		r.log.Error("restoring the detectors' checkpoint failed; baselines start afresh", "err", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if r.ck != nil {
		wg.Go(func() { r.runCheckpoints(ctx) })
		defer r.finalCheckpoint(ctx) // after the consumer stopped
	}
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				r.Tick(ctx)
			}
		}
	})
	return r.consumer.Run(ctx, cons)
}

// handle feeds the readings of one stream message to the detectors.
func (r *Runner) handle(ctx context.Context, m *stream.Msg) error {
	for i := range m.Batch.Entries {
		if rd := m.Batch.Entries[i].Reading; rd != nil {
			r.Observe(ctx, rd)
		}
	}
	return nil
}

// Observe runs every detector of the reading's kind on it.
func (r *Runner) Observe(ctx context.Context, rd *reading.Reading) {
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
		e := Anomaly{Detector: d.Name, Method: d.Method, Subject: rd.Subject, Device: rd.Device, Kind: rd.Kind,
			Time: rd.Time, Values: vals, Score: score}
		if r.out.Row != nil {
			r.out.Row(AnomaliesTable, AnomalyColumns, anomalyRow(e, d.Threshold))
		}
		if r.out.Event != nil {
			r.out.Event(e)
		}
		if now.Sub(rd.Time) <= maxReadingAge {
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
func (r *Runner) anomalyLocked(d *anomaly.Detector, e Anomaly, now time.Time) (alert.Transition, bool) {
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

func alertValues(e Anomaly) map[string]float64 {
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

// Tick resolves alerts whose series had no anomaly for resolve_after (their condition no
// longer holds), forgets old resolved ones, re-sends firing and resolved ones every
// resendInterval, and drops baselines idle for idle_after.
func (r *Runner) Tick(ctx context.Context) {
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
		if a.Expired(now, resolvedRetention) {
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
	if now.Sub(r.lastSend) >= resendInterval {
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
func (r *Runner) emit(ctx context.Context, ts []alert.Transition, resend []notify.Alert) {
	if n := r.out.Alerts.Notify; n != nil {
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
	if rec := r.out.Alerts.Record; rec != nil && len(ts) > 0 {
		if err := rec(ctx, ts); err != nil {
			r.log.Warn("recording anomaly alert transitions", "transitions", len(ts), "err", err)
		}
	}
}

// Close stops the detectors' background work (Isolation Forest refits); no checkpoint is
// written after it.
func (r *Runner) Close() {
	if r.ck != nil {
		r.ck.closed.Store(true)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.dets {
		for el := s.lru.Back(); el != nil; el = s.lru.Back() {
			s.drop(el)
		}
	}
}

// EraseSubject drops the subject's alerts and baselines (no notice is sent about them). It
// returns what it held before and after, and the labels of the alerts it dropped.
func (r *Runner) EraseSubject(_ context.Context, subject string, dryRun bool) (before, after int, labels []map[string]string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	count := func() int {
		n := 0
		for k := range r.alerts {
			if k.Subject == subject {
				n++
			}
		}
		for _, s := range r.dets {
			for key := range s.base {
				if baselineOf(key, subject) {
					n++
				}
			}
		}
		return n
	}
	before = count()
	for k, a := range r.alerts {
		if k.Subject == subject {
			labels = append(labels, a.Labels)
		}
	}
	if dryRun {
		return before, before, labels, nil
	}
	for k := range r.alerts {
		if k.Subject == subject {
			delete(r.alerts, k)
		}
	}
	for _, s := range r.dets {
		for key, el := range s.base {
			if baselineOf(key, subject) {
				s.drop(el)
			}
		}
	}
	return before, count(), labels, nil
}

// baselineOf reports whether a baseline key (subject, or subject NUL device) is subject's.
func baselineOf(key, subject string) bool {
	return key == subject || strings.HasPrefix(key, subject+"\x00")
}

// jsonText is v as JSON, or NULL when v is empty.
func jsonText(v map[string]float64) any {
	if len(v) == 0 {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return string(b)
}
