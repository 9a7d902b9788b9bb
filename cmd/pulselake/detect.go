package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/anomaly"
	"github.com/pulselake/pulselake/internal/durable"
)

func newDetectCmd(g *globals) *cobra.Command {
	var (
		method, input, output string
		sets                  []string
	)
	cmd := &cobra.Command{
		Use:   "detect --method online|iforest|holt-winters|cv|timeshift [--set k=v]... --input F.csv [--output F.csv]",
		Short: "Score a CSV time series for anomalies (online detector, Isolation Forest, Graphite Holt-Winters, cv, timeshift)",
		Long: `Reads a CSV with a header (timestamp,value as in the Numenta Anomaly Benchmark, or several
value columns; an empty value is a missing point) and writes the input columns plus score (0..1,
higher is more anomalous), anomaly (0/1) and the method's own columns, then prints a summary
line (points, flagged, share) on stderr:
  online        expected,scale,p,component     (forecast, its typical error, tail probability,
                                                the view that explains the score)
  iforest       decision                       (scikit-learn's decision_function)
  holt-winters  forecast,lower,upper,aberration (Graphite's holtWinters* functions)
  cv            cv                             (stdev / mean over a sliding window)
  timeshift     shifted,change                 (|x - x(t-shift)| / x)
Rows out of time order are sorted (stable) and rows with the same timestamp are scored once, on
the mean of their values, with a warning on stderr. The online method takes no parameters: it
scores each row using only earlier rows and infers step, scales and a daily season.
Parameters (--set): iforest n_estimators=100 max_samples=auto contamination=auto (scikit-
learn's offset -0.5; a share such as 0.05 flags that share) max_features bootstrap=false seed=0; holt-winters seasonality=1d delta=3; cv window=1h window_tolerance=0.1
threshold=0.15; timeshift shift=7d threshold=0.3; any method columns=a,b time_column=t step=5s.
See docs/anomaly.md.`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			if method == "" || input == "" {
				return usagef("detect needs --method (%s) and --input FILE.csv", strings.Join(anomaly.Methods(), "|"))
			}
			cfg, err := anomaly.ParseDetectConfig(method, sets)
			if err != nil {
				return usagef("detect: %v", err)
			}
			var in io.Reader = os.Stdin
			if input != "-" {
				f, err := os.Open(input)
				if err != nil {
					return fmt.Errorf("opening input: %w", err)
				}
				defer f.Close()
				in = f
			}
			var sum anomaly.Summary
			if output == "" || output == "-" {
				sum, err = anomaly.RunDetectSummary(cfg, in, g.stdout, g.stderr)
				err = detectErr(input, err)
			} else {
				err = durable.Replace(output, 0o600, func(w io.Writer) error {
					sum, err = anomaly.RunDetectSummary(cfg, in, w, g.stderr)
					return detectErr(input, err)
				})
			}
			if err != nil {
				return err
			}
			// The summary goes to stderr: stdout may be the CSV itself.
			fmt.Fprintf(g.stderr, "%s: %s by %s\n", input, sum, method)
			if method == "iforest" && sum.Large() && !slices.ContainsFunc(sets, func(s string) bool { return strings.HasPrefix(strings.TrimSpace(s), "contamination") }) {
				fmt.Fprintf(g.stderr, "%s: contamination=auto flags every row scoring above 0.5 (scikit-learn's rule), which is many on integer readings; --set contamination=0.05 flags the most anomalous 5 %%\n", input)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&method, "method", "", "online, iforest, holt-winters, cv or timeshift")
	f.StringArrayVar(&sets, "set", nil, "method parameter key=value (repeatable)")
	f.StringVar(&input, "input", "", "input CSV file (- for stdin)")
	f.StringVar(&output, "output", "", "output CSV file (default stdout)")
	return cmd
}

// detectErr names the input file in parse errors and turns parameter problems found in the data
// (such as a season shorter than two steps) into usage errors.
func detectErr(input string, err error) error {
	var pe *anomaly.ParseError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return fmt.Errorf("reading %s: %w", input, err)
	case errors.Is(err, anomaly.ErrInvalidParam):
		return usagef("detect: %v", err)
	}
	return err
}
