package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/rules"
)

func newRulesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "rules", Short: "Work with alert rules"}
	test := &cobra.Command{
		Use:   "test FILE...",
		Short: "Run unit tests of alert rules (input readings per device, expected alerts at times)",
		Long: `Run rule unit tests, like promtool test rules. A test file names its rule files
(rule_files, relative to the test file) or holds rules inline, and lists cases: readings per
device at time offsets, and the pending/firing alerts expected at given times.
See docs/alerting.md for the format. Exit code 1 when a case fails, 2 when a file is invalid.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("rules test: give at least one test FILE (see docs/alerting.md)")
			}
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			reg, err := cfg.Registry()
			if err != nil {
				return usagef("kinds: %v", err)
			}
			failed := 0
			for _, f := range args {
				fmt.Fprintf(g.stdout, "%s\n", f)
				n, err := rules.RunTestFile(f, reg, g.stdout)
				if err != nil {
					return usagef("%v", err)
				}
				failed += n
			}
			if failed > 0 {
				return fmt.Errorf("%d rule test case(s) failed", failed)
			}
			fmt.Fprintln(g.stdout, "all rule tests passed")
			return nil
		},
	}
	cmd.AddCommand(test)
	return cmd
}
