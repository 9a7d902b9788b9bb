package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/ingest"
)

func newIngestCmd(g *globals) *cobra.Command {
	var subject string
	cmd := &cobra.Command{
		Use:   "ingest FILE|DIR...",
		Short: "Import readings from files: NDJSON, JSON arrays, CSV (generic, Fitbit heart rate, home blood-pressure logs), WFDB records (.hea)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			if err := validate(cfg); err != nil {
				return err
			}
			kinds, err := cfg.Registry()
			if err != nil {
				return err
			}
			log := newLogger(cfg, g.stderr)
			conn, closeConn, err := app.Dial(cmd.Context(), log, g.dataDir, cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			if err := conn.Setup(cmd.Context()); err != nil {
				return err
			}
			in := ingest.New(log, prometheus.NewRegistry(), kinds, conn.Publish, ingest.Options{
				MaxBatch: cfg.Ingest.MaxBatch, DedupWindow: cfg.Ingest.DedupWindow.D(), DedupMaxEntries: cfg.Ingest.DedupMaxEntries,
			})
			if err := in.Recover(cmd.Context(), conn); err != nil {
				return err
			}
			results, err := in.Import(cmd.Context(), args, ingest.ImportOptions{Subject: subject})
			for _, r := range results {
				fmt.Fprintf(g.stdout, "%s: %d accepted, %d duplicates, %d rejected\n", r.Path, r.Accepted, r.Duplicates, len(r.Rejected))
				for i, rej := range r.Rejected {
					if i == 5 {
						fmt.Fprintf(g.stdout, "  ... %d more (all kept in quarantine)\n", len(r.Rejected)-5)
						break
					}
					fmt.Fprintf(g.stdout, "  record %d: %s %s: %s\n", rej.Index, rej.Code, rej.Path, rej.Message)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "subject for files that name none (home blood-pressure logs)")
	return cmd
}
