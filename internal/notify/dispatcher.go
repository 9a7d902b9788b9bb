package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Dispatcher.
type Options struct {
	Config Config
	// Silences mutes alerts; nil means none.
	Silences *Silences
	// Log persists the notification log (bucket "notify_log"); nil keeps it in memory, so a
	// restart may repeat a notification.
	Log jetstream.KeyValue
	// QueueSize bounds notifications waiting for delivery (default 1024); when full, new ones
	// are dropped and counted, and the next group_interval tries again.
	QueueSize int
	// Workers deliver notifications concurrently (default 4).
	Workers int
	// Retry back-off: first delay RetryBase (default 500ms), doubling up to RetryMax (default
	// 30s) with full jitter, giving up after RetryFor (default 5m).
	RetryBase, RetryMax, RetryFor time.Duration
	// HTTPClient for webhooks and Alertmanager (default one with 10 s timeouts).
	HTTPClient *http.Client
	// ExternalURL is pulselake's URL, put in webhook messages.
	ExternalURL string
	Now         func() time.Time
}

// Dispatcher is the notification pipeline.
type Dispatcher struct {
	log  *slog.Logger
	opts Options
	now  func() time.Time

	mu       sync.Mutex
	cfg      *compiledConfig
	alerts   map[Fingerprint]*storedAlert
	groups   map[string]*group
	nflog    map[string]nflogEntry
	inflight map[string]bool

	queue chan *job
	wake  chan struct{}

	mSent     *prometheus.CounterVec
	mDropped  prometheus.Counter
	mRetries  *prometheus.CounterVec
	mMuted    prometheus.Counter
	mReceived prometheus.Counter
}

type storedAlert struct {
	Alert
	fp   Fingerprint
	refs int // groups holding it
}

type compiledConfig struct {
	root     *route
	senders  map[string]sender
	resolved map[string]bool
	inhibit  []inhibitRule
}

type route struct {
	id             string
	receivers      []string
	matchers       Matchers
	groupBy        []string
	groupAll       bool
	groupWait      time.Duration
	groupInterval  time.Duration
	repeatInterval time.Duration
	cont           bool
	children       []*route
}

type inhibitRule struct {
	source, target Matchers
	equal          []string
}

type group struct {
	key    string
	route  *route
	labels map[string]string
	alerts map[Fingerprint]struct{}
	next   time.Time
}

type nflogEntry struct {
	Receiver string    `json:"receiver"`
	GroupKey string    `json:"group_key"`
	Firing   []string  `json:"firing"` // fingerprints notified as firing
	At       time.Time `json:"at"`     // last notification
}

type job struct {
	receiver, key, groupKey string
	data                    *Data
	alerts                  []Alert
	firing                  []string
	enqueued                time.Time
}

// New builds the pipeline from its configuration and loads the notification log.
func New(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, o Options) (*Dispatcher, error) {
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	o.RetryBase = orDefault(o.RetryBase, 500*time.Millisecond)
	o.RetryMax = orDefault(o.RetryMax, 30*time.Second)
	o.RetryFor = orDefault(o.RetryFor, 5*time.Minute)
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Dispatcher{
		log: log, opts: o, now: o.Now,
		alerts: map[Fingerprint]*storedAlert{}, groups: map[string]*group{},
		nflog: map[string]nflogEntry{}, inflight: map[string]bool{},
		queue: make(chan *job, o.QueueSize), wake: make(chan struct{}, 1),
		mSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_notify_notifications_total",
			Help: "Notifications by receiver and outcome (sent, failed)."}, []string{"receiver", "outcome"}),
		mDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_notify_dropped_total",
			Help: "Notifications dropped because the delivery queue was full (retried at the next group interval)."}),
		mRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_notify_retries_total",
			Help: "Delivery attempts after a failure, by receiver."}, []string{"receiver"}),
		mMuted: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_notify_muted_total",
			Help: "Firing alerts left out of a notification because a silence or inhibition rule muted them."}),
		mReceived: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_notify_alerts_received_total",
			Help: "Alert updates received from the rule engine."}),
	}
	if reg != nil {
		qlen := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pulselake_notify_queue_length",
			Help: "Notifications waiting for delivery."}, func() float64 { return float64(len(d.queue)) })
		for _, c := range []prometheus.Collector{d.mSent, d.mDropped, d.mRetries, d.mMuted, d.mReceived, qlen} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering notify metrics: %w", err)
			}
		}
	}
	cfg, err := compile(o.Config, o.HTTPClient, log)
	if err != nil {
		return nil, err
	}
	d.cfg = cfg
	if o.Log != nil {
		if err := d.loadLog(ctx); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// ReloadLog re-reads the notification log from its bucket, for a dispatcher that takes over
// from another process (a cluster node becoming the processors' node): what the other one
// sent is then not sent again.
func (d *Dispatcher) ReloadLog(ctx context.Context) error {
	if d.opts.Log == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loadLog(ctx)
}

func (d *Dispatcher) loadLog(ctx context.Context) error {
	keys, err := d.opts.Log.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("listing notification log: %w", err)
	}
	for k := range keys.Keys() {
		e, err := d.opts.Log.Get(ctx, k)
		if err != nil {
			continue
		}
		var n nflogEntry
		if json.Unmarshal(e.Value(), &n) == nil {
			d.nflog[n.Receiver+"\x00"+n.GroupKey] = n
		}
	}
	return nil
}

func compile(c Config, client *http.Client, log *slog.Logger) (*compiledConfig, error) {
	if ps := c.Validate(); len(ps) > 0 {
		return nil, fmt.Errorf("invalid notification config: %w", ps)
	}
	channels := c.Channels
	if len(channels) == 0 {
		channels = []Channel{{Name: "log", Log: &LogConfig{}}}
	}
	cc := &compiledConfig{senders: map[string]sender{}, resolved: map[string]bool{}}
	var all []string
	for _, ch := range channels {
		s, err := newSender(ch, client, log)
		if err != nil {
			return nil, fmt.Errorf("channel %s: %w", ch.Name, err)
		}
		cc.senders[ch.Name] = s
		cc.resolved[ch.Name] = ch.SendResolved == nil || *ch.SendResolved
		all = append(all, ch.Name)
	}
	root := c.Route
	if root == nil {
		root = &Route{}
	}
	parent := &route{receivers: all, groupBy: defaultGroupBy, groupWait: DefaultGroupWait,
		groupInterval: DefaultGroupInterval, repeatInterval: DefaultRepeatInterval}
	cc.root = buildRoute(root, parent, "0")
	for _, r := range c.InhibitRules {
		src, _ := parseMatchers(r.SourceMatchers)
		tgt, _ := parseMatchers(r.TargetMatchers)
		cc.inhibit = append(cc.inhibit, inhibitRule{source: src, target: tgt, equal: r.Equal})
	}
	return cc, nil
}

func buildRoute(r *Route, parent *route, id string) *route {
	n := &route{id: id, receivers: parent.receivers, groupBy: parent.groupBy, groupWait: parent.groupWait,
		groupInterval: parent.groupInterval, repeatInterval: parent.repeatInterval, cont: r.Continue}
	if r.Receiver != "" {
		n.receivers = []string{r.Receiver}
	}
	n.matchers, _ = parseMatchers(r.Matchers)
	if r.GroupBy != nil {
		n.groupBy = r.GroupBy
	}
	n.groupAll = slices.Contains(n.groupBy, "...")
	if r.GroupWait != nil {
		n.groupWait = r.GroupWait.D()
	}
	if r.GroupInterval != nil {
		n.groupInterval = r.GroupInterval.D()
	}
	if r.RepeatInterval != nil {
		n.repeatInterval = r.RepeatInterval.D()
	}
	for i, c := range r.Routes {
		n.children = append(n.children, buildRoute(c, n, id+"."+strconv.Itoa(i)))
	}
	return n
}

// match returns the routes an alert goes to (Alertmanager: the deepest matching nodes; a
// node without matching children takes the alert itself).
func (r *route) match(labels map[string]string) []*route {
	if !r.matchers.Matches(labels) {
		return nil
	}
	var out []*route
	for _, c := range r.children {
		m := c.match(labels)
		out = append(out, m...)
		if len(m) > 0 && !c.cont {
			break
		}
	}
	if len(out) == 0 {
		out = []*route{r}
	}
	return out
}

func (r *route) groupLabels(labels map[string]string) map[string]string {
	if r.groupAll {
		return maps.Clone(labels)
	}
	g := make(map[string]string, len(r.groupBy))
	for _, k := range r.groupBy {
		if v, ok := labels[k]; ok {
			g[k] = v
		}
	}
	return g
}

func labelsString(l map[string]string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(l)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// Reload replaces the configuration. Alerts are kept and re-routed; the notification log
// keeps receivers from being told again what they already know.
func (d *Dispatcher) Reload(c Config) error {
	cc, err := compile(c, d.opts.HTTPClient, d.log)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.cfg = cc
	old := d.alerts
	d.alerts = map[Fingerprint]*storedAlert{}
	d.groups = map[string]*group{}
	now := d.now()
	for _, a := range old {
		d.addLocked(a.Alert, now)
	}
	d.mu.Unlock()
	d.poke()
	return nil
}

// Notify takes new and updated alerts (firing ones with a zero EndsAt, resolved ones with
// EndsAt set). It never blocks on delivery.
func (d *Dispatcher) Notify(_ context.Context, alerts []Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	now := d.now()
	d.mu.Lock()
	for _, a := range alerts {
		d.addLocked(a, now)
	}
	d.mu.Unlock()
	d.mReceived.Add(float64(len(alerts)))
	d.poke()
	return nil
}

func (d *Dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Dispatcher) addLocked(a Alert, now time.Time) {
	fp := FingerprintOf(a.Labels)
	if s, ok := d.alerts[fp]; ok {
		// A resolved alert is not revived by a late resend of its firing state, but a new
		// firing episode (a later start) replaces it.
		if s.Resolved(now) && !a.Resolved(now) && !a.StartsAt.After(s.StartsAt) {
			return
		}
		s.Alert = a
		return
	}
	s := &storedAlert{Alert: a, fp: fp}
	if a.Resolved(now) {
		// A resolved alert nobody was told about needs no notice; keep it only if some
		// receiver's log lists it as firing.
		known := false
		for _, e := range d.nflog {
			if slices.Contains(e.Firing, fp.String()) {
				known = true
				break
			}
		}
		if !known {
			return
		}
	}
	d.alerts[fp] = s
	for _, r := range d.cfg.root.match(a.Labels) {
		gl := r.groupLabels(a.Labels)
		key := r.id + ":" + labelsString(gl)
		g, ok := d.groups[key]
		if !ok {
			g = &group{key: key, route: r, labels: gl, alerts: map[Fingerprint]struct{}{}, next: now.Add(r.groupWait)}
			d.groups[key] = g
		}
		if _, ok := g.alerts[fp]; !ok {
			g.alerts[fp] = struct{}{}
			s.refs++
		}
	}
}

// Run delivers notifications until ctx is cancelled: it owns the group scheduler and the
// delivery workers, and returns after all of them stopped.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range d.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.worker(ctx)
		}()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := d.flushDue()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(d.now()), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-timer.C:
		case <-d.wake:
		}
	}
}

// flushDue flushes every group whose time has come and returns the earliest next flush.
func (d *Dispatcher) flushDue() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	var next time.Time
	for key, g := range d.groups {
		if !g.next.After(now) {
			d.flushLocked(g, now)
			g.next = now.Add(g.route.groupInterval)
			if len(g.alerts) == 0 {
				delete(d.groups, key)
				continue
			}
		}
		if next.IsZero() || g.next.Before(next) {
			next = g.next
		}
	}
	return next
}

// resolvedRetention bounds how long a resolved alert waits for its notice to be delivered.
const resolvedRetention = time.Hour

// flushLocked sends each receiver of g the notification it is due, if any, and lets the
// resolved alerts no receiver still has to hear about leave the group.
func (d *Dispatcher) flushLocked(g *group, now time.Time) {
	firing, resolved := d.partitionLocked(g, now)
	stillNeeded := map[string]bool{}
	for _, recv := range g.route.receivers {
		d.notifyReceiverLocked(g, recv, firing, resolved, stillNeeded, now)
	}
	// Resolved alerts leave the group once no receiver's log still lists them as firing.
	for _, r := range resolved {
		if !stillNeeded[r.fp] || now.Sub(r.a.EndsAt) > resolvedRetention {
			fp := r.a.fp
			delete(g.alerts, fp)
			if r.a.refs--; r.a.refs <= 0 {
				delete(d.alerts, fp)
			}
		}
	}
}

// groupAlert is an alert of a group with its fingerprint as text.
type groupAlert struct {
	fp string
	a  *storedAlert
}

// partitionLocked sorts g's alerts into firing (not muted) and resolved, each ordered by
// start time then fingerprint, counting the muted ones and dropping those already gone.
func (d *Dispatcher) partitionLocked(g *group, now time.Time) (firing, resolved []groupAlert) {
	for fp := range g.alerts {
		a := d.alerts[fp]
		if a == nil {
			delete(g.alerts, fp)
			continue
		}
		if a.Resolved(now) {
			resolved = append(resolved, groupAlert{fp.String(), a})
		} else if d.mutedLocked(a, now) {
			d.mMuted.Inc()
		} else {
			firing = append(firing, groupAlert{fp.String(), a})
		}
	}
	sortByStart(firing)
	sortByStart(resolved)
	return firing, resolved
}

// sortByStart orders alerts by start time, then fingerprint.
func sortByStart(s []groupAlert) {
	slices.SortFunc(s, func(x, y groupAlert) int {
		if c := x.a.StartsAt.Compare(y.a.StartsAt); c != 0 {
			return c
		}
		return strings.Compare(x.fp, y.fp)
	})
}

// notifyReceiverLocked queues the notification of g that recv is due: when an alert fires
// that its log does not list, when the repeat interval has passed, or when alerts it was
// told of resolved and it wants to hear so. It marks in stillNeeded the resolved alerts
// recv may yet be told of.
func (d *Dispatcher) notifyReceiverLocked(g *group, recv string, firing, resolved []groupAlert, stillNeeded map[string]bool, now time.Time) {
	nk := recv + "\x00" + g.key
	e := d.nflog[nk]
	if d.inflight[nk] {
		// A notification of this group is being delivered and its log entry is not
		// written yet: alerts that resolved meanwhile may be listed in it as firing, so
		// they wait for the flush after the delivery instead of leaving unannounced.
		for _, r := range resolved {
			stillNeeded[r.fp] = true
		}
		return
	}
	var sendRes []groupAlert
	for _, r := range resolved {
		if slices.Contains(e.Firing, r.fp) {
			sendRes = append(sendRes, r)
			stillNeeded[r.fp] = true
		}
	}
	newFiring := slices.ContainsFunc(firing, func(f groupAlert) bool { return !slices.Contains(e.Firing, f.fp) })
	repeat := len(firing) > 0 && now.Sub(e.At) >= g.route.repeatInterval
	wantResolved := len(sendRes) > 0 && d.cfg.resolved[recv]
	if !newFiring && !repeat && !wantResolved {
		if len(sendRes) > 0 {
			// The receiver does not want resolved notices: forget those alerts quietly.
			e.Firing = slices.DeleteFunc(slices.Clone(e.Firing), func(fp string) bool {
				return slices.ContainsFunc(sendRes, func(r groupAlert) bool { return r.fp == fp })
			})
			d.nflog[nk] = e
			for _, r := range sendRes {
				delete(stillNeeded, r.fp)
			}
		}
		return
	}
	if !d.cfg.resolved[recv] {
		sendRes = nil
	}
	d.enqueueLocked(d.newJob(g, recv, nk, firing, sendRes, now))
}

// newJob builds the notification to recv of g listing firing, then resolved; nk is its
// notification log key.
func (d *Dispatcher) newJob(g *group, recv, nk string, firing, resolved []groupAlert, now time.Time) *job {
	j := &job{receiver: recv, key: nk, groupKey: g.key, enqueued: now}
	data := &Data{Receiver: recv, Status: StatusResolved, GroupKey: g.key, GroupLabels: g.labels, ExternalURL: d.opts.ExternalURL}
	if len(firing) > 0 {
		data.Status = StatusFiring
	}
	for _, list := range [][]groupAlert{firing, resolved} {
		for _, f := range list {
			j.alerts = append(j.alerts, f.a.Alert)
			status := f.a.Status(now)
			if status == StatusFiring {
				j.firing = append(j.firing, f.fp)
			}
			data.Alerts = append(data.Alerts, TemplateAlert{Status: status, Labels: f.a.Labels, Annotations: f.a.Annotations,
				Values: f.a.Values, StartsAt: f.a.StartsAt, EndsAt: f.a.EndsAt, Fingerprint: f.fp, GeneratorURL: f.a.GeneratorURL})
		}
	}
	data.CommonLabels, data.CommonAnnotations = common(j.alerts)
	j.data = data
	return j
}

// enqueueLocked hands j to the senders and marks its group in flight for its receiver; when
// the queue is full it drops j, and the next group interval tries again.
func (d *Dispatcher) enqueueLocked(j *job) {
	select {
	case d.queue <- j:
		d.inflight[j.key] = true
	default:
		d.mDropped.Inc()
		d.log.Warn("notification queue full; dropping notification, will retry at the next group interval",
			"receiver", j.receiver, "group", j.groupKey)
	}
}

func common(alerts []Alert) (labels, annotations map[string]string) {
	if len(alerts) == 0 {
		return map[string]string{}, map[string]string{}
	}
	labels = maps.Clone(alerts[0].Labels)
	annotations = maps.Clone(alerts[0].Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	for _, a := range alerts[1:] {
		maps.DeleteFunc(labels, func(k, v string) bool { return a.Labels[k] != v })
		maps.DeleteFunc(annotations, func(k, v string) bool { return a.Annotations[k] != v })
	}
	return labels, annotations
}

func (d *Dispatcher) mutedLocked(a *storedAlert, now time.Time) bool {
	if d.opts.Silences.Mutes(a.Labels, now) {
		return true
	}
	for _, r := range d.cfg.inhibit {
		if !r.target.Matches(a.Labels) {
			continue
		}
		for fp, src := range d.alerts {
			if fp == a.fp || src.Resolved(now) || !r.source.Matches(src.Labels) {
				continue
			}
			equal := true
			for _, l := range r.equal {
				if src.Labels[l] != a.Labels[l] {
					equal = false
					break
				}
			}
			if equal {
				return true
			}
		}
	}
	return false
}

func (d *Dispatcher) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-d.queue:
			d.deliver(ctx, j)
		}
	}
}

func (d *Dispatcher) deliver(ctx context.Context, j *job) {
	d.mu.Lock()
	s := d.cfg.senders[j.receiver]
	d.mu.Unlock()
	var err error
	if s == nil {
		err = permanentError{fmt.Errorf("no channel named %s", j.receiver)}
	}
	start := time.Now()
	delay := d.opts.RetryBase
	for attempt := 0; s != nil; attempt++ {
		err = s.send(ctx, j.data, j.alerts)
		var perm permanentError
		if err == nil || errors.As(err, &perm) || ctx.Err() != nil || time.Since(start)+delay > d.opts.RetryFor {
			break
		}
		d.mRetries.WithLabelValues(j.receiver).Inc()
		// The first failure is logged when it happens (an unreachable SMTP server, a wrong
		// password), not only when the retries give up minutes later; the retries after it are
		// debug lines, and the outcome an error line below.
		level := slog.LevelDebug
		if attempt == 0 {
			level = slog.LevelWarn
		}
		d.log.Log(ctx, level, "notification failed; retrying", "receiver", j.receiver, "group", j.groupKey,
			"attempt", attempt+1, "retry_for", d.opts.RetryFor, "err", err)
		// Full jitter: a random wait up to the capped exponential delay.
		wait := time.Duration(rand.Int64N(int64(delay))) + delay/10
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		delay = min(delay*2, d.opts.RetryMax)
	}
	if err == nil {
		err = d.record(ctx, j)
	}
	d.mu.Lock()
	delete(d.inflight, j.key)
	if err == nil {
		e := nflogEntry{Receiver: j.receiver, GroupKey: j.groupKey, Firing: j.firing, At: d.now()}
		if len(j.firing) == 0 {
			delete(d.nflog, j.key)
		} else {
			d.nflog[j.key] = e
		}
	}
	d.mu.Unlock()
	if err != nil {
		d.mSent.WithLabelValues(j.receiver, "failed").Inc()
		d.log.Error("notification failed", "receiver", j.receiver, "group", j.groupKey, "err", err)
		return
	}
	d.mSent.WithLabelValues(j.receiver, "sent").Inc()
	// Resolved alerts may now leave their group.
	if len(j.firing) < len(j.alerts) {
		d.poke()
	}
}

// record persists what the receiver was told, so a restart does not repeat it.
func (d *Dispatcher) record(ctx context.Context, j *job) error {
	if d.opts.Log == nil {
		return nil
	}
	sum := sha256.Sum256([]byte(j.key))
	key := hex.EncodeToString(sum[:16])
	if len(j.firing) == 0 {
		if err := retryLog(ctx, func() error {
			err := d.opts.Log.Delete(ctx, key)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil
			}
			return err
		}); err != nil {
			d.log.Warn("recording notification", "receiver", j.receiver, "err", err)
		}
		return nil
	}
	b, _ := json.Marshal(nflogEntry{Receiver: j.receiver, GroupKey: j.groupKey, Firing: j.firing, At: d.now()})
	if err := retryLog(ctx, func() error { _, err := d.opts.Log.Put(ctx, key, b); return err }); err != nil {
		// Delivered but not recorded: the worst case is one repeated notification.
		d.log.Warn("recording notification", "receiver", j.receiver, "err", err)
	}
	return nil
}

// logRetryFor is how long a write of the notification log is tried again. On a cluster the
// bucket's leader may be between elections (a node just died) for a few seconds; an entry
// not written would make the node that next takes the processors lease notify again.
const logRetryFor = 20 * time.Second

// retryLog calls write until it succeeds, ctx ends or logRetryFor has passed, pausing
// between attempts (250 ms, doubling up to 2 s).
func retryLog(ctx context.Context, write func() error) error {
	deadline := time.Now().Add(logRetryFor)
	pause := 250 * time.Millisecond
	for {
		err := write()
		if err == nil || ctx.Err() != nil || time.Now().Add(pause).After(deadline) {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, 2*time.Second)
	}
}
