package app

import (
	"context"
	"fmt"

	"github.com/pulselake/pulselake/internal/pipeline"
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
	secrets := &lazySecrets{open: func(ctx context.Context) (*secret.Store, func(), error) {
		s, err := OpenSecrets(ctx, n.log, n.reg, n.dataDir, n.conn)
		return s, func() {}, err
	}}
	runner, err := pipeline.NewRunner(log, n.reg, pipeline.Options{Open: sessionOpener(log, n.dataDir, n.cfg, n.lake.store), Secrets: secrets})
	if err != nil {
		return err
	}
	for _, f := range n.cfg.Pipelines {
		s, err := pipeline.NewScheduler(log, runner, pipeline.SchedulerOptions{Dir: f.Dir, Schedule: f.Schedule})
		if err != nil {
			return fmt.Errorf("pipeline folder %s: %w", f.Dir, err)
		}
		n.runLeader(leaderProc{name: "pipeline " + f.Dir, run: func(ctx context.Context) error {
			s.Run(ctx)
			return nil
		}})
	}
	log.Info("pipelines scheduled", "folders", len(n.cfg.Pipelines))
	return nil
}
