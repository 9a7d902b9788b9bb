package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes (SPEC §2).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error as a usage or configuration problem (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usage error (exit code 2) with a formatted message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// globals holds the flags every command takes.
type globals struct {
	dataDir    string
	configFile string
	stdout     io.Writer
	stderr     io.Writer
}

func defaultDataDir() string {
	if d := os.Getenv("PULSELAKE_DATA"); d != "" {
		return d
	}
	return "./pulselake-data"
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "pulselake",
		Short:         "Self-hosted platform for health-sensor data: ingest, lake, SQL, alerts, dashboard",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data", defaultDataDir(), "data directory (env PULSELAKE_DATA)")
	root.PersistentFlags().StringVar(&g.configFile, "config", "", "YAML configuration file")
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		// one line per command; each lives in its own file
		newServeCmd(g),
		newCheckCmd(g),
		newTokenCmd(g),
		newSimulateCmd(g),
		newDemoCmd(g),
		newRulesCmd(g),
		newIngestCmd(g),
		newECGCmd(g),
		newDetectCmd(g),
		newQueryCmd(g),
		newEraseCmd(g),
		newCatalogCmd(g),
		newPipelineCmd(g),
		newReportCmd(g),
		newSilenceCmd(g),
		newVersionCmd(g),
		newConnectCmd(g),
		newPullCmd(g),
		newExportCmd(g),
	)
	return root
}

func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "pulselake: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFailure
}

// isCobraUsage reports errors cobra raises for unknown commands and wrong argument counts.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "requires at most", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
