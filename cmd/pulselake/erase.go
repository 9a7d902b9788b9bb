package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/lake"
)

func newEraseCmd(g *globals) *cobra.Command {
	var subject string
	var dryRun, purgeStream bool
	cmd := &cobra.Command{
		Use:   "erase --subject S [--dry-run] [--stream]",
		Short: "Remove a subject's rows from every zone of the lake (right to erasure) and prove it",
		Long: `Removes every row whose subject column equals S from every table of every zone
(landing, trusted, curated, quarantine, ops) with one copy-on-write Iceberg commit per table,
then expires the older snapshots so the replaced data files are deleted from storage. It
prints the subject's row count per table before and after, and exits 1 if any count after
is not zero. It works while serve runs (commits that conflict are redone).

The ingest stream keeps raw payloads until its retention (nats.retention, default 7 days).
--stream also deletes the subject's messages from it (whole batches, overwritten in the
store), but only messages every consumer has processed; erase again after the lake flush
if it reports pending ones. Revoke the subject's tokens first so that nothing new arrives.`,
		Example: `  pulselake erase --subject patient-17 --dry-run
  pulselake erase --subject patient-17 --stream`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(subject) == "" {
				return usagef("--subject is required: the subject whose rows to remove")
			}
			cfg, log, err := setup(g)
			if err != nil {
				return err
			}
			lc := cfg.Lake
			lc.ApplyDefaults(g.dataDir)
			st, err := lake.Open(cmd.Context(), log, lc)
			if err != nil {
				return err
			}
			defer st.Close()
			res, eraseErr := st.Erase(cmd.Context(), subject, lake.EraseOptions{DryRun: dryRun})
			printErasure(g, res, dryRun)
			if err := dropCachedCopies(g.dataDir, res); err != nil && eraseErr == nil {
				eraseErr = err
			}

			var pending int
			if purgeStream && eraseErr == nil {
				conn, closeConn, err := app.Dial(cmd.Context(), log, g.dataDir, cfg)
				if err != nil {
					return err
				}
				defer closeConn()
				sp, err := lake.PurgeStream(cmd.Context(), conn.JS, subject, dryRun)
				printStreamPurge(g, sp, dryRun)
				if err != nil {
					return err
				}
				for _, p := range sp {
					pending += p.Pending
				}
			}
			if eraseErr != nil {
				return eraseErr
			}
			if dryRun {
				fmt.Fprintln(g.stdout, "dry run: nothing was changed")
				return nil
			}
			var left []string
			var removed int64
			for _, te := range res {
				removed += te.Before - te.After
				if te.After != 0 {
					left = append(left, fmt.Sprintf("%s.%s (%d)", te.Zone, te.Name, te.After))
				}
			}
			if len(left) > 0 {
				return fmt.Errorf("rows of subject %q remain in %s; run erase again", subject, strings.Join(left, ", "))
			}
			if pending > 0 {
				return errors.New("stream messages of the subject are not yet processed by every consumer; erase again after the lake flush interval")
			}
			fmt.Fprintf(g.stdout, "erased subject %q: %d rows removed from %d tables\n", subject, removed, len(res))
			return nil
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "the subject whose rows to remove (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only count the subject's rows; change nothing")
	cmd.Flags().BoolVar(&purgeStream, "stream", false, "also delete the subject's messages from the ingest stream")
	return cmd
}

// dropCachedCopies deletes the SQL engine's local copies of removed S3 data files: the
// engine keeps them in <data>/cache/lake named by the first 12 bytes of the SHA-256 of
// the location, in hex (internal/query, Engine.localPath).
func dropCachedCopies(dataDir string, res []lake.TableErasure) error {
	dir := filepath.Join(dataDir, "cache", "lake")
	for _, te := range res {
		for _, loc := range te.Removed {
			if strings.HasPrefix(loc, "file:") {
				continue
			}
			sum := sha256.Sum256([]byte(loc))
			err := os.Remove(filepath.Join(dir, hex.EncodeToString(sum[:12])+".parquet"))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("deleting the query cache's copy of %s: %w", loc, err)
			}
		}
	}
	return nil
}

func printErasure(g *globals, res []lake.TableErasure, dryRun bool) {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if dryRun {
		fmt.Fprintln(tw, "TABLE\tROWS")
		for _, te := range res {
			fmt.Fprintf(tw, "%s.%s\t%d\n", te.Zone, te.Name, te.Before)
		}
	} else {
		fmt.Fprintln(tw, "TABLE\tBEFORE\tAFTER\tFILES REWRITTEN\tSNAPSHOTS EXPIRED\tFILES DELETED")
		for _, te := range res {
			fmt.Fprintf(tw, "%s.%s\t%d\t%d\t%d\t%d\t%d\n", te.Zone, te.Name, te.Before, te.After, te.Rewritten, te.Expired, te.PurgedFiles)
		}
	}
	tw.Flush()
}

func printStreamPurge(g *globals, sp []lake.StreamPurge, dryRun bool) {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tHOLDING SUBJECT\tDELETED\tPENDING")
	for _, p := range sp {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", p.Stream, p.Scanned, p.Matched, p.Deleted, p.Pending)
	}
	tw.Flush()
	if dryRun {
		fmt.Fprintln(g.stdout, "(dry run: no message deleted)")
	}
}
