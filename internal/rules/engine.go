package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
)

// NotifyFunc hands alerts to the notification pipeline (notify.Dispatcher.Notify).
type NotifyFunc = alert.NotifyFunc

// AlertSink records alert transitions (the event hub, the lake's ops.alerts table).
type AlertSink = alert.RecordFunc

// Options configures an Engine.
type Options struct {
	// Rules are the rules to run (inline ones and those of RuleFiles are combined).
	Rules []Rule
	// RuleFiles are re-read by Reload and, when WatchInterval > 0, whenever they change.
	RuleFiles []string
	// Dir resolves relative RuleFiles (the config file's directory).
	Dir           string
	WatchInterval time.Duration
	// Registry knows the kinds of readings (built-in and configured).
	Registry *reading.Registry
	// JS is the JetStream the engine consumes the ingest stream from.
	JS jetstream.JetStream
	// Consumer is the durable consumer's name (default "rules").
	Consumer string
	// State persists alert state (bucket "alerts"); nil keeps it in memory only.
	State jetstream.KeyValue
	// Notify receives firing and resolved alerts; Sink receives every transition. Both optional.
	Notify NotifyFunc
	Sink   AlertSink
	// TickInterval drives for, keep_firing_for and absent_for timing (default 1s).
	TickInterval time.Duration
	// ResendInterval re-sends firing alerts to Notify (default 1m), as Prometheus does.
	ResendInterval time.Duration
	// ResolvedRetention is how long resolved alerts are listed (default 15m).
	ResolvedRetention time.Duration
	// MaxReadingAge: older readings (imports, late uploads) feed windows but do not change
	// alert state, so importing last year's data pages nobody (default 1h).
	MaxReadingAge time.Duration
	// SeenInterval is how often last-seen times of devices are saved (default 1m).
	SeenInterval time.Duration
	Now          func() time.Time
	// Quarantine receives the stream messages the engine's consumer terminated (optional).
	Quarantine func(ctx context.Context, p stream.Poisoned) error
}

// Engine runs the rules over the ingest stream.
type Engine struct {
	log  *slog.Logger
	opts Options

	consumer *stream.Consumer

	// set is the running rule set, for the consumer's decoding filter (which runs outside mu).
	set atomic.Pointer[RuleSet]

	mu        sync.Mutex
	ev        *evaluator
	parser    *reading.Parser // decodes again a message decoded for an older rule set
	fileMod   map[string]time.Time
	lastSend  time.Time
	seenSaved time.Time

	mReadings    prometheus.Counter
	mEvalErrors  *prometheus.CounterVec
	mTransitions *prometheus.CounterVec
	mSinkErrors  prometheus.Counter
	mLatency     prometheus.Histogram
	mReloads     *prometheus.CounterVec
}

// Errors of the engine.
var ErrInvalidRules = errors.New("invalid rules")

// NewEngine compiles the rules and restores alert state from the KV bucket.
func NewEngine(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, o Options) (*Engine, error) {
	if o.Registry == nil {
		r, err := reading.NewRegistry()
		if err != nil {
			return nil, err
		}
		o.Registry = r
	}
	if o.Consumer == "" {
		o.Consumer = "rules"
	}
	if o.TickInterval <= 0 {
		o.TickInterval = time.Second
	}
	if o.ResendInterval <= 0 {
		o.ResendInterval = time.Minute
	}
	if o.ResolvedRetention <= 0 {
		o.ResolvedRetention = 15 * time.Minute
	}
	if o.MaxReadingAge <= 0 {
		o.MaxReadingAge = time.Hour
	}
	if o.SeenInterval <= 0 {
		o.SeenInterval = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	e := &Engine{log: log, opts: o, fileMod: map[string]time.Time{},
		mReadings: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_rules_readings_total", Help: "Readings evaluated by the rule engine (not those older than MaxReadingAge and every window, which it leaves out)."}),
		mEvalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_rules_evaluation_errors_total",
			Help: "Rule evaluations that failed, by rule."}, []string{"rule"}),
		mTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_rules_transitions_total",
			Help: "Alert state changes, by new state."}, []string{"state"}),
		mSinkErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_rules_sink_errors_total", Help: "Failed writes of alert transitions to the sink."}),
		mLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pulselake_rules_batch_seconds",
			Help: "Time to evaluate one stream message and make its effects durable.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		mReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_rules_reloads_total", Help: "Rule reloads by outcome."}, []string{"outcome"}),
	}
	if reg != nil {
		active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pulselake_rules_alerts_firing", Help: "Alerts firing now."},
			func() float64 { return float64(len(e.Alerts(StateFiring))) })
		for _, c := range []prometheus.Collector{e.mReadings, e.mEvalErrors, e.mTransitions, e.mSinkErrors, e.mLatency, e.mReloads, active} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering rules metrics: %w", err)
			}
		}
	}
	set, err := e.load()
	if err != nil {
		return nil, err
	}
	e.ev = newEvaluator(set)
	e.set.Store(set)
	e.ev.resolvedRetention = o.ResolvedRetention
	e.ev.evalErrors = func(rule string, err error) {
		e.mEvalErrors.WithLabelValues(rule).Inc()
		e.log.Debug("rule evaluation failed", "rule", rule, "err", err)
	}
	if n, err := e.restore(ctx); err != nil {
		return nil, err
	} else if n > 0 {
		e.log.Info("alert state restored", "alerts", n)
	}
	if o.JS != nil {
		// A message whose alert state cannot be saved comes back with a back-off, for as long
		// as the stream keeps it (the state store is down, not the message bad).
		// Readings of kinds no rule evaluates are decoded brief: what marks their device seen
		// and resolves no-data alerts (subject, device, kind, time), without their values.
		e.consumer, err = stream.NewConsumer(log, reg, stream.ConsumerOptions{Name: o.Consumer, Kinds: o.Registry,
			Handle: e.handle, Quarantine: o.Quarantine,
			Filter: e.filter()})
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

// load reads the rule files and compiles them with the inline rules.
func (e *Engine) load() (*RuleSet, error) {
	rules := slices.Clone(e.opts.Rules)
	if len(e.opts.RuleFiles) > 0 {
		fromFiles, err := LoadFiles(e.opts.Dir, e.opts.RuleFiles)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidRules, err)
		}
		rules = append(rules, fromFiles...)
		for _, f := range e.opts.RuleFiles {
			if st, err := os.Stat(f); err == nil {
				e.fileMod[f] = st.ModTime()
			}
		}
	}
	set, errs := Compile(rules, e.opts.Registry)
	if errs != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRules, errs)
	}
	return set, nil
}

// Reload re-reads the rule files and replaces the rules with rules plus theirs (nil rules
// keeps the inline ones). If anything is invalid the running rules stay and the error
// lists every problem. Alerts of removed rules resolve at the next tick.
func (e *Engine) Reload(rules []Rule) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rules != nil {
		old := e.opts.Rules
		e.opts.Rules = rules
		set, err := e.load()
		if err != nil {
			e.opts.Rules = old
			e.mReloads.WithLabelValues("failed").Inc()
			return err
		}
		e.ev.set = set
		e.set.Store(set)
	} else {
		set, err := e.load()
		if err != nil {
			e.mReloads.WithLabelValues("failed").Inc()
			return err
		}
		e.ev.set = set
		e.set.Store(set)
	}
	e.mReloads.WithLabelValues("ok").Inc()
	e.log.Info("rules reloaded", "rules", len(e.ev.set.rules))
	return nil
}

// Rules returns the running rules.
func (e *Engine) Rules() []Rule {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ev.set.Rules()
}

// Alerts returns the alerts in a state ("" for pending, firing and recently resolved ones),
// newest first.
func (e *Engine) Alerts(state string) []Alert {
	e.mu.Lock()
	out := e.ev.list(state)
	e.mu.Unlock()
	alert.SortNewest(out)
	return out
}

// Restore replaces the alerts and device last-seen times the engine holds with those saved
// in the State bucket, for a process that did not run the rules while another did (a cluster
// node taking over, or one keeping GET /v1/alerts in step while it stands by). Call it
// while Run is not running.
func (e *Engine) Restore(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.opts.State == nil {
		return nil
	}
	keep := e.ev.alerts
	e.ev.alerts, e.ev.seen = map[alertKey]*Alert{}, map[devKey]*Seen{}
	clear(e.ev.dirty)
	if _, err := e.restore(ctx); err != nil {
		e.ev.alerts = keep
		return err
	}
	return nil
}

// restore reads the saved alerts and last-seen times into the engine and returns how many
// alerts it read.
func (e *Engine) restore(ctx context.Context) (int, error) {
	if e.opts.State == nil {
		return 0, nil
	}
	lister, err := e.opts.State.ListKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing alert state: %w", err)
	}
	n := 0
	for k := range lister.Keys() {
		ent, err := e.opts.State.Get(ctx, k)
		if err != nil {
			continue
		}
		switch k[0] {
		case 'a':
			var a Alert
			if err := json.Unmarshal(ent.Value(), &a); err != nil {
				e.log.Warn("skipping unreadable alert state", "key", k, "err", err)
				continue
			}
			if a.Source == "" { // saved before alerts named their source
				a.Source = alert.SourceRule
			}
			e.ev.alerts[a.Key()] = &a
			n++
		case 's':
			var shard []Seen
			if err := json.Unmarshal(ent.Value(), &shard); err == nil {
				for i := range shard {
					s := shard[i]
					e.ev.seen[devKey{s.Subject, s.Device}] = &s
				}
			}
		}
	}
	return n, nil
}

// persistLocked writes changed alerts to the KV bucket; what fails stays dirty.
func (e *Engine) persistLocked(ctx context.Context) error {
	if e.opts.State == nil {
		clear(e.ev.dirty)
		return nil
	}
	for k := range e.ev.dirty {
		var err error
		if a := e.ev.alerts[k]; a != nil {
			b, _ := json.Marshal(a)
			_, err = e.opts.State.Put(ctx, k.ID(), b)
		} else if err = e.opts.State.Delete(ctx, k.ID()); errors.Is(err, jetstream.ErrKeyNotFound) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("saving alert state of %s/%s/%s: %w", k.Rule, k.Subject, k.Device, err)
		}
		delete(e.ev.dirty, k)
	}
	return nil
}

// seenShards spreads device last-seen times over a few KV keys, written once per
// SeenInterval as snapshots (one write per shard, not one per reading).
const seenShards = 64

// snapshotSeenLocked copies the last-seen times if they are due to be saved.
func (e *Engine) snapshotSeenLocked(now time.Time) [][]Seen {
	if e.opts.State == nil || now.Sub(e.seenSaved) < e.opts.SeenInterval {
		return nil
	}
	e.seenSaved = now
	shards := make([][]Seen, seenShards)
	for k, sn := range e.ev.seen {
		i := shardOf(k)
		shards[i] = append(shards[i], *sn)
	}
	return shards
}

func shardOf(k devKey) int {
	h := uint32(2166136261)
	for _, s := range []string{k.subject, "\x00", k.device} {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint32(s[i])) * 16777619
		}
	}
	return int(h % seenShards)
}

// saveSeenOnStop saves last-seen times once more when the engine stops, so a restart does
// not lose the minute since the last periodic save.
func (e *Engine) saveSeenOnStop() {
	if e.opts.State == nil {
		return
	}
	e.mu.Lock()
	shards := e.snapshotSeenLocked(e.opts.Now())
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.saveSeen(ctx, shards)
}

func (e *Engine) saveSeen(ctx context.Context, shards [][]Seen) {
	for i, sh := range shards {
		key := fmt.Sprintf("s.%02d", i)
		var err error
		if len(sh) == 0 {
			if err = e.opts.State.Delete(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
				err = nil
			}
		} else {
			b, _ := json.Marshal(sh)
			_, err = e.opts.State.Put(ctx, key, b)
		}
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("saving device last-seen times", "err", err)
			}
			return
		}
	}
}

// emitLocked hands transitions to Notify; it returns them for the sink.
func (e *Engine) emitLocked(ctx context.Context, ts []Transition) {
	for i := range ts {
		e.mTransitions.WithLabelValues(ts[i].Alert.State).Inc()
	}
	if out := alert.Notifications(ts); len(out) > 0 && e.opts.Notify != nil {
		if err := e.opts.Notify(ctx, out); err != nil {
			e.log.Warn("handing alerts to notification", "err", err)
		}
	}
}

func (e *Engine) sink(ctx context.Context, ts []Transition) {
	if len(ts) == 0 || e.opts.Sink == nil {
		return
	}
	if err := e.opts.Sink(ctx, ts); err != nil {
		e.mSinkErrors.Inc()
		e.log.Warn("recording alert transitions", "transitions", len(ts), "err", err)
	}
}

// Run consumes the ingest stream and ticks until ctx is cancelled; it returns after its
// goroutines stopped.
func (e *Engine) Run(ctx context.Context) error {
	// Alerts restored from the KV bucket go to the notification pipeline again; its log
	// keeps receivers from being told twice.
	e.mu.Lock()
	e.resendLocked(ctx, e.opts.Now(), true)
	e.mu.Unlock()

	var wg sync.WaitGroup
	errc := make(chan error, 1)
	if e.opts.JS != nil {
		cons, err := stream.Follow(ctx, e.opts.JS, stream.Follower{Durable: e.opts.Consumer,
			Description: "pulselake: alert rules", AckWait: 30 * time.Second, MaxAckPending: 1000})
		if err != nil {
			return err
		}
		wg.Go(func() {
			if err := e.consumer.Run(ctx, cons); err != nil {
				errc <- err
			}
		})
	}
	t := time.NewTicker(e.opts.TickInterval)
	defer t.Stop()
	var watch <-chan time.Time
	if e.opts.WatchInterval > 0 && len(e.opts.RuleFiles) > 0 {
		w := time.NewTicker(e.opts.WatchInterval)
		defer w.Stop()
		watch = w.C
	}
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			e.saveSeenOnStop()
			return nil
		case err := <-errc:
			wg.Wait()
			return err
		case <-t.C:
			e.Tick(ctx)
		case <-watch:
			e.reloadIfChanged()
		}
	}
}

func (e *Engine) reloadIfChanged() {
	changed := false
	e.mu.Lock()
	for _, f := range e.opts.RuleFiles {
		if st, err := os.Stat(f); err == nil && !st.ModTime().Equal(e.fileMod[f]) {
			changed = true
		}
	}
	e.mu.Unlock()
	if !changed {
		return
	}
	if err := e.Reload(nil); err != nil {
		e.log.Error("rule files changed but are invalid; keeping the running rules", "err", err)
	}
}

// filter is what the engine's consumer decodes of each message: readings of the kinds the
// rules evaluate in full, others brief, none older than the horizon.
func (e *Engine) filter() stream.Filter {
	return stream.Filter{Kinds: func(kind string) bool { return e.set.Load().uses(kind) }, Brief: true, Since: e.horizon}
}

// horizon is the time before which a reading changes nothing the rules hold: older than
// MaxReadingAge, it changes no alert and marks no device seen, and older than the longest
// window, it is in no window a fresher reading's rule evaluates (a series keeps the window
// before its newest reading). The consumer leaves such readings out undecoded, so importing
// last year's data costs the rules next to nothing.
func (e *Engine) horizon() time.Time {
	var w time.Duration
	for _, d := range e.set.Load().window {
		w = max(w, d)
	}
	return e.opts.Now().Add(-e.opts.MaxReadingAge - w)
}

// handle evaluates the readings of one stream message; it returns an error (the message is
// delivered again) when the alert state they changed could not be saved.
func (e *Engine) handle(ctx context.Context, m *stream.Msg) error {
	start := time.Now()
	e.mu.Lock()
	if err := e.decodeFor(m); err != nil {
		e.mu.Unlock()
		return stream.Poison(err)
	}
	now := e.opts.Now()
	n := 0
	for i := range m.Batch.Entries {
		r := m.Batch.Entries[i].Reading
		if r == nil {
			continue
		}
		n++
		e.ev.observe(r, now, now.Sub(r.Time) <= e.opts.MaxReadingAge)
	}
	ts := e.ev.takeTransitions()
	err := e.persistLocked(ctx)
	if err == nil {
		e.emitLocked(ctx, ts)
	} else {
		// Not durable: keep the transitions for the next attempt.
		e.ev.out = append(ts, e.ev.out...)
	}
	e.mu.Unlock()
	e.mReadings.Add(float64(n))
	if err != nil {
		return fmt.Errorf("alert state not saved: %w", err)
	}
	e.sink(ctx, ts)
	e.mLatency.Observe(time.Since(start).Seconds())
	return nil
}

// decodeFor decodes m again in full if it holds brief readings of a kind the running rules
// evaluate (the rules were reloaded after m was decoded).
func (e *Engine) decodeFor(m *stream.Msg) error {
	for i := range m.Batch.Entries {
		en := &m.Batch.Entries[i]
		if !en.Brief || !e.ev.set.uses(en.Reading.Kind) {
			continue
		}
		if e.parser == nil {
			e.parser = reading.NewParser(e.opts.Registry)
		}
		b, err := stream.Decode(m.Data, e.parser)
		if err != nil {
			return err
		}
		b.Seq = m.Seq
		m.Batch = b
		return nil
	}
	return nil
}

// Tick applies the passage of time now (Run calls it every TickInterval).
func (e *Engine) Tick(ctx context.Context) {
	e.mu.Lock()
	now := e.opts.Now()
	e.ev.tick(now)
	ts := e.ev.takeTransitions()
	if err := e.persistLocked(ctx); err != nil {
		e.ev.out = append(ts, e.ev.out...)
		e.mu.Unlock()
		e.log.Error("alert state not saved; retrying at the next tick", "err", err)
		return
	}
	e.emitLocked(ctx, ts)
	seen := e.snapshotSeenLocked(now)
	e.resendLocked(ctx, now, false)
	e.mu.Unlock()
	e.sink(ctx, ts)
	if seen != nil {
		e.saveSeen(ctx, seen)
	}
}

func (e *Engine) resendLocked(ctx context.Context, now time.Time, force bool) {
	if e.opts.Notify == nil || (!force && now.Sub(e.lastSend) < e.opts.ResendInterval) {
		return
	}
	e.lastSend = now
	var out []notify.Alert
	for _, a := range e.ev.alerts {
		if a.State == StateFiring || a.State == StateResolved {
			out = append(out, a.ToNotify())
		}
	}
	if len(out) > 0 {
		if err := e.opts.Notify(ctx, out); err != nil {
			e.log.Warn("re-sending alerts to notification", "err", err)
		}
	}
}
