package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/simulate"
	"github.com/pulselake/pulselake/internal/simulate/stedi"
)

func newSimulateCmd(g *globals) *cobra.Command {
	var o simulate.Options
	var stediOut string
	var stediCustomers int
	cmd := &cobra.Command{
		Use: "simulate bp|hr|accelerometer|ecg --target URL|mqtt://HOST:PORT --token T | simulate stedi --out DIR",
		Long: `Runs a fleet of simulated devices against a server: bp (blood-pressure cuffs), hr (heart-rate
wearables), accelerometer, ecg (real MIT-BIH beats). With a wrong token (401 or 403) it stops at
once; while the server cannot be reached it pauses and retries with back-off, saying so once.
simulate stedi writes synthetic STEDI step-trainer exports (customer, step_trainer, accelerometer
JSON lines) for the pipeline example instead.`,
		Short: "Run a fleet of simulated devices against a server, or write synthetic STEDI exports",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Kind = args[0]
			switch o.Kind {
			case "bp", "hr", "accelerometer", "ecg":
			case "stedi":
				if stediOut == "" {
					return usagef("simulate stedi needs --out DIR")
				}
				n, err := stedi.Generate(stediOut, stedi.Options{Customers: stediCustomers, Seed: o.Seed})
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "wrote %d customers, %d step-trainer and %d accelerometer records under %s\n", n.Customers, n.StepTrainer, n.Accelerometer, stediOut)
				return nil
			default:
				return usagef("unknown device kind %q; want bp, hr, accelerometer, ecg or stedi", o.Kind)
			}
			if o.Target == "" || o.Token == "" {
				return usagef("--target and --token are required (an ingest token: pulselake token create --scope ingest)")
			}
			if o.Abnormal < 0 || o.Abnormal > 1 || o.Invalid < 0 || o.Invalid > 1 {
				return usagef("--abnormal and --invalid are shares between 0 and 1")
			}
			log := newLogger(config.Default(), g.stderr)
			st, err := simulate.Run(cmd.Context(), log, o)
			if errors.Is(err, simulate.ErrTokenRefused) {
				return err // the counts say nothing more
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "sent %d readings (%d abnormal, %d invalid): %d accepted, %d duplicates, %d rejected, %d failed\n",
				st.Sent, st.Abnormal, st.Invalid, st.Accepted, st.Duplicates, st.Rejected, st.Failed)
			if st.Failed > 0 {
				return fmt.Errorf("%d of %d readings were not stored (the warnings above say why); sending them again is safe", st.Failed, st.Sent)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Target, "target", "", "server URL (http://127.0.0.1:8080) or MQTT address (mqtt://127.0.0.1:1883)")
	f.StringVar(&o.Token, "token", "", "ingest token")
	f.IntVar(&o.Devices, "devices", 10, "number of devices")
	f.Float64Var(&o.Rate, "rate", 10, "readings per second over all devices")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to run (0 runs until Ctrl-C)")
	f.Uint64Var(&o.Seed, "seed", 1, "random seed")
	f.Float64Var(&o.Abnormal, "abnormal", 0.01, "share of clinically abnormal readings (e.g. systolic >= 180)")
	f.Float64Var(&o.Invalid, "invalid", 0, "share of invalid readings (out of range; they land in quarantine)")
	f.IntVar(&o.Batch, "batch", 500, "readings per HTTP request at most")
	f.StringVar(&stediOut, "out", "", "stedi: directory for the customer, step_trainer and accelerometer JSON-lines")
	f.IntVar(&stediCustomers, "customers", 1000, "stedi: number of customers")
	return cmd
}
