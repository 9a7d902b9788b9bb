package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
)

func newEraseCmd(g *globals) *cobra.Command {
	var subject string
	var dryRun, purgeStream bool
	cmd := &cobra.Command{
		Use:   "erase --subject S [--dry-run] [--stream]",
		Short: "Remove a subject from every place pulselake keeps it (right to erasure) and prove it",
		Long: `Removes subject S from every place it lives, in this order (docs/privacy.md):
what a running serve holds in memory (alerts, reading windows, detector baselines,
notification groups), the alert state, notification log and silences in NATS KV (silences
that mute only S are deleted; those that also match others are kept and reported), with
--stream the ingest stream, every row of every lake table with a subject column (one
copy-on-write Iceberg commit per table, then the older snapshots are expired and the
replaced files deleted), and the files under the lake's tables that no snapshot refers to
but that hold S (left by failed flushes). For each place it prints what it held before and
after, and exits 1 if anything is left. It works while serve runs.

The ingest stream keeps raw payloads until its retention (nats.retention, default 7 days).
--stream deletes the subject's messages from it (whole batches, overwritten in the store),
but only messages every consumer has processed; erase again after the lake flush if it
reports pending ones. Revoke the subject's tokens first so that nothing new arrives.`,
		Example: `  pulselake erase --subject patient-17 --dry-run
  pulselake erase --subject patient-17 --stream`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(subject) == "" {
				return usagef("--subject is required: the subject whose data to remove")
			}
			cfg, log, err := setup(g)
			if err != nil {
				return err
			}
			rep, eraseErr := app.Erase(cmd.Context(), log, g.dataDir, cfg, subject, app.EraseOptions{DryRun: dryRun, Stream: purgeStream})
			if rep != nil {
				printErasure(g, rep.Rows, dryRun)
			}
			if eraseErr != nil {
				return eraseErr
			}
			if dryRun {
				fmt.Fprintln(g.stdout, "dry run: nothing was changed")
				return nil
			}
			var left []string
			for _, r := range rep.Rows {
				if r.After != 0 && !strings.HasPrefix(r.Place, "stream ") {
					left = append(left, fmt.Sprintf("%s (%d)", r.Place, r.After))
				}
			}
			if len(left) > 0 {
				return fmt.Errorf("data of subject %q remains in %s; run erase again", subject, strings.Join(left, ", "))
			}
			if rep.StreamPending > 0 {
				return errors.New("stream messages of the subject are not yet processed by every consumer; erase again after the lake flush interval")
			}
			if rep.StreamKept > 0 {
				fmt.Fprintf(g.stdout, "erased subject %q everywhere but the stream, which still holds %d message(s) of it until its retention ends: erase again with --stream to delete them now\n",
					subject, rep.StreamKept)
				return nil
			}
			fmt.Fprintf(g.stdout, "erased subject %q from %d places\n", subject, len(rep.Rows))
			return nil
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "the subject whose data to remove (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only count what each place holds of the subject; change nothing")
	cmd.Flags().BoolVar(&purgeStream, "stream", false, "also delete the subject's messages from the ingest stream")
	return cmd
}

func printErasure(g *globals, rows []app.EraseRow, dryRun bool) {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if dryRun {
		fmt.Fprintln(tw, "PLACE\tHOLDS\tNOTE")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", r.Place, r.Before, r.Note)
		}
	} else {
		fmt.Fprintln(tw, "PLACE\tBEFORE\tAFTER\tNOTE")
		for _, r := range rows {
			after := fmt.Sprint(r.After)
			if r.After < 0 {
				after = "?"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Place, r.Before, after, r.Note)
		}
	}
	tw.Flush()
}
