package pipeline

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"time"
)

// SchedulerOptions configures a Scheduler.
type SchedulerOptions struct {
	// Dir is the pipeline folder; it is read again before every run, so edits apply without
	// a restart.
	Dir string
	// Schedule is the cron expression for models without a `-- schedule:` line; "" leaves
	// them to on-demand runs.
	Schedule string
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// Scheduler runs a pipeline folder's models on their cron schedules. At each firing it runs
// the models that are due, in dependency order, in one run.
type Scheduler struct {
	log    *slog.Logger
	runner *Runner
	o      SchedulerOptions
}

// NewScheduler returns a scheduler over runner. It checks the folder and every schedule now,
// so a mistake is reported at start-up rather than at the first firing.
func NewScheduler(log *slog.Logger, runner *Runner, o SchedulerOptions) (*Scheduler, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Schedule != "" {
		if _, err := ParseSchedule(o.Schedule); err != nil {
			return nil, err
		}
	}
	if _, err := LoadDir(o.Dir); err != nil {
		return nil, err
	}
	return &Scheduler{log: log, runner: runner, o: o}, nil
}

// groups returns, for each schedule expression, the models it covers.
func (s *Scheduler) groups(p *Project) map[string][]string {
	g := map[string][]string{}
	for _, n := range p.Order {
		expr := p.Models[n].Schedule
		if expr == "" {
			expr = s.o.Schedule
		}
		if expr != "" {
			g[expr] = append(g[expr], n)
		}
	}
	return g
}

// Run runs scheduled models until ctx ends, then returns after the run in progress (which
// ctx cancels) has stopped. A run that fails is logged; the next firing runs again.
func (s *Scheduler) Run(ctx context.Context) {
	p, err := LoadDir(s.o.Dir)
	if err != nil {
		s.log.Error("pipeline folder unreadable; scheduler idle until restart", "dir", s.o.Dir, "err", err)
		<-ctx.Done()
		return
	}
	after := s.o.Now()
	for {
		groups := s.groups(p)
		if len(groups) == 0 {
			s.log.Info("no scheduled pipeline models", "dir", s.o.Dir)
			<-ctx.Done()
			return
		}
		var next time.Time
		var dueExprs []string
		for expr := range groups {
			sch, err := ParseSchedule(expr)
			if err != nil {
				s.log.Error("invalid schedule", "schedule", expr, "err", err)
				continue
			}
			t := sch.Next(after)
			switch {
			case next.IsZero() || t.Before(next):
				next, dueExprs = t, []string{expr}
			case t.Equal(next):
				dueExprs = append(dueExprs, expr)
			}
		}
		if next.IsZero() {
			<-ctx.Done()
			return
		}
		timer := time.NewTimer(next.Sub(s.o.Now()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		after = next
		var names []string
		for _, e := range dueExprs {
			names = append(names, groups[e]...)
		}
		sort.Strings(names)
		if np, err := LoadDir(s.o.Dir); err != nil {
			s.log.Error("pipeline folder unreadable; running the last good version", "dir", s.o.Dir, "err", err)
		} else {
			p = np
		}
		names = present(p, names)
		if len(names) == 0 {
			continue
		}
		s.log.Info("scheduled pipeline run", "dir", s.o.Dir, "models", strings.Join(names, ","))
		rep, err := s.runner.Run(ctx, p, names)
		switch {
		case err != nil:
			s.log.Error("scheduled pipeline run failed", "dir", s.o.Dir, "err", err)
		case rep.Err() != nil:
			s.log.Error("scheduled pipeline run had failures", "run", rep.RunID, "err", rep.Err())
		}
		if ctx.Err() != nil {
			return
		}
		if now := s.o.Now(); now.After(after) {
			after = now // firings missed during a long run are skipped, as cron does
		}
	}
}

func present(p *Project, names []string) []string {
	var out []string
	for _, n := range names {
		if _, ok := p.Models[n]; ok {
			out = append(out, n)
		}
	}
	return out
}
