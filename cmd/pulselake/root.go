package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
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
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return checkDataDir(g, cmd) }
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
	refuseUnknownSubcommands(root)
	return root
}

// noDataCommands are the commands (top-level, with all theirs, or a full path) that do not read
// an existing data directory: serve and demo create theirs, the others work on files or on a
// server.
var noDataCommands = map[string]bool{
	"serve": true, "demo": true, "simulate": true, "detect": true, "ecg": true, "rules": true,
	"check": true, "version": true, "help": true, "completion": true, "pipeline list": true,
	cobra.ShellCompRequestCmd: true, cobra.ShellCompNoDescRequestCmd: true,
}

// checkDataDir refuses to run a command that reads the data directory when the directory does
// not exist: opening it would create an empty one (a typo in --data, or the wrong working
// directory) and the command would then answer about an empty lake.
func checkDataDir(g *globals, cmd *cobra.Command) error {
	top := cmd
	for top.HasParent() && top.Parent().HasParent() {
		top = top.Parent()
	}
	if !top.HasParent() || cmd.Annotations[helpOnly] != "" {
		return nil // the root and command groups only print help
	}
	path := strings.TrimPrefix(cmd.CommandPath(), top.Parent().CommandPath()+" ")
	if noDataCommands[top.Name()] || noDataCommands[path] {
		return nil
	}
	// A command answered by a server, or reading only the files it is given, needs no data.
	for _, f := range []string{"server", "input"} {
		if fl := cmd.Flags().Lookup(f); fl != nil && fl.Changed && fl.Value.String() != "" {
			return nil
		}
	}
	fi, err := os.Stat(g.dataDir)
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return usagef("data directory %s is not a directory; give the directory serve uses with --data DIR (or $PULSELAKE_DATA)", g.dataDir)
	case errors.Is(err, fs.ErrNotExist):
		abs, _ := filepath.Abs(g.dataDir)
		return usagef("data directory %s does not exist; give the one serve uses with --data DIR (or $PULSELAKE_DATA), "+
			"or start a new one with `pulselake serve --data %s` (or `mkdir -p %s` for an empty lake)", abs, shellQuote(g.dataDir), shellQuote(g.dataDir))
	default:
		return fmt.Errorf("checking the data directory: %w", err)
	}
}

// refuseUnknownSubcommands makes every command group (a command with subcommands and no action
// of its own) answer an unknown subcommand with a usage error and suggestions, as cobra does
// for the root, instead of printing help and exiting 0. Given no subcommand, a group prints
// its help.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		refuseUnknownSubcommands(c)
	}
	if !cmd.HasParent() || !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default for the root
	}
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		var names []string
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		return usagef("%s (its commands: %s; see %s --help)", msg, strings.Join(names, ", "), c.CommandPath())
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[helpOnly] = "true"
}

// helpOnly annotates the command groups whose only action is printing their help.
const helpOnly = "pulselake/help-only"

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
