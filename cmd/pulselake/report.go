package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/report"
)

func newReportCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report heart --subject S [--from T --to T] --out DIR",
		Short: "Write reports with charts (PNG and HTML)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("report needs a report name: heart")
		},
	}
	cmd.AddCommand(newReportHeartCmd(g))
	return cmd
}

func newReportHeartCmd(g *globals) *cobra.Command {
	var subject, from, to, out, input string
	var contamination float64
	var seed uint64
	cmd := &cobra.Command{
		Use:   "heart --subject S [--from T] [--to T] --out DIR [--input FITBIT.csv]",
		Short: "Heart-rate report of one subject: distribution, weekdays, daily mean/resting, Isolation Forest verdicts",
		Long: `Reads one subject's heart rate from the lake (trusted.heart_rate, through the SQL engine over the
data directory) or, with --input, from a Fitbit export CSV (id,time,hr; rows of other ids are
skipped), and writes into --out four PNG charts and index.html that shows them with a summary:
  heart-rate-distribution.png  histogram (2 bpm bins) with mean and median
  heart-rate-by-weekday.png    box plot per weekday (UTC)
  heart-rate-daily.png         bars of each day's mean and resting (10th percentile) heart rate
  heart-rate-anomalies.png     the readings over time, coloured by Isolation Forest verdict
The Isolation Forest is scikit-learn's (contamination 0.08, seed 1 unless set) on heart rate.`,
		Example: `  pulselake report heart --subject patient-17 --from 2026-11-01 --to 2026-12-01 --out report/
  pulselake report heart --subject 2022484408 --input fitbit-heartrate.csv --out report/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if subject == "" || out == "" {
				return usagef("report heart needs --subject S and --out DIR")
			}
			var lo, hi time.Time
			var err error
			if from != "" {
				if lo, err = parseReportTime(from); err != nil {
					return usagef("--from %q: %v", from, err)
				}
			}
			if to != "" {
				if hi, err = parseReportTime(to); err != nil {
					return usagef("--to %q: %v", to, err)
				}
			}
			if !lo.IsZero() && !hi.IsZero() && !hi.After(lo) {
				return usagef("--to must be after --from")
			}
			if !(contamination > 0 && contamination <= 0.5) {
				return usagef("--contamination %g: want a fraction in (0, 0.5]", contamination)
			}
			rs, err := heartReadings(cmd, g, input, subject, lo, hi)
			if err != nil {
				return err
			}
			if len(rs) < 2 {
				where := "trusted.heart_rate in " + g.dataDir
				if input != "" {
					where = input
				}
				return fmt.Errorf("%s has %d heart-rate readings of subject %s in that period; the report needs at least 2 (check --subject, --from and --to)", where, len(rs), subject)
			}
			s, err := report.Heart(rs, out, report.HeartOptions{Subject: subject, Contamination: contamination, Seed: seed})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%d readings of %s (%s – %s), %d days, mean %.1f bpm, %d anomalies\n",
				s.Readings, subject, s.First.Format(time.DateOnly), s.Last.Format(time.DateOnly), len(s.Days), s.Mean, s.Anomalies)
			for _, f := range s.Files {
				fmt.Fprintln(g.stdout, filepath.Join(out, f))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&subject, "subject", "", "subject whose heart rate to report (with --input: the id column's value)")
	f.StringVar(&from, "from", "", "first time included (RFC 3339 or YYYY-MM-DD, UTC)")
	f.StringVar(&to, "to", "", "first time excluded (RFC 3339 or YYYY-MM-DD, UTC)")
	f.StringVar(&out, "out", "", "directory for the PNG charts and index.html (created if missing)")
	f.StringVar(&input, "input", "", "Fitbit heart-rate CSV (id,time,hr) to read instead of the lake")
	f.Float64Var(&contamination, "contamination", 0.08, "Isolation Forest contamination (share of readings flagged)")
	f.Uint64Var(&seed, "seed", 1, "Isolation Forest random seed")
	return cmd
}

// heartReadings reads the subject's heart rate in [lo, hi) from the Fitbit CSV input, or
// from the lake when input is empty.
func heartReadings(cmd *cobra.Command, g *globals, input, subject string, lo, hi time.Time) ([]report.Reading, error) {
	if input != "" {
		f, err := os.Open(input)
		if err != nil {
			return nil, fmt.Errorf("opening --input: %w", err)
		}
		defer f.Close()
		rs, err := report.ReadFitbitCSV(f, subject)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", input, err)
		}
		return between(rs, lo, hi), nil
	}
	cfg, log, err := setup(g)
	if err != nil {
		return nil, err
	}
	eng, err := app.OpenQuery(cmd.Context(), log, g.dataDir, cfg)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	rs, err := report.LakeHeartRate(cmd.Context(), eng, subject, lo, hi)
	if errors.Is(err, report.ErrTooManyRows) {
		return nil, usageError{err}
	}
	return rs, err
}

func parseReportTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly, time.DateTime} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("want RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01)")
}

func between(rs []report.Reading, lo, hi time.Time) []report.Reading {
	out := rs[:0]
	for _, r := range rs {
		if (lo.IsZero() || !r.Time.Before(lo)) && (hi.IsZero() || r.Time.Before(hi)) {
			out = append(out, r)
		}
	}
	return out
}
