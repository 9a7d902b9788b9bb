package lake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulselake/pulselake/internal/stream"
)

// Failure isolation. A stream message holds rows for several tables (landing.<source>,
// trusted.<kind>..., quarantine.readings), and each table records in its own commits the
// highest stream sequence it holds (its watermark). When one table keeps failing while the
// others commit (a damaged file, a table removed by hand), the writer sets it aside:
//
//   - it creates a durable consumer of the ingest stream for that table alone
//     (repairPrefix + zone + "-" + name) starting at the first message of the failed flush,
//     before it acknowledges anything without the table; the consumer is what remembers,
//     across restarts and in the stream's retention, where the table has to catch up from;
//   - the main flow goes on without the table: every other table commits and the messages
//     are acknowledged;
//   - with back-off (repairBackoff, up to repairMaxBackoff) the writer tries the table again
//     by reading its consumer and committing only its rows, skipping what its watermark
//     already holds, so that nothing is written twice; once it has caught up with what the
//     main flow acknowledged, the consumer is deleted and the table is back in the main flow.
//
// When every table of a flush fails (the catalog or the disk is gone), nothing is set aside:
// the messages stay unacknowledged and the flush is retried in place.
const (
	repairPrefix     = "lake-repair-"
	setAsideAfter    = 3 // failed attempts of one table (others committing) before it is set aside
	stalledAfter     = 3 // failed attempts of every table before /readyz reports the writer stalled
	drainAttempts    = 3 // attempts of the final flush at shutdown
	repairBackoff    = time.Second
	repairMaxBackoff = time.Minute
	lagEvery         = 5 * time.Second
)

// tableState is the writer's record of a table that failed (Run goroutine only).
type tableState struct {
	key      string
	failures int       // consecutive failed attempts
	since    time.Time // first failure of the run
	err      error
	repair   jetstream.Consumer // non-nil while the table is set aside
	nextTry  time.Time
}

// Health is the lake writer's state as /readyz shows it.
type Health struct {
	// Broken maps zone.name to the last error of each table that fails or is catching up.
	Broken map[string]string
	// Stalled is set when every table has failed for several attempts in a row: nothing is
	// written to the lake.
	Stalled error
}

// health is the part of the writer's state other goroutines read.
type health struct {
	mu      sync.Mutex
	broken  map[string]string
	stalled error
}

func (h *health) setStalled(err error) {
	h.mu.Lock()
	h.stalled = err
	h.mu.Unlock()
}

// Health reports the tables the writer cannot write now and whether it writes at all.
func (w *Writer) Health() Health {
	w.health.mu.Lock()
	defer w.health.mu.Unlock()
	h := Health{Broken: make(map[string]string, len(w.health.broken)), Stalled: w.health.stalled}
	for k, v := range w.health.broken {
		h.Broken[k] = v
	}
	return h
}

// String is a one-line summary of the broken tables, sorted.
func (h Health) String() string {
	keys := make([]string, 0, len(h.Broken))
	for k := range h.Broken {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("table %s: %s", k, h.Broken[k])
	}
	return strings.Join(parts, "; ")
}

// setAsideNow reports whether key is set aside (catching up on its own).
func (w *Writer) setAsideNow(key string) bool {
	ts := w.tables[key]
	return ts != nil && ts.repair != nil
}

// tableOK records that key committed.
func (w *Writer) tableOK(key string) {
	w.m.tableOK.WithLabelValues(key).Set(1)
}

// tableFailures records the failed tables of a flush attempt and returns one error naming
// them all. Only failures while other tables committed count towards setting a table aside
// (when every table fails, the cause is not the table).
func (w *Writer) tableFailures(failed map[string]error, othersOK bool) error {
	var errs []error
	keys := make([]string, 0, len(failed))
	for k := range failed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		err := failed[key]
		ts := w.tables[key]
		if ts == nil {
			ts = &tableState{key: key, since: time.Now()}
			w.tables[key] = ts
		}
		if othersOK {
			ts.failures++
		}
		ts.err = err
		w.m.tableErrs.WithLabelValues(key).Inc()
		w.m.tableOK.WithLabelValues(key).Set(0)
		w.setBroken(key, err)
		errs = append(errs, fmt.Errorf("table %s: %w", key, err))
	}
	return errors.Join(errs...)
}

func (w *Writer) setBroken(key string, err error) {
	w.health.mu.Lock()
	defer w.health.mu.Unlock()
	if err == nil {
		delete(w.health.broken, key)
		return
	}
	w.health.broken[key] = err.Error()
}

// recovered forgets the failures of key.
func (w *Writer) recovered(key string) {
	delete(w.tables, key)
	w.setBroken(key, nil)
	w.tableOK(key)
}

// setAside sets aside the tables of failed that have failed often enough, each with a
// durable consumer starting at the first message of msgs. It reports whether it set aside
// every table of failed (so that the flush can go on without them).
func (w *Writer) setAside(ctx context.Context, failed map[string]error, msgs []*stream.Msg) bool {
	from := uint64(0)
	for _, m := range msgs {
		if from == 0 || m.Seq < from {
			from = m.Seq
		}
	}
	if from == 0 {
		return false
	}
	all := true
	for key := range failed {
		ts := w.tables[key]
		if ts.repair != nil {
			continue
		}
		if ts.failures < setAsideAfter {
			all = false
			continue
		}
		c, err := w.createRepair(ctx, key, from)
		if err != nil {
			w.log.Error("cannot set a failing lake table aside; the whole flush is retried", "table", key, "err", err)
			all = false
			continue
		}
		ts.repair = c
		ts.nextTry = time.Now().Add(repairBackoff)
		w.log.Error("lake table set aside: the other tables go on; it catches up from the stream once it can be written again",
			"table", key, "from_seq", from, "err", ts.err)
	}
	return all
}

func repairName(key string) string {
	return repairPrefix + strings.ReplaceAll(key, ".", "-")
}

// createRepair creates (or re-creates) the durable consumer of a table set aside, starting
// at stream sequence from.
func (w *Writer) createRepair(ctx context.Context, key string, from uint64) (jetstream.Consumer, error) {
	s, err := w.o.Conn.JS.Stream(ctx, stream.IngestStream)
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", stream.IngestStream, err)
	}
	name := repairName(key)
	if err := s.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("resetting consumer %s: %w", name, err)
	}
	return s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "pulselake lake writer: catch-up of table " + key,
		FilterSubject: stream.IngestSubjects,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       2 * time.Minute,
		MaxAckPending: 200000,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
		Replicas:      w.o.Conn.Replicas(),
	})
}

// loadRepairs finds the tables set aside by an earlier run (their consumers).
func (w *Writer) loadRepairs(ctx context.Context) error {
	s, err := w.o.Conn.JS.Stream(ctx, stream.IngestStream)
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", stream.IngestStream, err)
	}
	infos := s.ListConsumers(ctx)
	for ci := range infos.Info() {
		rest, ok := strings.CutPrefix(ci.Name, repairPrefix)
		if !ok {
			continue
		}
		zone, name, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		key := zone + "." + name
		c, err := s.Consumer(ctx, ci.Name)
		if err != nil {
			return fmt.Errorf("opening consumer %s: %w", ci.Name, err)
		}
		w.tables[key] = &tableState{key: key, since: time.Now(), repair: c, err: errors.New("catching up after a failure"),
			failures: setAsideAfter}
		w.setBroken(key, errors.New("catching up from the stream after an earlier failure"))
		w.m.tableOK.WithLabelValues(key).Set(0)
		w.log.Warn("lake table set aside by an earlier run catches up from the stream", "table", key, "from_seq", ci.AckFloor.Stream+1)
	}
	if err := infos.Err(); err != nil {
		return fmt.Errorf("listing consumers of %s: %w", stream.IngestStream, err)
	}
	return nil
}

// repairDue lets every table set aside whose retry time has come catch up one step.
func (w *Writer) repairDue(ctx context.Context) {
	for _, ts := range w.tables {
		if ts.repair == nil || time.Now().Before(ts.nextTry) {
			continue
		}
		if err := w.catchUp(ctx, ts); err != nil {
			if ctx.Err() != nil {
				return
			}
			ts.failures++
			ts.err = err
			w.m.tableErrs.WithLabelValues(ts.key).Inc()
			w.setBroken(ts.key, err)
			wait := min(repairBackoff<<min(ts.failures-setAsideAfter, 6), repairMaxBackoff)
			ts.nextTry = time.Now().Add(wait)
			w.log.Warn("lake table still cannot be written; trying again later", "table", ts.key, "retry_in", wait, "err", err)
		}
	}
}

// catchUp writes to a table set aside the rows of its next messages, up to what the main
// flow has acknowledged; when it has reached that point it returns the table to the main
// flow.
func (w *Writer) catchUp(ctx context.Context, ts *tableState) error {
	info, err := ts.repair.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading consumer %s: %w", repairName(ts.key), err)
	}
	if info.NumAckPending > 0 {
		// A failed attempt left messages delivered: start again at the first of them, so
		// that the table takes them in stream order.
		c, err := w.createRepair(ctx, ts.key, info.AckFloor.Stream+1)
		if err != nil {
			return err
		}
		ts.repair = c
	}
	batch, err := ts.repair.Fetch(w.o.FetchBatch, jetstream.FetchMaxBytes(w.o.FetchBytes), jetstream.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return fmt.Errorf("fetching for table %s: %w", ts.key, err)
	}
	var msgs []*stream.Msg
	caughtUp := false
	for jm := range batch.Messages() {
		m, err := stream.Wrap(jm)
		if err != nil {
			continue
		}
		if m.Seq > w.ackedSeq {
			caughtUp = true // the main flow has this one (buffered or still to fetch)
			continue
		}
		msgs = append(msgs, m)
	}
	if len(msgs) > 0 {
		stream.DecodeAll(msgs, w.parsers)
		res, err := w.flush(ctx, msgs, ts.key)
		if err != nil {
			return err
		}
		if ferr := res.failed[ts.key]; ferr != nil {
			return ferr
		}
		for _, m := range msgs {
			if err := m.Ack(); err != nil {
				// The commit is durable; a lost ack only means a redelivery that the watermark skips.
				w.log.Warn("acknowledging a stream message", "err", err)
			}
		}
	}
	if len(msgs) == 0 && !caughtUp {
		info, err := ts.repair.Info(ctx)
		if err != nil {
			return fmt.Errorf("reading consumer %s: %w", repairName(ts.key), err)
		}
		caughtUp = info.NumPending == 0
	}
	ts.nextTry = time.Now() // go on at once while there is more
	if !caughtUp {
		return nil
	}
	s, err := w.o.Conn.JS.Stream(ctx, stream.IngestStream)
	if err == nil {
		err = s.DeleteConsumer(ctx, repairName(ts.key))
	}
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("deleting consumer %s: %w", repairName(ts.key), err)
	}
	w.log.Info("lake table caught up and is written again", "table", ts.key, "down_for", time.Since(ts.since).Round(time.Second))
	w.recovered(ts.key)
	return nil
}

// updateLag sets the writer lag gauge from the consumers' state.
func (w *Writer) updateLag(ctx context.Context, cons jetstream.Consumer) {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := cons.Info(ictx)
	if err != nil {
		return
	}
	lag := info.NumPending + uint64(info.NumAckPending)
	for _, ts := range w.tables {
		if ts.repair == nil {
			continue
		}
		if ri, err := ts.repair.Info(ictx); err == nil && ri.NumPending+uint64(ri.NumAckPending) > 0 {
			// The table set aside has to go through up to what the main flow acknowledged.
			lag = max(lag, w.ackedSeq-min(ri.AckFloor.Stream, w.ackedSeq)+info.NumPending+uint64(info.NumAckPending))
		}
	}
	w.m.lagMsgs.Set(float64(lag))
}
