package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/pipeline"
)

// defaultPipelineDir is the folder `pipeline run` and `list` read without --dir.
const defaultPipelineDir = "pipeline"

func newPipelineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pipeline", Short: "Run SQL models that build trusted and curated lake tables"}
	var dir string
	run := &cobra.Command{
		Use:   "run [--dir DIR] [MODEL...]",
		Short: "Run the folder's models (or the named ones) in dependency order; prints rows and time per model",
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := loadPipeline(dir)
			if err != nil {
				return err
			}
			if _, err := p.Select(args, false); err != nil {
				return usageError{err}
			}
			cfg, log, err := setup(g)
			if err != nil {
				return err
			}
			r, closeRunner, err := app.OpenPipelines(cmd.Context(), log, g.dataDir, cfg)
			if err != nil {
				return err
			}
			defer closeRunner()
			rep, err := r.Run(cmd.Context(), p, args)
			if rep != nil {
				if perr := rep.Print(g.stdout); perr != nil {
					return perr
				}
			}
			if err != nil {
				return err
			}
			return rep.Err()
		},
	}
	list := &cobra.Command{
		Use:   "list [--dir DIR]",
		Short: "List the folder's models in run order with what they read",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadPipeline(dir)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "#\tMODEL\tMODE\tREADS\tCHECKS\tSCHEDULE\tDESCRIPTION")
			for i, name := range p.Order {
				m := p.Models[name]
				mode := "replace"
				if m.Incremental != nil {
					mode = "merge(" + strings.Join(m.Incremental, ",") + ")"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", i+1, name, mode, dash(strings.Join(m.Reads, ",")), len(m.Expects), dash(m.Schedule), dash(m.Description))
			}
			return tw.Flush()
		},
	}
	for _, c := range []*cobra.Command{run, list} {
		c.Flags().StringVar(&dir, "dir", defaultPipelineDir, "folder of <zone>.<table>.sql models")
	}
	cmd.AddCommand(run, list)
	return cmd
}

// loadPipeline loads a model folder; problems in the files are usage errors (exit 2).
func loadPipeline(dir string) (*pipeline.Project, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, usagef("pipeline folder %s: %v (give one with --dir)", dir, err)
	}
	p, err := pipeline.LoadDir(dir)
	if err != nil {
		var le pipeline.LoadErrors
		if errors.As(err, &le) || errors.Is(err, pipeline.ErrCycle) {
			return nil, usageError{err}
		}
		return nil, err
	}
	return p, nil
}
