package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

func newExportCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export fhir [--subject S] [--since D] --output DIR",
		Short: "Export the lake's readings in a standard format: fhir writes FHIR R4 Bulk Data NDJSON",
	}
	cmd.AddCommand(newExportFHIRCmd(g))
	return cmd
}

func newExportFHIRCmd(g *globals) *cobra.Command {
	var subject, since, output string
	cmd := &cobra.Command{
		Use:   "fhir [--subject S] [--since D] --output DIR",
		Short: "Write the readings that have a FHIR code as R4 Observations, Bulk Data NDJSON (DIR/Observation.ndjson)",
		Long: `Writes every reading of the trusted zone whose kind has a FHIR code (docs/formats.md, FHIR R4)
as one Observation per line to DIR/Observation.ndjson, in time order: the FHIR Bulk Data
export format. --since takes a date (2026-11-01), a date and time with zone, or a duration
back from now (30d, 12h).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == "" {
				return usagef("--output DIR is required: the folder to write Observation.ndjson into")
			}
			if subject != "" {
				if err := reading.CheckIdent("--subject", subject); err != nil {
					return usageError{err}
				}
			}
			from, err := parseSince(since, time.Now())
			if err != nil {
				return usageError{err}
			}
			cfg, log, err := setup(g)
			if err != nil {
				return err
			}
			n, err := app.ExportFHIR(cmd.Context(), log, g.dataDir, cfg, app.ExportFHIROptions{Subject: subject, Since: from, Output: output})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s: %d Observations\n", filepath.Join(output, "Observation.ndjson"), n)
			return nil
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "only this subject's readings")
	cmd.Flags().StringVar(&since, "since", "", "only readings from this date (2026-11-01, or a dateTime) or this long ago (30d)")
	cmd.Flags().StringVar(&output, "output", "", "folder to write Observation.ndjson into (created if missing)")
	return cmd
}

// parseSince reads --since: empty (everything), a date, an RFC 3339 time, or a duration
// back from now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	var d yamlconf.Duration
	if err := d.UnmarshalText([]byte(s)); err == nil && d.D() > 0 {
		return now.Add(-d.D()).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a date (2026-11-01), a date and time with zone, or a duration like 30d", s)
}
