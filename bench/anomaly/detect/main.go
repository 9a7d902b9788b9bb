// Command detect runs the anomaly detectors exactly as `pulselake detect` does, for the
// benchmark script when the full binary cannot be built (it needs only internal/anomaly).
//
//	detect --method iforest --set contamination=0.08 --input in.csv --output out.csv
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/pulselake/pulselake/internal/anomaly"
)

type sets []string

func (s *sets) String() string     { return strings.Join(*s, " ") }
func (s *sets) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var method, input, output string
	var kv sets
	flag.StringVar(&method, "method", "", "iforest, holt-winters, cv or timeshift")
	flag.StringVar(&input, "input", "", "input CSV")
	flag.StringVar(&output, "output", "", "output CSV (default stdout)")
	flag.Var(&kv, "set", "key=value (repeatable)")
	flag.Parse()
	if err := run(method, input, output, kv); err != nil {
		fmt.Fprintf(os.Stderr, "detect: %v\n", err)
		if errors.Is(err, anomaly.ErrInvalidParam) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(method, input, output string, kv []string) error {
	cfg, err := anomaly.ParseDetectConfig(method, kv)
	if err != nil {
		return err
	}
	in, err := os.Open(input)
	if err != nil {
		return fmt.Errorf("opening input: %w", err)
	}
	defer in.Close()
	out := os.Stdout
	if output != "" {
		if out, err = os.Create(output); err != nil {
			return fmt.Errorf("creating output: %w", err)
		}
	}
	if err := anomaly.RunDetect(cfg, in, out); err != nil {
		return err
	}
	return out.Close()
}
