package lake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go/table"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
)

// ConsumerName is the durable JetStream consumer of the lake writer.
const ConsumerName = "lake"

// Options configures a Writer.
type Options struct {
	// Config is the lake section of the configuration; defaults are applied by New.
	Config Config
	// DataDir is the --data directory (for the default warehouse and catalog).
	DataDir string
	// Conn is the stream connection (required).
	Conn *stream.Conn
	// Registry knows every kind readings may have (required).
	Registry *reading.Registry
	// Store is an open store; nil opens one from Config (and closes it when Run returns).
	Store *Store
	// FetchBatch is how many stream messages one fetch asks for at most, and how many the
	// feed holds ready beside its pull. Default 32 (an import's message is a 230 KB frame
	// of 2 MB of envelope: 32 of them are already four flushes).
	FetchBatch int
	// Lease makes the writer take a lease in the stream before it consumes, so that of
	// several serve processes sharing a NATS cluster one writes and the others stand by.
	// Not needed with the embedded server (the data directory lock already ensures one).
	Lease bool
	// LeaseTTL is how long the lease outlives a writer that stopped renewing it (killed):
	// a standby takes over after at most this long. Default stream.DefaultLeaseTTL.
	LeaseTTL time.Duration
	// FetchBytes bounds the bytes one fetch asks for (a batch envelope can be megabytes).
	// Default 8 MiB.
	FetchBytes int
}

// Writer consumes the ingest stream into the lake. Create it with New, drive it with Run,
// stop it with Stop.
type Writer struct {
	log      *slog.Logger
	o        Options
	store    *Store
	ownStore bool
	parsers  []*reading.Parser // one per decode worker
	m        *metrics

	stopOnce sync.Once
	stop     chan struct{}

	index   map[string]*kindIndex    // identity index per kind (Run goroutine only)
	trusted map[string]*trustedTable // table name and columns per kind (Run goroutine only)

	// Run goroutine only: the state of tables that failed, and the highest stream sequence
	// the writer has committed (every message up to it is in every table not set aside).
	tables    map[string]*tableState
	ackedSeq  uint64
	savedSeq  uint64          // the committed position last recorded in the cursor consumer
	failing   int             // consecutive flush attempts that failed for every table
	committed map[string]bool // tables that committed in some attempt of the batch being retried

	// The consumer loop, the cursor consumer (see feed.go) and the state of the
	// housekeeping (Run goroutine only).
	loop        *stream.Consumer
	cons        jetstream.Consumer
	lagAt       time.Time
	nextCompact time.Time

	health health // what /readyz and /metrics report; safe for concurrent use
}

type trustedTable struct {
	name string
	cols []Column
}

type metrics struct {
	tableOK    *prometheus.GaugeVec
	tableErrs  *prometheus.CounterVec
	lagMsgs    prometheus.Gauge
	rows       *prometheus.CounterVec
	duplicates prometheus.Counter
	commits    prometheus.Counter
	commitDur  prometheus.Histogram
	failures   prometheus.Counter
	lastCommit prometheus.Gauge
	compacted  prometheus.Counter
	indexIDs   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		tableOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pulselake_lake_table_healthy",
			Help: "1 when the lake writer's last commit to the table succeeded, 0 while the table is failing or catching up (see /readyz)."}, []string{"table"}),
		tableErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_lake_table_errors_total",
			Help: "Failed attempts to write a lake table."}, []string{"table"}),
		lagMsgs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pulselake_lake_writer_lag_messages",
			Help: "Ingest stream messages not yet committed to the lake: waiting for the writer, buffered, or held for a table that is catching up."}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_lake_rows_written_total",
			Help: "Rows committed to lake tables, by zone."}, []string{"zone"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_lake_duplicates_skipped_total",
			Help: "Readings not written to the trusted zone because their identity was already there."}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_lake_flushes_total",
			Help: "Flushes of the lake writer that committed and acknowledged their messages."}),
		commitDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pulselake_lake_flush_seconds",
			Help: "Time to write and commit one flush.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_lake_flush_failures_total",
			Help: "Flush attempts that failed and were retried."}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pulselake_lake_last_flush_timestamp_seconds",
			Help: "Unix time of the last successful flush."}),
		compacted: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_lake_compacted_files_total",
			Help: "Small data files rewritten by compaction."}),
		indexIDs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pulselake_lake_identity_index_entries",
			Help: "Identities the lake writer holds in memory to keep trusted tables free of duplicates (the lake.dedup_days most recently used days of each kind; about 24-36 bytes each)."}),
	}
	if reg != nil {
		reg.MustRegister(m.tableOK, m.tableErrs, m.lagMsgs, m.rows, m.duplicates, m.commits, m.commitDur, m.failures, m.lastCommit, m.compacted, m.indexIDs)
	}
	return m
}

// New returns a lake writer.
func New(log *slog.Logger, reg prometheus.Registerer, o Options) (*Writer, error) {
	if o.Conn == nil || o.Registry == nil {
		return nil, errors.New("creating lake writer: a stream connection and a kind registry are required")
	}
	o.Config = o.Config.WithDefaults(o.DataDir)
	if ps := o.Config.Validate(); len(ps) > 0 {
		return nil, fmt.Errorf("creating lake writer: %w", ps)
	}
	if o.FetchBatch <= 0 {
		o.FetchBatch = DefaultFetchBatch
	}
	if o.FetchBytes <= 0 {
		o.FetchBytes = DefaultFetchBytes
	}
	parsers := make([]*reading.Parser, runtime.GOMAXPROCS(0))
	for i := range parsers {
		parsers[i] = reading.NewParser(o.Registry)
	}
	w := &Writer{log: log, o: o, store: o.Store, parsers: parsers, m: newMetrics(reg),
		stop: make(chan struct{}), index: map[string]*kindIndex{}, trusted: map[string]*trustedTable{},
		tables: map[string]*tableState{}, committed: map[string]bool{}}
	w.health.broken = map[string]string{}
	// Batches are held up to flush_bytes or flush_interval and committed together; a batch
	// whose every table fails is retried in place (stream order, which each table's
	// watermark relies on, is kept), and nothing is ever terminated: a message that is not
	// an envelope goes to quarantine.readings with the batch.
	var err error
	w.loop, err = stream.NewConsumer(log, reg, stream.ConsumerOptions{Name: ConsumerName, Kinds: o.Registry,
		Mode: stream.ModeRetryInPlace, HandleBatch: w.commit, KeepUndecodable: true, DecodeWorkers: len(parsers),
		FlushBytes: flushBudget(o.Config.FlushBytes, debug.SetMemoryLimit(-1)), FlushInterval: o.Config.FlushInterval.D(), FetchMessages: o.FetchBatch, FetchBytes: o.FetchBytes,
		Backoff: stream.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}, Stop: w.stop, DrainAttempts: drainAttempts,
		Between: w.housekeep})
	if err != nil {
		return nil, fmt.Errorf("creating lake writer: %w", err)
	}
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pulselake_lake_writer_lag_seconds",
			Help: "Age of the oldest ingest stream message the lake writer holds but has not committed (0 when it holds none)."},
			func() float64 {
				if t := w.loop.HeldSince(); !t.IsZero() {
					return time.Since(t).Seconds()
				}
				return 0
			}))
	}
	return w, nil
}

// flushShare is the part of the Go memory limit the writer's held envelopes may take: they
// are about a fifth of what a flush holds at its peak (decoded readings, Arrow builders and
// Parquet buffers beside them), and the stream server and the other consumers need the rest.
const flushShare = 12

// flushBudget is the bytes of envelopes held before a flush: flush_bytes, or less when the
// Go memory limit (runtime.memory_limit, GOMEMLIMIT) is too low for that many (768 MiB, the
// default, allows the 64 MiB default), but never below minFlushBytes.
func flushBudget(flushBytes, memLimit int64) int64 {
	if memLimit <= 0 || memLimit == math.MaxInt64 {
		return flushBytes
	}
	return min(flushBytes, max(memLimit/flushShare, minFlushBytes))
}

// minFlushBytes keeps flushes large enough to write files of a useful size.
const minFlushBytes = 4 << 20

// Stop asks Run to stop taking messages, flush what it holds and return. It does not wait;
// wait for Run to return.
func (w *Writer) Stop() { w.stopOnce.Do(func() { close(w.stop) }) }

// Run consumes until Stop (after a final flush, returning nil) or until ctx ends (without
// flushing: unacknowledged messages are delivered again on the next start). After Stop the
// writer drains: it keeps fetching (with short waits) until the stream has nothing more for
// it, then flushes once and returns, so that a clean shutdown leaves every stored reading in
// the lake.
func (w *Writer) Run(ctx context.Context) error {
	if w.store == nil {
		st, err := Open(ctx, w.log, w.o.Config)
		if err != nil {
			return err
		}
		w.store, w.ownStore = st, true
		defer func() { st.Close(); w.store = nil }()
	}
	var l *stream.Lease
	if w.o.Lease {
		var err error
		if l, err = w.acquireLease(ctx); err != nil || l == nil {
			return err // stopped while standing by: nothing to flush
		}
		defer l.Release()
		// Another writer may have written since this one last held the lease: what it
		// remembers of the tables (identities, watermarks, repairs) is read again.
		w.index, w.trusted, w.tables, w.ackedSeq = map[string]*kindIndex{}, map[string]*trustedTable{}, map[string]*tableState{}, 0
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var leaseLost <-chan struct{}
	if l != nil {
		leaseLost = l.Lost()
		wg.Go(func() { l.Keep(cctx) })
		wg.Go(func() { // unacknowledged messages go to the writer that took over
			select {
			case <-leaseLost:
				cancel()
			case <-cctx.Done():
			}
		})
	}
	var err error
	if w.cons, w.ackedSeq, err = w.cursor(ctx); err != nil {
		return err
	}
	w.savedSeq = w.ackedSeq
	if err := w.loadRepairs(ctx); err != nil {
		return err
	}
	w.log.Info("lake writer reads the ingest stream after its committed position", "seq", w.ackedSeq)
	w.nextCompact = time.Now().Add(w.o.Config.CompactInterval.D())
	clear(w.committed)
	f := startFeed(cctx, w.log, w.o.Conn.JS, w.ackedSeq+1, w.o.FetchBatch, w.o.FetchBytes)
	err = w.loop.Run(cctx, f)
	cancel()
	f.close()
	select {
	case <-leaseLost:
		return ErrLeaseLost
	default:
	}
	if err != nil {
		return fmt.Errorf("final lake flush: %w", err)
	}
	return nil
}

// commit writes a batch to every table that is not catching up; nil means every such table
// committed (the loop then acknowledges the messages). A table that keeps failing while others
// commit is set aside (it catches up from the stream later, see repair.go), so that one broken
// table does not stop the others; when every table fails, the error makes the loop retry the
// batch with back-off, its messages unacknowledged.
func (w *Writer) commit(ctx context.Context, msgs []*stream.Msg) error {
	for {
		res, err := w.flush(ctx, msgs, "")
		for k := range res.committed {
			w.committed[k] = true
		}
		if err == nil && len(res.failed) == 0 {
			w.ackedSeq = max(w.ackedSeq, res.maxSeq)
			w.saveCursor(ctx, w.ackedSeq)
			w.failing = 0
			clear(w.committed)
			for key, ts := range w.tables {
				if ts.repair == nil {
					w.recovered(key)
				}
			}
			w.health.setStalled(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.m.failures.Inc()
		if err == nil {
			err = w.tableFailures(res.failed, len(w.committed) > 0)
			if len(w.committed) > 0 && w.setAside(ctx, res.failed, msgs) {
				continue // the other tables commit at once
			}
		}
		w.failing++
		if w.failing >= stalledAfter {
			w.health.setStalled(err)
		}
		w.log.Error("lake flush failed; retrying", "err", err, "messages", len(msgs), "attempt", w.failing)
		return err
	}
}

// housekeep runs between fetches: tables set aside catch up, the lag gauge is updated, and
// small files are compacted while nothing is held.
func (w *Writer) housekeep(ctx context.Context, draining bool, held int) {
	if !draining {
		w.repairDue(ctx)
	}
	if time.Since(w.lagAt) >= lagEvery {
		w.updateLag(ctx, w.cons)
		w.lagAt = time.Now()
	}
	if cfg := w.o.Config; cfg.CompactInterval > 0 && time.Now().After(w.nextCompact) && held == 0 {
		w.Compact(ctx)
		w.nextCompact = time.Now().Add(cfg.CompactInterval.D())
	}
}

// cursor opens the durable consumer that keeps the lake's committed position (its ack floor,
// see feed.go), creating it on the first start, and returns the position. Nothing pulls from
// it; what an earlier holder of the lease (this process's earlier run, or another node) was
// delivered does not matter.
func (w *Writer) cursor(ctx context.Context) (jetstream.Consumer, uint64, error) {
	s, err := w.o.Conn.JS.Stream(ctx, stream.IngestStream)
	if err != nil {
		return nil, 0, fmt.Errorf("opening stream %s: %w", stream.IngestStream, err)
	}
	c, err := s.Consumer(ctx, ConsumerName)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       ConsumerName,
			Description:   "pulselake lake writer: its ack floor is the last stream sequence committed to the lake",
			FilterSubject: stream.IngestSubjects,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       2 * time.Minute,
			MaxAckPending: 200000,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			Replicas:      w.o.Conn.Replicas(),
		})
		if err != nil {
			return nil, 0, fmt.Errorf("creating consumer %s: %w", ConsumerName, err)
		}
		return c, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("opening consumer %s: %w", ConsumerName, err)
	}
	// The info of a consumer just opened comes from its leader.
	return c, c.CachedInfo().AckFloor.Stream, nil
}

// saveCursor records that every message up to seq is in every table that is not set aside:
// the cursor consumer is reset to deliver from seq+1, which makes seq its ack floor. A
// failure is logged and leaves the cursor behind: a later writer reads those messages again
// and each table's watermark skips what it holds.
func (w *Writer) saveCursor(ctx context.Context, seq uint64) {
	if seq <= w.savedSeq {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.o.Conn.JS.ResetConsumerToSequence(rctx, stream.IngestStream, ConsumerName, seq+1); err != nil {
		if ctx.Err() == nil {
			w.log.Warn("recording the lake's committed stream position (it stays behind; what is read again is skipped by the tables' watermarks)",
				"seq", seq, "err", err)
		}
		return
	}
	w.savedSeq = seq
}

// pending is the rows of one table in a flush.
type pending struct {
	zone, name string
	kind       string // of a trusted table
	t          *table.Table
	wm         uint64
	rb         *recBuilder
	rows       int
	pos        []int // declared column → field of the table's Arrow schema
	extra      []int // fields of the table not declared: NULL in every row
	failed     error // set when building the table's rows failed
}

// endRow fills the table's undeclared columns of the row just written.
func (p *pending) endRow() {
	for _, f := range p.extra {
		p.rb.null(f)
	}
	p.rows++
}

type flushState struct {
	w      *Writer
	ctx    context.Context
	only   string     // zone.name: a catch-up writes this table only
	mu     sync.Mutex // tables and order: the landing and trusted passes run concurrently
	tables map[string]*pending
	order  []*pending
	failed map[string]error // tables that could not be opened or read
	sizes  map[string]size  // expected rows and raw bytes per table, to size the builders once
}

// flushResult is what one flush attempt did, per table (zone.name).
type flushResult struct {
	committed map[string]bool
	failed    map[string]error
	maxSeq    uint64
}

// size is how many rows, and bytes of raw payloads, a flush will add to a table.
type size struct{ rows, raw int }

// expect counts the rows each table of the flush gets (an upper bound for trusted tables,
// which skip duplicates), so that their column builders grow once instead of doubling.
func (f *flushState) expect(batches []stream.Batch) {
	f.sizes = map[string]size{}
	add := func(key string, raw int) {
		s := f.sizes[key]
		f.sizes[key] = size{s.rows + 1, s.raw + raw}
	}
	for i := range batches {
		b := &batches[i]
		land := ZoneLanding + "." + TableName(b.Source)
		for j := range b.Entries {
			e := &b.Entries[j]
			add(land, len(e.Raw))
			if e.Reading == nil {
				add(ZoneQuarantine+"."+QuarantineTable, len(e.Raw))
			} else if tc := f.w.trusted[e.Reading.Kind]; tc != nil {
				add(ZoneTrusted+"."+tc.name, 0)
			}
		}
	}
}

// table returns the rows of zone.name in this flush, or nil when the table takes no rows
// now: it is catching up (or, in a catch-up, it is another table), or it could not be
// opened (recorded in f.failed).
func (f *flushState) table(zone, name string, cols []Column, partitionBy string) *pending {
	key := zone + "." + name
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.tables[key]; ok {
		if p.failed != nil {
			return nil
		}
		return p
	}
	if _, ok := f.failed[key]; ok {
		return nil
	}
	if f.only != "" && key != f.only || f.only == "" && f.w.setAsideNow(key) {
		return nil
	}
	p, err := f.open(zone, name, cols, partitionBy)
	if err != nil {
		f.w.store.forget(key) // the next attempt reloads it from the catalog
		f.failed[key] = err
		return nil
	}
	f.tables[key] = p
	f.order = append(f.order, p)
	return p
}

func (f *flushState) open(zone, name string, cols []Column, partitionBy string) (*pending, error) {
	key := zone + "." + name
	t, err := f.w.store.ensure(f.ctx, zone, name, schemaOf(cols), partitionBy)
	if err != nil {
		return nil, err
	}
	if t, err = f.w.store.evolve(f.ctx, zone, name, t, cols); err != nil {
		return nil, err
	}
	as, err := arrowSchema(t.Schema())
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", key, err)
	}
	p := &pending{zone: zone, name: name, t: t, wm: streamSeq(t), rb: newRecBuilder(as)}
	used := make([]bool, len(as.Fields()))
	for _, c := range cols {
		i := as.FieldIndices(c.Name)[0] // evolve added every missing column
		p.pos = append(p.pos, i)
		used[i] = true
	}
	if n := f.sizes[key]; n.rows > 0 {
		p.rb.reserve(n.rows)
		if i := as.FieldIndices("raw"); len(i) == 1 {
			p.rb.reserveData(i[0], n.raw)
		}
	}
	for i, u := range used {
		if !u {
			p.extra = append(p.extra, i)
		}
	}
	return p, nil
}

// fail marks p as failed in this flush (its rows are not committed).
func (f *flushState) fail(p *pending, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.failed == nil {
		p.failed = err
		f.failed[p.zone+"."+p.name] = err
		f.w.store.forget(p.zone + "." + p.name)
	}
}

// flush writes msgs to their tables and commits each table on its own. Only when every
// table that takes rows committed may the messages be acknowledged; otherwise the result names
// the tables that failed (the others committed, and skip these messages by their watermark
// when they come again). With only set (a catch-up), just that table is written.
func (w *Writer) flush(ctx context.Context, msgs []*stream.Msg, only string) (res flushResult, err error) {
	start := time.Now()
	f := &flushState{w: w, ctx: ctx, only: only, tables: map[string]*pending{}, failed: map[string]error{}}
	res = flushResult{committed: map[string]bool{}, failed: f.failed}
	defer func() { w.endFlush(f, err) }()
	batches, seqs := w.envelopes(msgs)
	f.expect(batches)
	for _, seq := range seqs {
		res.maxSeq = max(res.maxSeq, seq)
	}
	dups, err := w.buildRows(f, batches, seqs)
	if err != nil {
		return res, err
	}
	// The rows are built: the decoded readings are not needed during the commits.
	batches = nil
	for _, m := range msgs {
		m.Release()
	}
	built := time.Since(start)
	w.commitTables(ctx, f, &res)
	if len(f.failed) > 0 {
		return res, nil
	}
	w.log.Debug("lake flush committed", "messages", len(msgs), "tables", len(f.order), "only", only, "duplicates", dups, "built", built, "took", time.Since(start))
	w.m.duplicates.Add(float64(dups))
	if only == "" {
		w.m.commits.Inc()
		w.m.commitDur.Observe(time.Since(start).Seconds())
		w.m.lastCommit.SetToCurrentTime()
	}
	w.trimIndex()
	return res, nil
}

// endFlush releases the row builders of a flush and drops the identity indexes it may have
// left wrong: a failed trusted table's, or all of them when the flush failed (err).
func (w *Writer) endFlush(f *flushState, err error) {
	for _, p := range f.order {
		p.rb.release()
	}
	// A failed trusted table's identity index may hold identities of rows not committed.
	for _, p := range f.order {
		if p.failed != nil && p.kind != "" {
			delete(w.index, p.kind)
		}
	}
	if err != nil {
		w.index = map[string]*kindIndex{}
	}
	w.reportIndex()
}

// buildRows adds the rows of batches (stream sequences seqs) to the tables of f and returns
// how many readings were duplicates.
func (w *Writer) buildRows(f *flushState, batches []stream.Batch, seqs []uint64) (dups int, err error) {
	// Two passes over the decoded batches build their rows at the same time: landing and
	// quarantine (every record as received), and trusted (valid readings, de-duplicated).
	var passes errgroup.Group
	passes.Go(func() error {
		for i := range batches {
			w.addReceived(f, &batches[i], seqs[i])
		}
		return nil
	})
	passes.Go(func() error {
		for i := range batches {
			n, err := w.addTrusted(f, &batches[i], seqs[i])
			if err != nil {
				return err
			}
			dups += n
		}
		return nil
	})
	if err := passes.Wait(); err != nil {
		return 0, err
	}
	return dups, nil
}

// commitTables commits every table of f that took rows, recording in res the tables that
// committed and in f those that failed.
func (w *Writer) commitTables(ctx context.Context, f *flushState, res *flushResult) {
	// Tables commit in parallel (each writes its own Parquet files; the catalog serialises
	// the metadata swaps). A table that fails leaves the messages unacknowledged; the
	// tables that committed skip them on redelivery by their watermark.
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	var mu sync.Mutex
	for _, p := range f.order {
		if p.rows == 0 || p.failed != nil {
			continue
		}
		g.Go(func() error {
			key := p.zone + "." + p.name
			rec := p.rb.record()
			defer rec.Release()
			_, err := w.store.commitAppend(ctx, p.zone, p.name, p.t, []arrow.RecordBatch{rec}, res.maxSeq)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				f.fail(p, err)
				return nil
			}
			res.committed[key] = true
			w.tableOK(key)
			w.m.rows.WithLabelValues(p.zone).Add(float64(p.rows))
			return nil
		})
	}
	_ = g.Wait()
}

// envelopes are the decoded batches of msgs and their stream sequences. A message that is not
// an envelope becomes a one-entry batch for the quarantine zone.
func (w *Writer) envelopes(msgs []*stream.Msg) ([]stream.Batch, []uint64) {
	batches := make([]stream.Batch, len(msgs))
	seqs := make([]uint64, len(msgs))
	for i, m := range msgs {
		seqs[i] = m.Seq
		if m.Err == nil {
			batches[i] = m.Batch
			continue
		}
		w.log.Error("quarantining a stream message that is not a batch envelope", "seq", m.Seq, "err", m.Err)
		raw := m.Data
		if env, err := stream.Payload(raw); err == nil {
			raw = env // a compressed message whose envelope is bad is kept decompressed
		}
		batches[i] = stream.Batch{Source: "unknown", Received: m.Stored, Entries: []stream.Entry{{
			Errors: reading.Errors{{Code: "invalid-envelope", Message: m.Err.Error()}}, Raw: raw}}}
	}
	return batches, seqs
}

// addReceived writes a batch's records to landing.<source> and its rejected ones to
// quarantine.readings.
func (w *Writer) addReceived(f *flushState, b *stream.Batch, seq uint64) {
	land := f.table(ZoneLanding, TableName(b.Source), LandingColumns, ColReceived)
	landing := land != nil && seq > land.wm
	quarOpen := false
	var quar *pending
	for i := range b.Entries {
		e := &b.Entries[i]
		r := e.Reading
		if landing {
			rb, c := land.rb, land.pos
			rb.ts(c[0], b.Received)
			rb.i64(c[1], int64(seq))
			rb.i64(c[2], int64(i))
			if r != nil {
				rb.id(c[3], e.Identity)
				rb.str(c[4], r.Subject, true)
			} else {
				rb.null(c[3])
				subj := subjectOf(e.Raw)
				rb.str(c[4], subj, subj != "")
			}
			rb.boolean(c[5], r != nil)
			rb.bytes(c[6], e.Raw)
			rb.str(c[7], e.Origin, e.Origin != "")
			land.endRow()
		}
		if r != nil {
			continue
		}
		if !quarOpen {
			quar, quarOpen = f.table(ZoneQuarantine, QuarantineTable, QuarantineColumns, ColReceived), true
		}
		if quar == nil || seq <= quar.wm {
			continue
		}
		rb, c := quar.rb, quar.pos
		rb.ts(c[0], b.Received)
		rb.str(c[1], b.Source, true)
		rb.i64(c[2], int64(seq))
		subj := subjectOf(e.Raw)
		rb.str(c[3], subj, subj != "")
		var fe reading.FieldError
		if len(e.Errors) > 0 {
			fe = e.Errors[0]
		}
		rb.str(c[4], fe.Code, true)
		rb.str(c[5], fe.Path, true)
		rb.str(c[6], fe.Message, true)
		all, _ := json.Marshal(e.Errors)
		rb.str(c[7], string(all), true)
		rb.bytes(c[8], e.Raw)
		rb.str(c[9], e.Origin, e.Origin != "")
		quar.endRow()
	}
}

// addTrusted writes a batch's valid readings to trusted.<kind>, once per identity.
func (w *Writer) addTrusted(f *flushState, b *stream.Batch, seq uint64) (dups int, err error) {
	for i := range b.Entries {
		e := &b.Entries[i]
		r := e.Reading
		if r == nil {
			continue
		}
		kind, ok := w.o.Registry.Kind(r.Kind)
		if !ok {
			return dups, fmt.Errorf("batch %d holds a reading of kind %q this server does not know", seq, r.Kind)
		}
		tc := w.trusted[kind.Name]
		if tc == nil {
			tc = &trustedTable{name: TableName(kind.Name), cols: TrustedColumns(kind)}
			w.trusted[kind.Name] = tc
		}
		tr := f.table(ZoneTrusted, tc.name, tc.cols, ColTime)
		if tr == nil || seq <= tr.wm {
			continue
		}
		tr.kind = kind.Name
		fresh, err := w.remember(f.ctx, kind.Name, tr.t, r.Time, e.Identity)
		if err != nil {
			f.fail(tr, err) // e.g. a damaged data file of the day, or one expired meanwhile
			continue
		}
		if !fresh {
			dups++
			continue
		}
		appendTrusted(tr, kind, r, e.Identity, b)
		tr.endRow()
	}
	return dups, nil
}

// appendTrusted writes one reading in the column order of TrustedColumns.
func appendTrusted(p *pending, kind *reading.Kind, r *reading.Reading, id reading.ID, b *stream.Batch) {
	rb, c := p.rb, p.pos
	rb.str(c[0], r.Subject, true)
	rb.str(c[1], r.Device, true)
	rb.ts(c[2], r.Time)
	col := 3
	for _, fd := range kind.Fields {
		switch fd.Type {
		case reading.Number:
			v, ok := r.Values[fd.Name]
			rb.f64(c[col], v, ok)
		case reading.Text:
			v, ok := r.Text[fd.Name]
			rb.str(c[col], v, ok)
		case reading.Samples:
			rb.list(c[col], r.Samples, r.Samples != nil)
		}
		col++
	}
	rb.id(c[col], id)
	rb.ts(c[col+1], b.Received)
	rb.str(c[col+2], b.Source, true)
}

// subjectOf extracts the "subject" of a rejected payload, best effort.
func subjectOf(raw []byte) string {
	var v struct {
		Subject any `json:"subject"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	s, _ := v.Subject.(string)
	if len(s) > reading.MaxIDLen {
		return ""
	}
	return s
}
