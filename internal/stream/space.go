package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMinFreeBytes is the free space the embedded stream's disk keeps by default.
const DefaultMinFreeBytes = 256 << 20

// SpaceGuard watches the disk of the embedded server's store:
//
//   - When a write fails for lack of space, the NATS server (v2.15) marks that stream's store
//     as failed for good (every later write fails, publishes get no answer) or, on some
//     paths, turns JetStream off; either way only a restart of JetStream clears it. The
//     guard notices the failure in the server's log and restarts JetStream in process as
//     soon as the disk has MinFree bytes free; the streams and consumers are loaded again
//     from their files.
//   - When free space is below MinFree, it removes from the ingest stream the batches that
//     every durable consumer (the lake writer, a lake table catching up, monitoring) has
//     acknowledged — their readings are in the lake — oldest first. Unprocessed batches are
//     never removed: if they alone fill the disk, new batches are refused (503).
//   - Ready reports an error while JetStream is off or the disk is below MinFree.
type SpaceGuard struct {
	log     *slog.Logger
	srv     *Server
	conn    *Conn
	minFree uint64
	every   time.Duration

	mu       sync.Mutex
	state    error
	free     prometheus.Gauge
	restarts prometheus.Counter
	trimmed  prometheus.Counter
}

// NewSpaceGuard returns a guard of srv's disk; conn is a connection to srv. minFree 0 means
// DefaultMinFreeBytes.
func NewSpaceGuard(log *slog.Logger, reg prometheus.Registerer, srv *Server, conn *Conn, minFree int64) *SpaceGuard {
	if minFree <= 0 {
		minFree = DefaultMinFreeBytes
	}
	g := &SpaceGuard{log: log, srv: srv, conn: conn, minFree: uint64(minFree), every: time.Second,
		free: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pulselake_stream_disk_free_bytes",
			Help: "Free bytes on the file system of the embedded stream's store."}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_stream_jetstream_restarts_total",
			Help: "Times JetStream was turned on again after the NATS server turned it off (a write failed, e.g. disk full)."}),
		trimmed: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_stream_trimmed_messages_total",
			Help: "Ingest stream batches removed to free disk space after every consumer had processed them."}),
	}
	if reg != nil {
		reg.MustRegister(g.free, g.restarts, g.trimmed)
	}
	g.check(context.Background())
	return g
}

// Ready reports why the stream cannot store now, or nil.
func (g *SpaceGuard) Ready(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state
}

// Run checks the disk every second until ctx ends.
func (g *SpaceGuard) Run(ctx context.Context) error {
	t := time.NewTicker(g.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			g.check(ctx)
		}
	}
}

func (g *SpaceGuard) set(err error) {
	g.mu.Lock()
	g.state = err
	g.mu.Unlock()
}

func (g *SpaceGuard) check(ctx context.Context) {
	free, err := freeBytes(g.srv.dir)
	if err != nil {
		g.set(fmt.Errorf("reading the free space of %s: %w", g.srv.dir, err))
		return
	}
	g.free.Set(float64(free))
	ns := g.srv.ns
	failed, at := g.srv.werr.get()
	if !ns.JetStreamEnabled() || failed != "" {
		if ns.JetStreamEnabled() && ns.JetStreamConfig() == nil || !ns.JetStreamEnabled() && ns.JetStreamConfig() != nil {
			g.set(errors.New("JetStream is shutting down after a failed write"))
			return
		}
		what := "JetStream is off after a failed write"
		if failed != "" {
			what = fmt.Sprintf("the stream store failed a write at %s (%s)", at.Format(time.RFC3339), failed)
		}
		if free < g.minFree {
			g.set(fmt.Errorf("%s and %s has %s free (below nats.min_free_bytes, %s): free disk space; the stream is restarted by itself then", what, g.srv.dir, human(free), human(g.minFree)))
			return
		}
		if err := g.srv.restartJetStream(); err != nil {
			g.set(fmt.Errorf("%s; restarting it failed: %w", what, err))
			g.log.Error("restarting JetStream after a failed write", "err", err)
			return
		}
		g.restarts.Inc()
		g.log.Warn("JetStream restarted after a failed write; the stream stores again", "free_bytes", free, "failure", failed)
	}
	if free < g.minFree {
		n, err := g.trim(ctx)
		if err != nil {
			g.log.Warn("removing processed batches from the ingest stream", "err", err)
		}
		if n > 0 {
			g.trimmed.Add(float64(n))
			g.log.Warn("disk space short: removed batches every consumer has processed from the ingest stream", "messages", n, "free_bytes", free)
			if f, err := freeBytes(g.srv.dir); err == nil {
				free = f
				g.free.Set(float64(free))
			}
		}
	}
	if free < g.minFree {
		g.set(fmt.Errorf("the stream's disk (%s) has %s free, below nats.min_free_bytes (%s): free disk space or lower the stream's retention", g.srv.dir, human(free), human(g.minFree)))
		return
	}
	g.set(nil)
}

// trim purges the ingest stream below the lowest ack floor of its durable consumers.
func (g *SpaceGuard) trim(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := g.conn.JS.Stream(ctx, IngestStream)
	if err != nil {
		return 0, err
	}
	floor := uint64(math.MaxUint64)
	holder := ""
	infos := s.ListConsumers(ctx)
	for ci := range infos.Info() {
		if ci.Config.Durable == "" {
			continue
		}
		if ci.AckFloor.Stream < floor {
			floor, holder = ci.AckFloor.Stream, ci.Name
		}
	}
	if err := infos.Err(); err != nil {
		return 0, err
	}
	if floor == math.MaxUint64 || floor == 0 {
		return 0, nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.FirstSeq > floor {
		if holder != "" {
			g.log.Debug("nothing processed to remove from the ingest stream", "oldest_consumer", holder, "ack_floor", floor)
		}
		return 0, nil
	}
	before := info.State.Msgs
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return 0, fmt.Errorf("purging %s below %d: %w", IngestStream, floor+1, err)
	}
	after, err := s.Info(ctx)
	if err != nil {
		return 0, nil
	}
	return before - min(before, after.State.Msgs), nil
}

// restartJetStream stops JetStream (when on) and turns it on again with the configuration
// it started with: the streams and consumers are loaded again from their files, without
// the write failure the old ones kept.
func (s *Server) restartJetStream() error {
	if s.jsCfg == nil {
		return errors.New("no JetStream configuration recorded")
	}
	if s.ns.JetStreamEnabled() {
		if err := s.ns.ShutdownJetStream(); err != nil {
			return fmt.Errorf("stopping JetStream: %w", err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); s.ns.JetStreamConfig() != nil; {
		if time.Now().After(deadline) {
			return errors.New("JetStream did not stop within 10s")
		}
		time.Sleep(20 * time.Millisecond) // waiting for the server's own shutdown, bounded
	}
	cfg := *s.jsCfg
	cfg.StoreDir = s.dir // EnableJetStream adds the "jetstream" folder again
	s.werr.clear()
	return s.ns.EnableJetStream(&cfg)
}

func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

func human(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
