package app

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/pulselake/pulselake/internal/pipeline"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/secret"
)

// startPipelines runs the configured pipeline folders on their cron schedules (SPEC §6).
// Every run opens its own SQL session over the lake, so tables crawled since serve started
// are visible, and appends one row per model to ops.pipeline_runs. One runner serves every
// folder, so runs never overlap.
func startPipelines(n *node) error {
	if len(n.cfg.Pipelines) == 0 {
		return nil
	}
	log := n.log.With("component", "pipeline")
	lc := n.cfg.Lake.WithDefaults(n.dataDir)
	qo := query.Options{Lake: lc, DataDir: n.dataDir, Store: n.lake.store, Config: n.cfg.Query}
	runner, err := pipeline.NewRunner(log, n.reg, pipeline.Options{
		Open: func(ctx context.Context) (pipeline.Session, error) {
			return query.OpenSession(ctx, log, qo)
		},
		Secrets: &serveSecrets{n: n},
	})
	if err != nil {
		return err
	}
	for _, f := range n.cfg.Pipelines {
		s, err := pipeline.NewScheduler(log, runner, pipeline.SchedulerOptions{Dir: f.Dir, Schedule: f.Schedule})
		if err != nil {
			return fmt.Errorf("pipeline folder %s: %w", f.Dir, err)
		}
		n.runProc("pipeline "+f.Dir, func(ctx context.Context) error {
			s.Run(ctx)
			return nil
		})
	}
	log.Info("pipelines scheduled", "folders", len(n.cfg.Pipelines))
	return nil
}

// serveSecrets opens the secret store (NATS KV bucket, master key from PULSELAKE_MASTER_KEY
// or <data>/master.key) on first use: only models that call pseudonymize() need it.
type serveSecrets struct {
	n     *node
	mu    sync.Mutex
	store *secret.Store
}

func (s *serveSecrets) Create(ctx context.Context, name string, value []byte) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store == nil {
		key, created, err := secret.LoadMasterKey(s.n.dataDir, os.Getenv)
		if err != nil {
			return nil, false, err
		}
		if created {
			s.n.log.Warn("created a new master key for the secret store; back it up", "dir", s.n.dataDir, "file", secret.KeyFile)
		}
		kv, err := s.n.conn.KV(ctx, secret.Bucket, "pulselake secrets (AES-256-GCM)")
		if err != nil {
			return nil, false, err
		}
		if s.store, err = secret.Open(ctx, s.n.log.With("component", "secret"), s.n.reg, kv, secret.Options{MasterKey: key}); err != nil {
			return nil, false, err
		}
	}
	return s.store.Create(ctx, name, value)
}
