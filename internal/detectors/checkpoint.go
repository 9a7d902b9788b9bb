package detectors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/alert"
)

// Checkpoints. The runner saves what the detectors learned (every baseline's detector state,
// anomaly.Stateful) and their alerts to a KV bucket every CheckpointEvery and once more when
// Run ends, and restores them when Run starts, so a restart does not relearn. Keys:
//
//	b.<subject hash>.<baseline hash>  a baseline: a JSON line (baselineMeta) then the detector's
//	                                  saved state (anomaly's binary format)
//	a.<subject hash>.<alert hash>     an alert: alert.Alert as JSON (the rule engine's KV form)
//
// The subject hash (16 hex digits of SHA-256) groups a subject's keys, so erasure lists only
// them. A checkpoint writes only the baselines that scored a reading since they were last
// written and the alerts that changed, and purges the keys of baselines and alerts no longer
// held. It copies the states under the runner's lock, a chunk of baselines at a time, and
// writes them outside it, so the consumer waits at most for one chunk's copies.
//
// After a crash (SIGKILL, power loss) what was learned since the last checkpoint is lost: at
// most CheckpointEvery of learning. The durable consumer resumes from its ack floor, so the
// readings of that interval are not seen again (they were acknowledged) unless they were not
// yet acknowledged; a restored baseline that is ahead of a redelivered reading does not score
// it (a reading not after its baseline's last one is skipped).

// Bucket is the KV bucket of the detectors' checkpoints.
const Bucket = "pulselake_detectors"

// DefaultCheckpointEvery is the default interval between checkpoints.
const DefaultCheckpointEvery = 30 * time.Second

const (
	// maxEntryBytes bounds one checkpointed value (a NATS server's default max_payload is
	// 1 MiB); a larger baseline (a timeshift of months at a fine step) is not saved and
	// relearns after a restart.
	maxEntryBytes = 1000 << 10
	// snapshotChunk is how many baselines a checkpoint copies per hold of the runner's lock.
	snapshotChunk = 256
	// finalCheckpointTimeout bounds the checkpoint written when Run ends.
	finalCheckpointTimeout = 30 * time.Second
)

// baselineMeta is the JSON line before a saved baseline's state.
type baselineMeta struct {
	Detector string    `json:"detector"`
	Method   string    `json:"method"`
	Subject  string    `json:"subject"`
	Device   string    `json:"device,omitempty"` // with baseline: device
	Last     time.Time `json:"last"`             // time of the last reading scored
	LastSeen time.Time `json:"last_seen"`        // when it was last seen (for idle_after)
}

// checkpointer holds what was last written to the bucket.
type checkpointer struct {
	kv    jetstream.KeyValue
	every time.Duration

	mu    sync.Mutex        // one checkpoint or erasure of the bucket at a time
	saved map[string]uint64 // key -> what it holds: the baseline's last time, or the alert's hash
	// closed: the runner dropped its baselines (Close); a checkpoint now would purge them.
	closed atomic.Bool

	mWrites   prometheus.Counter
	mBytes    prometheus.Counter
	mFailures prometheus.Counter
	mSkipped  prometheus.Counter
	mDuration prometheus.Histogram
	mRestored *prometheus.CounterVec
}

func newCheckpointer(kv jetstream.KeyValue, every time.Duration) *checkpointer {
	if every <= 0 {
		every = DefaultCheckpointEvery
	}
	return &checkpointer{kv: kv, every: every, saved: map[string]uint64{},
		mWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_anomaly_checkpoint_writes_total",
			Help: "Baselines and alerts of the streaming anomaly detectors written to their KV bucket."}),
		mBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_anomaly_checkpoint_bytes_total",
			Help: "Bytes of baselines and alerts written to the streaming anomaly detectors' KV bucket."}),
		mFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_anomaly_checkpoint_failures_total",
			Help: "Checkpoints of the streaming anomaly detectors that failed (retried at the next one)."}),
		mSkipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_anomaly_checkpoint_skipped_total",
			Help: "Baselines not checkpointed because their saved state exceeds the largest KV value."}),
		mDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pulselake_anomaly_checkpoint_seconds",
			Help: "Duration of a checkpoint of the streaming anomaly detectors.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
		mRestored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_anomaly_restored_total",
			Help: "Baselines and alerts read back from the KV bucket at start, by outcome (restored, discarded)."}, []string{"outcome"}),
	}
}

func (c *checkpointer) collectors() []prometheus.Collector {
	return []prometheus.Collector{c.mWrites, c.mBytes, c.mFailures, c.mSkipped, c.mDuration, c.mRestored}
}

// subjectHash is the key segment grouping a subject's entries.
func subjectHash(subject string) string {
	h := sha256.Sum256([]byte(subject))
	return hex.EncodeToString(h[:8])
}

func baselineKey(detector, subject, device string) string {
	h := sha256.Sum256([]byte(detector + "\x00" + subject + "\x00" + device))
	return "b." + subjectHash(subject) + "." + hex.EncodeToString(h[:16])
}

func alertKey(k alert.Key) string {
	h := sha256.Sum256([]byte(k.Rule + "\x00" + k.Subject + "\x00" + k.Device))
	return "a." + subjectHash(k.Subject) + "." + hex.EncodeToString(h[:16])
}

// splitKey splits a baseline key of the runner (subject, or subject NUL device).
func splitKey(key string) (subject, device string) {
	subject, device, _ = strings.Cut(key, "\x00")
	return subject, device
}

// entry is one value to write.
type entry struct {
	key   string
	value []byte
	mark  uint64
}

// dirtyBaseline is a baseline that scored a reading since it was last written.
type dirtyBaseline struct {
	s   *detectorState
	b   *baseline
	key string
}

// Checkpoint writes the baselines and alerts changed since the last checkpoint to the bucket
// and purges those no longer held. Without a bucket it does nothing.
func (r *Runner) Checkpoint(ctx context.Context) error {
	c := r.ck
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil
	}
	start := time.Now()
	err := r.checkpointLocked(ctx)
	c.mDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		c.mFailures.Inc()
		return fmt.Errorf("checkpointing anomaly detectors: %w", err)
	}
	return nil
}

// checkpointLocked writes a checkpoint; c.mu is held.
func (r *Runner) checkpointLocked(ctx context.Context) error {
	held := map[string]bool{}
	writes, dirty := r.listChanges(held)
	writes = append(writes, r.copyBaselines(dirty)...)
	errs := r.ck.write(ctx, r.log, writes)
	errs = append(errs, r.ck.purgeUnheld(ctx, held)...)
	return errors.Join(errs...)
}

// listChanges marks in held the keys of every alert and saveable baseline the runner holds, and
// returns the alerts changed since they were written and the baselines that scored a reading
// since. Alerts are few: copied in one hold of the lock. Baselines: listed, then copied in
// chunks (copyBaselines).
func (r *Runner) listChanges(held map[string]bool) (writes []entry, dirty []dirtyBaseline) {
	c := r.ck
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, a := range r.alerts {
		key := alertKey(k)
		held[key] = true
		b, err := json.Marshal(a)
		if err != nil {
			continue
		}
		h := fnv.New64a()
		h.Write(b)
		if m := h.Sum64() | 1; c.saved[key] != m { // |1: never 0, which means "absent"
			writes = append(writes, entry{key: key, value: b, mark: m})
		}
	}
	for _, s := range r.dets {
		for el := s.lru.Front(); el != nil; el = el.Next() {
			b := el.Value.(*baseline)
			if _, ok := b.det.(encoding.BinaryMarshaler); !ok {
				continue
			}
			subject, device := splitKey(b.key)
			key := baselineKey(s.d.Name, subject, device)
			held[key] = true
			if b.last.IsZero() || c.saved[key] == uint64(b.last.UnixNano())|1 {
				continue
			}
			dirty = append(dirty, dirtyBaseline{s: s, b: b, key: key})
		}
	}
	return writes, dirty
}

// copyBaselines saves the states of the dirty baselines still held, taking the runner's lock
// once per chunk.
func (r *Runner) copyBaselines(dirty []dirtyBaseline) []entry {
	var writes []entry
	for chunk := range slices.Chunk(dirty, snapshotChunk) {
		r.mu.Lock()
		for _, d := range chunk {
			if el, ok := d.s.base[d.b.key]; !ok || el.Value.(*baseline) != d.b {
				continue // dropped since it was listed
			}
			state, err := d.b.det.(encoding.BinaryMarshaler).MarshalBinary()
			if err != nil {
				r.log.Warn("saving an anomaly baseline", "detector", d.s.d.Name, "err", err)
				continue
			}
			subject, device := splitKey(d.b.key)
			meta, _ := json.Marshal(baselineMeta{Detector: d.s.d.Name, Method: d.s.d.Method, Subject: subject, Device: device,
				Last: d.b.last, LastSeen: d.b.lastSeen})
			v := make([]byte, 0, len(meta)+1+len(state))
			v = append(append(append(v, meta...), '\n'), state...)
			writes = append(writes, entry{key: d.key, value: v, mark: uint64(d.b.last.UnixNano()) | 1})
		}
		r.mu.Unlock()
	}
	return writes
}

// write puts writes to the bucket, skipping values too large for it, and records what each
// key now holds.
func (c *checkpointer) write(ctx context.Context, log *slog.Logger, writes []entry) []error {
	var errs []error
	for _, w := range writes {
		if len(w.value) > maxEntryBytes {
			c.mSkipped.Inc()
			log.Warn("an anomaly baseline is too large to checkpoint; it relearns after a restart", "bytes", len(w.value), "limit", maxEntryBytes)
			c.saved[w.key] = w.mark
			continue
		}
		if _, err := c.kv.Put(ctx, w.key, w.value); err != nil {
			errs = append(errs, fmt.Errorf("writing %s: %w", w.key, err))
			continue
		}
		c.saved[w.key] = w.mark
		c.mWrites.Inc()
		c.mBytes.Add(float64(len(w.value)))
	}
	return errs
}

// purgeUnheld purges the saved keys not in held, unless the runner closed meanwhile.
func (c *checkpointer) purgeUnheld(ctx context.Context, held map[string]bool) []error {
	var errs []error
	for key := range c.saved {
		if held[key] || c.closed.Load() {
			continue
		}
		if err := purgeKey(ctx, c.kv, key); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(c.saved, key)
	}
	return errs
}

// runCheckpoints checkpoints every CheckpointEvery until ctx is cancelled.
func (r *Runner) runCheckpoints(ctx context.Context) {
	t := time.NewTicker(r.ck.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("checkpoint failed; retried at the next one", "err", err)
			}
		}
	}
}

// finalCheckpoint writes the last checkpoint when Run ends (the consumer has stopped).
func (r *Runner) finalCheckpoint(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalCheckpointTimeout)
	defer cancel()
	if err := r.Checkpoint(cctx); err != nil {
		r.log.Warn("final checkpoint failed; learning since the last one is lost", "err", err)
	}
}

// Restore reads the checkpointed baselines and alerts back into the runner; call it before
// the first reading. A baseline of a detector no longer configured, or whose saved state does
// not fit the detector (another method or parameters, another format version), is discarded
// and its entry purged: that baseline starts afresh. Per detector at most max_subjects
// baselines are restored, the most recently seen.
func (r *Runner) Restore(ctx context.Context) error {
	c := r.ck
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := &restoring{r: r, byName: map[string]*detectorState{}, alerts: map[alert.Key]*alert.Alert{}}
	for _, s := range r.dets {
		rs.byName[s.d.Name] = s
	}
	err := eachEntry(ctx, c.kv, ">", func(key string, value []byte) error {
		switch {
		case strings.HasPrefix(key, "a."):
			rs.readAlert(ctx, key, value)
		case strings.HasPrefix(key, "b."):
			return rs.readBaseline(ctx, key, value)
		default:
			rs.discard(ctx, key, "unknown key", nil)
		}
		return nil
	})
	if err != nil {
		for _, x := range rs.bases {
			closeDet(x.b.det)
		}
		return fmt.Errorf("restoring anomaly detectors: %w", err)
	}
	r.install(rs.bases, rs.alerts)
	r.log.Info("restored anomaly detectors", "baselines", len(rs.bases), "alerts", len(rs.alerts))
	return nil
}

// restoredBaseline is a baseline read back from the bucket, not yet installed.
type restoredBaseline struct {
	s    *detectorState
	b    *baseline
	key  string
	mark uint64
}

// restoring is what Restore has read so far.
type restoring struct {
	r      *Runner
	byName map[string]*detectorState
	bases  []restoredBaseline
	alerts map[alert.Key]*alert.Alert
}

// discard purges an entry that cannot be restored.
func (rs *restoring) discard(ctx context.Context, key, why string, err error) {
	c := rs.r.ck
	rs.r.log.Info("discarding a checkpointed anomaly baseline; it starts afresh", "key", key, "reason", why, "err", err)
	c.mRestored.WithLabelValues("discarded").Inc()
	if err := purgeKey(ctx, c.kv, key); err != nil {
		rs.r.log.Warn("purging a discarded checkpoint entry", "key", key, "err", err)
	}
}

// readAlert reads a checkpointed alert.
func (rs *restoring) readAlert(ctx context.Context, key string, value []byte) {
	var a alert.Alert
	if err := json.Unmarshal(value, &a); err != nil || alertKey(a.Key()) != key {
		rs.discard(ctx, key, "unreadable alert", err)
		return
	}
	rs.alerts[a.Key()] = &a
	rs.r.ck.saved[key] = 0 // rewritten at the next checkpoint, purged if no longer held
}

// readBaseline reads a checkpointed baseline into a new detector; it fails only when a
// configured detector cannot be started.
func (rs *restoring) readBaseline(ctx context.Context, key string, value []byte) error {
	metaLine, state, ok := bytes.Cut(value, []byte{'\n'})
	var m baselineMeta
	if err := json.Unmarshal(metaLine, &m); !ok || err != nil || baselineKey(m.Detector, m.Subject, m.Device) != key {
		rs.discard(ctx, key, "unreadable baseline", err)
		return nil
	}
	s := rs.byName[m.Detector]
	if s == nil || s.d.Method != m.Method || s.d.PerDevice != (m.Device != "") {
		rs.discard(ctx, key, "detector "+m.Detector+" is no longer configured like this", nil)
		return nil
	}
	det, err := s.d.New()
	if err != nil {
		return fmt.Errorf("starting detector %s: %w", m.Detector, err)
	}
	u, ok := det.(encoding.BinaryUnmarshaler)
	if !ok {
		closeDet(det)
		rs.discard(ctx, key, "the detector cannot restore a state", nil)
		return nil
	}
	if err := u.UnmarshalBinary(state); err != nil {
		closeDet(det)
		rs.discard(ctx, key, "saved state does not fit the detector", err)
		return nil
	}
	bk := m.Subject
	if s.d.PerDevice {
		bk += "\x00" + m.Device
	}
	rs.bases = append(rs.bases, restoredBaseline{s: s, b: &baseline{key: bk, det: det, last: m.Last, lastSeen: m.LastSeen}, key: key,
		mark: uint64(m.Last.UnixNano()) | 1})
	return nil
}

// install adds the restored baselines (at most max_subjects per detector, the most recently
// seen) and the alerts the runner does not hold yet; c.mu is held.
func (r *Runner) install(bases []restoredBaseline, alerts map[alert.Key]*alert.Alert) {
	c := r.ck
	// Most recently seen first, so max_subjects keeps those.
	slices.SortStableFunc(bases, func(x, y restoredBaseline) int { return y.b.lastSeen.Compare(x.b.lastSeen) })
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range bases {
		s := x.s
		if _, dup := s.base[x.b.key]; dup || s.lru.Len() >= s.d.MaxSubjects {
			closeDet(x.b.det)
			c.saved[x.key] = 0 // purged at the next checkpoint
			continue
		}
		s.base[x.b.key] = s.lru.PushBack(x.b)
		c.saved[x.key] = x.mark
		c.mRestored.WithLabelValues("restored").Inc()
	}
	for k, a := range alerts {
		if _, ok := r.alerts[k]; !ok {
			r.alerts[k] = a
			c.mRestored.WithLabelValues("restored").Inc()
		}
	}
}

func closeDet(d any) {
	if c, ok := d.(io.Closer); ok {
		c.Close()
	}
}

// EraseCheckpoint removes the subject's checkpointed baselines and alerts from the bucket
// (after EraseSubject dropped them from memory, so no checkpoint writes them back). It
// returns how many entries the bucket held of the subject before and after.
func (r *Runner) EraseCheckpoint(ctx context.Context, subject string, dryRun bool) (before, after int, labels []map[string]string, err error) {
	c := r.ck
	if c == nil {
		return 0, 0, nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	before, after, err = EraseState(ctx, c.kv, subject, dryRun)
	if !dryRun {
		sh := subjectHash(subject)
		for key := range c.saved {
			if strings.HasPrefix(key[2:], sh+".") {
				delete(c.saved, key)
			}
		}
	}
	return before, after, nil, err
}

// EraseState removes the subject's entries from the detectors' bucket (every revision) and
// returns how many it held before and after. It verifies the subject named in each entry, so
// another subject sharing the key's hash prefix is left alone. Use Runner.EraseCheckpoint
// while a runner writes to the bucket.
func EraseState(ctx context.Context, kv jetstream.KeyValue, subject string, dryRun bool) (before, after int, err error) {
	sh := subjectHash(subject)
	var keys []string
	for _, prefix := range []string{"a.", "b."} {
		err := eachEntry(ctx, kv, prefix+sh+".>", func(key string, value []byte) error {
			if entrySubject(key, value) == subject {
				keys = append(keys, key)
			}
			return nil
		})
		if err != nil {
			return 0, 0, err
		}
	}
	before = len(keys)
	if dryRun {
		return before, before, nil
	}
	for i, key := range keys {
		if err := purgeKey(ctx, kv, key); err != nil {
			return before, before - i, err
		}
	}
	return before, 0, nil
}

// entrySubject is the subject an entry of the bucket names ("" when unreadable).
func entrySubject(key string, value []byte) string {
	if strings.HasPrefix(key, "b.") {
		value, _, _ = bytes.Cut(value, []byte{'\n'})
	}
	var v struct {
		Subject string `json:"subject"`
	}
	if json.Unmarshal(value, &v) != nil {
		return ""
	}
	return v.Subject
}

func purgeKey(ctx context.Context, kv jetstream.KeyValue, key string) error {
	if err := kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("purging %s: %w", key, err)
	}
	return nil
}

// eachEntry calls fn with every live entry whose key matches filter.
func eachEntry(ctx context.Context, kv jetstream.KeyValue, filter string, fn func(key string, value []byte) error) error {
	lister, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return fmt.Errorf("listing %s: %w", Bucket, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	_ = lister.Stop() // the listing ended: stopping only releases its subscription
	for _, k := range keys {
		ent, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s %s: %w", Bucket, k, err)
		}
		if err := fn(k, ent.Value()); err != nil {
			return err
		}
	}
	return nil
}
