package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/stream"
)

// On a cluster (serve --cluster, or several serve processes on one external NATS cluster),
// every node takes readings, queries and API calls, but the processors whose effects must
// happen once — the rule engine and the alerts it notifies, the streaming anomaly detectors,
// streaming ECG classification, scheduled pipelines, wearable pulls — run only on the node
// holding the processors lease, and the lake writer (with compaction) only on the node
// holding the lake-writer lease. A node that dies keeps its leases at most cluster.lease_ttl;
// another node then takes them over and resumes from the durable consumers and the state the
// holder kept in KV (alert state, notification log, detector checkpoints). docs/scale-out.md.

// processorsLease is the key of the processors lease in stream.LeaseBucket.
const processorsLease = "processors"

// shared reports whether other serve processes may consume the same stream, so that the
// once-per-cluster work takes leases.
func shared(cfg *config.Config) bool { return cfg.Cluster.Enabled || cfg.NATS.URL != "" }

// leaseTTL is the leases' time to live: cluster.lease_ttl on a cluster, else the default.
func leaseTTL(cfg *config.Config) time.Duration {
	if cfg.Cluster.Enabled {
		return cfg.Cluster.LeaseTTL.D()
	}
	return stream.DefaultLeaseTTL
}

// clusterServer is the embedded server's cluster options for serve --cluster, nil otherwise.
func clusterServer(cfg *config.Config) (*stream.ClusterOptions, error) {
	cl := cfg.Cluster
	if !cl.Enabled {
		return nil, nil
	}
	tlsConf, err := cfg.ClusterTLS()
	if err != nil {
		return nil, err
	}
	secret, err := cfg.ClusterSecret()
	if err != nil {
		return nil, err
	}
	return &stream.ClusterOptions{Name: cl.Name, ServerName: cl.Node(), Listen: cl.Listen, Advertise: cl.Advertise,
		Routes: cl.Routes, Replicas: cl.Replicas, SyncAlways: cl.SyncAlways, SyncInterval: cl.SyncInterval.D(),
		LeaderTimeout: cl.StartTimeout.D(), TLS: tlsConf, Secret: secret}, nil
}

// replicas of the streams and buckets: cluster.replicas on a cluster, else nats.replicas.
func replicas(cfg *config.Config) int {
	if cfg.Cluster.Enabled {
		return cfg.Cluster.Replicas
	}
	return cfg.NATS.Replicas
}

// leaderProc is a processor that runs once per cluster.
type leaderProc struct {
	name string
	run  func(context.Context) error
	// standby, when set, runs while another node holds the lease (e.g. keeping what
	// GET /v1/alerts lists in step with the alert state the holder saves).
	standby func(context.Context) error
}

// leadership runs the once-per-cluster processors while this node holds the processors
// lease, and stands by otherwise; a lost lease stops them, and the node stands by again.
type leadership struct {
	log   *slog.Logger
	conn  *stream.Conn
	ttl   time.Duration
	procs []leaderProc
	held  prometheus.Gauge
}

func newLeadership(log *slog.Logger, reg prometheus.Registerer, conn *stream.Conn, ttl time.Duration) *leadership {
	l := &leadership{log: log, conn: conn, ttl: ttl, held: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pulselake_cluster_processors_leader",
		Help: "1 while this node holds the processors lease (rules, notifications, detectors, ECG, pipelines, wearable pulls run here), else 0."})}
	reg.MustRegister(l.held)
	return l
}

func (l *leadership) add(p leaderProc) { l.procs = append(l.procs, p) }

// Run alternates standing by and leading until ctx ends.
func (l *leadership) Run(ctx context.Context) error {
	if len(l.procs) == 0 {
		return nil
	}
	for ctx.Err() == nil {
		lease, err := l.standBy(ctx)
		if err != nil || lease == nil {
			return nil // ctx ended
		}
		l.lead(ctx, lease)
	}
	return nil
}

// standBy runs the standby functions until this node holds the lease.
func (l *leadership) standBy(ctx context.Context) (*stream.Lease, error) {
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, p := range l.procs {
		if p.standby != nil {
			wg.Go(func() {
				if err := p.standby(sctx); err != nil && sctx.Err() == nil {
					l.log.Warn("standby of a processor stopped", "component", p.name, "err", err)
				}
			})
		}
	}
	lease, err := l.conn.AcquireLease(ctx, l.log, stream.LeaseOptions{Key: processorsLease, TTL: l.ttl})
	stop()
	wg.Wait()
	return lease, err
}

// lead runs the processors until ctx ends (then it releases the lease) or the lease is lost.
func (l *leadership) lead(ctx context.Context, lease *stream.Lease) {
	l.log.Info("this node runs the cluster's processors (rules, notifications, detectors, ECG, pipelines, wearable pulls)", "lease", lease.ID())
	l.held.Set(1)
	defer l.held.Set(0)
	tctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { lease.Keep(tctx) })
	for _, p := range l.procs {
		wg.Go(func() { l.keepRunning(tctx, p) })
	}
	select {
	case <-ctx.Done():
	case <-lease.Lost():
		l.log.Error("lost the processors lease; stopping them here, another node takes over")
	}
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		lease.Release() // a clean stop hands over at once
	}
}

// keepRunning runs p until ctx ends, starting it again (after a pause growing from 1 s to
// 30 s) when it fails: a processor's first requests can time out while the cluster is still
// electing the leaders of its streams, and once per cluster must not mean never.
func (l *leadership) keepRunning(ctx context.Context, p leaderProc) {
	pause := time.Second
	for {
		err := p.run(ctx)
		if ctx.Err() != nil {
			return
		}
		l.log.Error("processor stopped; starting it again", "component", p.name, "err", err, "in", pause)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// runLakeWriter runs the lake writer until it is stopped. With a lease (a cluster), a writer
// that lost its lease, or failed and so gave it up, stands by for it again: the lease passes
// to another node meanwhile, and this node must not stop writing for good.
func runLakeWriter(ctx context.Context, log *slog.Logger, w *lake.Writer, leased bool, stopped <-chan struct{}) error {
	pause := time.Second
	for {
		err := w.Run(ctx)
		if err == nil || !leased || ctx.Err() != nil {
			return err
		}
		select {
		case <-stopped:
			return err
		default:
		}
		if errors.Is(err, lake.ErrLeaseLost) {
			log.Error("the lake writer lost its lease; standing by to take it again", "err", err)
			continue
		}
		log.Error("the lake writer failed; it gave up its lease and stands by again", "err", err, "in", pause)
		select {
		case <-ctx.Done():
			return err
		case <-stopped:
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// runLeader runs p once per cluster: on the processors lease holder when the stream is
// shared, else here like any processor.
func (s *server) runLeader(p leaderProc) {
	if s.leaders == nil {
		s.runProc(p.name, p.run)
		return
	}
	s.leaders.add(p)
}

// alertStateRefresh is how often a standby node re-reads the alert state for GET /v1/alerts.
const alertStateRefresh = 5 * time.Second

// followAlertState keeps a standby node's rule engine listing the alerts the processors'
// node saves, so that GET /v1/alerts answers the same on every node (at most
// alertStateRefresh behind).
func followAlertState(ctx context.Context, log *slog.Logger, eng interface{ Restore(context.Context) error }) error {
	t := time.NewTicker(alertStateRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := eng.Restore(ctx); err != nil && ctx.Err() == nil {
				log.Warn("reading the alert state the processors' node saved", "err", err)
			}
		}
	}
}

// recoverDedup rebuilds the ingester's de-duplication window from the stream. A cluster node
// that just (re)joined may find no responder for the stream for a moment, while it catches up
// with the assignments of the others; it tries again until cluster.start_timeout.
func (s *server) recoverDedup(ctx context.Context) error {
	deadline := time.Now().Add(s.cfg.Cluster.StartTimeout.D())
	for {
		err := s.in.Recover(ctx, s.conn)
		if err == nil || !s.cfg.Cluster.Enabled || time.Now().After(deadline) ||
			!(errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)) {
			return err
		}
		s.log.Info("waiting for the stream to answer on this node", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
