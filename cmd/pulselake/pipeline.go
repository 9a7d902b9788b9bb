package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/pipeline"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/secret"
)

// defaultPipelineDir is the folder `pipeline run` and `list` read without --dir.
const defaultPipelineDir = "pipeline"

func newPipelineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pipeline", Short: "Run SQL models that build trusted and curated lake tables"}
	var dir string
	run := &cobra.Command{
		Use:   "run [--dir DIR] [MODEL...]",
		Short: "Run the folder's models (or the named ones) in dependency order; prints rows and time per model",
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := loadPipeline(dir)
			if err != nil {
				return err
			}
			if _, err := p.Select(args, false); err != nil {
				return usageError{err}
			}
			cfg, log, err := setup(g)
			if err != nil {
				return err
			}
			open, closeLake, err := openLakeSessions(cmd.Context(), log, g, cfg)
			if err != nil {
				return err
			}
			defer closeLake()
			secrets := &lazySecrets{log: log, g: g, cfg: cfg}
			defer secrets.close()
			r, err := pipeline.NewRunner(log, prometheus.NewRegistry(), pipeline.Options{Open: open, Secrets: secrets})
			if err != nil {
				return err
			}
			rep, err := r.Run(cmd.Context(), p, args)
			if rep != nil {
				if perr := rep.Print(g.stdout); perr != nil {
					return perr
				}
			}
			if err != nil {
				return err
			}
			return rep.Err()
		},
	}
	list := &cobra.Command{
		Use:   "list [--dir DIR]",
		Short: "List the folder's models in run order with what they read",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadPipeline(dir)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "#\tMODEL\tMODE\tREADS\tCHECKS\tSCHEDULE\tDESCRIPTION")
			for i, name := range p.Order {
				m := p.Models[name]
				mode := "replace"
				if m.Incremental != nil {
					mode = "merge(" + strings.Join(m.Incremental, ",") + ")"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", i+1, name, mode, dash(strings.Join(m.Reads, ",")), len(m.Expects), dash(m.Schedule), dash(m.Description))
			}
			return tw.Flush()
		},
	}
	for _, c := range []*cobra.Command{run, list} {
		c.Flags().StringVar(&dir, "dir", defaultPipelineDir, "folder of <zone>.<table>.sql models")
	}
	cmd.AddCommand(run, list)
	return cmd
}

// loadPipeline loads a model folder; problems in the files are usage errors (exit 2).
func loadPipeline(dir string) (*pipeline.Project, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, usagef("pipeline folder %s: %v (give one with --dir)", dir, err)
	}
	p, err := pipeline.LoadDir(dir)
	if err != nil {
		var le pipeline.LoadErrors
		if errors.As(err, &le) || errors.Is(err, pipeline.ErrCycle) {
			return nil, usageError{err}
		}
		return nil, err
	}
	return p, nil
}

// lazySecrets opens the secret store (and the stream it lives in) only when a model calls
// pseudonymize(), so other pipelines run without touching the stream.
type lazySecrets struct {
	log   *slog.Logger
	g     *globals
	cfg   *config.Config
	once  sync.Once
	store *secret.Store
	done  func()
	err   error
}

func (l *lazySecrets) Create(ctx context.Context, name string, value []byte) ([]byte, bool, error) {
	l.once.Do(func() {
		key, created, err := secret.LoadMasterKey(l.g.dataDir, os.Getenv)
		if err != nil {
			l.err = err
			return
		}
		if created {
			l.log.Warn("created a new master key for the secret store; back it up", "path", l.g.dataDir+"/"+secret.KeyFile)
		}
		conn, closeConn, err := app.Dial(ctx, l.log, l.g.dataDir, l.cfg)
		if err != nil {
			l.err = err
			return
		}
		kv, err := conn.KV(ctx, secret.Bucket, "pulselake secrets (AES-256-GCM)")
		if err == nil {
			l.store, err = secret.Open(ctx, l.log, nil, kv, secret.Options{MasterKey: key})
		}
		if err != nil {
			closeConn()
			l.err = err
			return
		}
		l.done = closeConn
	})
	if l.err != nil {
		return nil, false, l.err
	}
	return l.store.Create(ctx, name, value)
}

func (l *lazySecrets) close() {
	if l.done != nil {
		l.done()
	}
}

// openLakeSessions returns the session opener over the data directory's lake. Each session
// has its own SQL engine; the catalog is shared and closed by the returned function.
func openLakeSessions(ctx context.Context, log *slog.Logger, g *globals, cfg *config.Config) (pipeline.OpenSession, func(), error) {
	lc := cfg.Lake.WithDefaults(g.dataDir)
	st, err := lake.Open(ctx, log, lc)
	if err != nil {
		return nil, nil, err
	}
	o := query.Options{Lake: lc, DataDir: g.dataDir, Store: st, Config: cfg.Query}
	open := func(ctx context.Context) (pipeline.Session, error) {
		return query.OpenSession(ctx, log, o)
	}
	return open, func() { st.Close() }, nil
}
