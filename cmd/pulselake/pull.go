package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/connector"
	"github.com/pulselake/pulselake/internal/ingest"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

func newPullCmd(g *globals) *cobra.Command {
	var subject, since string
	cmd := &cobra.Command{
		Use:   "pull google-health|withings [--subject S] [--since D]",
		Short: "Pull a wearable cloud once: every connected subject (or one), from each cursor or from --since ago",
		Long: `Pulls like serve's schedule does, once: from each data type's cursor minus the
lookback (or the initial window on the first pull), or from --since ago (e.g. 90d, 12h).
Readings go to the stream like any other and are de-duplicated, so pulling again stores
nothing twice. Shows a progress bar on a terminal, one line per data type otherwise.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			provider := args[0]
			if _, ok := (config.Connectors{}).ByName(provider); !ok {
				return usagef("unknown provider %q: want google-health or withings", provider)
			}
			var back time.Duration
			if since != "" {
				var d yamlconf.Duration
				if err := d.UnmarshalText([]byte(since)); err != nil || d.D() <= 0 {
					return usagef("--since %q: want a positive duration like 12h or 90d", since)
				}
				back = d.D()
			}
			cfg, log, err := setup(g)
			if err != nil {
				return err
			}
			if pc, _ := cfg.Connectors.ByName(provider); !pc.Enabled() {
				return usagef("%s is not configured: set its client_id and client_secret_file under connectors: in the config file (docs/sources.md)", provider)
			}
			kinds, err := cfg.Registry()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, closeConn, err := app.Dial(ctx, log, g.dataDir, cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			if err := conn.Setup(ctx); err != nil {
				return err
			}
			in := ingest.New(log, prometheus.NewRegistry(), kinds, conn.Publish, ingest.Options{
				MaxBatch: cfg.Ingest.MaxBatch, DedupWindow: cfg.Ingest.DedupWindow.D(), DedupMaxEntries: cfg.Ingest.DedupMaxEntries,
			})
			if err := in.Recover(ctx, conn); err != nil {
				return err
			}
			mgr, err := app.OpenConnectors(ctx, log, nil, g.dataDir, cfg, conn)
			if err != nil {
				return err
			}
			st, err := app.OpenLake(ctx, log, g.dataDir, cfg)
			if err != nil {
				return err
			}
			defer st.Close()
			var (
				mu   sync.Mutex
				runs []connector.RunRecord
			)
			eng, err := app.NewConnectorEngine(log, cfg, mgr, in, func(r connector.RunRecord) {
				mu.Lock()
				runs = append(runs, r)
				mu.Unlock()
			})
			if err != nil {
				return err
			}
			prog := newPullProgress(g.stdout)
			start := time.Now()
			sum, err := eng.Sync(ctx, provider, connector.SyncOptions{Subject: subject, Since: back, Progress: prog.update})
			prog.close()
			// What was pulled is recorded like serve's runs, an interrupted pull too.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			mu.Lock()
			recErr := app.RecordConnectorRuns(rctx, st, runs)
			mu.Unlock()
			cancel()
			if err != nil {
				return errors.Join(err, recErr)
			}
			if recErr != nil {
				return recErr
			}
			fmt.Fprintf(g.stdout, "%s: %d connections, %d points in %d pages, %d errors, %s\n", provider, sum.Connections, sum.Points, sum.Pages, len(sum.Errors), time.Since(start).Round(time.Millisecond))
			for _, e := range sum.Errors {
				fmt.Fprintf(g.stdout, "  error: %v\n", e)
			}
			if len(sum.Errors) > 0 {
				return errors.New("some pulls failed (above); what was stored stays stored and the next pull resumes from the cursors")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "pull only this subject's connection")
	cmd.Flags().StringVar(&since, "since", "", "pull from this long ago (e.g. 90d) instead of from the cursors")
	return cmd
}

// pullProgress shows a pull: a bar per data type on a terminal, a line per data type otherwise.
type pullProgress struct {
	w   io.Writer
	tty bool
	bar *progressbar.ProgressBar
	key string
}

func newPullProgress(w io.Writer) *pullProgress {
	f, ok := w.(*os.File)
	return &pullProgress{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *pullProgress) update(pr connector.Progress) {
	label := fmt.Sprintf("%s %s", pr.Connection.Subject, pr.DataType)
	if !p.tty {
		if pr.Done {
			status := "ok"
			if pr.Err != nil {
				status = "error: " + pr.Err.Error()
			}
			fmt.Fprintf(p.w, "%s: %d windows, %d points, %s\n", label, pr.Windows, pr.Points, status)
		}
		return
	}
	if p.key != label {
		p.close()
		p.key = label
		p.bar = progressbar.NewOptions(max(pr.Windows, 1), progressbar.OptionSetWriter(p.w), progressbar.OptionSetDescription(label),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionSetItsString("windows"))
	}
	_ = p.bar.Set(pr.Window)
	p.bar.Describe(fmt.Sprintf("%s (%d points)", label, pr.Points))
	if pr.Done {
		p.close()
	}
}

func (p *pullProgress) close() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
		p.bar, p.key = nil, ""
	}
}
