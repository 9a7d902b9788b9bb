package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/simulate"
	"github.com/pulselake/pulselake/internal/token"
)

func newDemoCmd(g *globals) *cobra.Command {
	var duration time.Duration
	var httpAddr string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a complete server with simulated devices in a temporary data directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := checkConfigWith(g, func(cfg *config.Config) {
				cfg.HTTP.Listen = httpAddr
				if !cmd.Flags().Changed("http") && !portFree(httpAddr) {
					cfg.HTTP.Listen = "127.0.0.1:0"
				}
				cfg.MQTT.Listen = "127.0.0.1:0"
				cfg.Log.Level = "warn"
			}, changedFlags(cmd, map[string]string{"http.listen": "http"}))
			if err != nil {
				return err
			}
			// The demo's own temporary directory unless --data names one (kept afterwards);
			// $PULSELAKE_DATA is not used, so a demo never writes into a real server's data.
			dir, temporary := g.dataDir, !cmd.Flags().Changed("data")
			if temporary {
				if dir, err = os.MkdirTemp("", "pulselake-demo-"); err != nil {
					return fmt.Errorf("creating the demo's data directory: %w", err)
				}
				defer os.RemoveAll(dir)
			} else if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("creating the data directory: %w", err)
			}
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			var sims sync.WaitGroup
			err = app.Run(ctx, app.Options{DataDir: dir, Config: cfg, Log: newLogger(cfg, g.stderr), OnReady: func(r *app.Running) {
				startDemo(ctx, g, cfg, r, dir, temporary, &sims)
			}})
			sims.Wait()
			fmt.Fprintln(g.stdout, "demo stopped")
			return err
		},
	}
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: run until Ctrl-C)")
	cmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:8080", "HTTP listen address (a free port is used if it is taken)")
	return cmd
}

func portFree(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// demoFleets are the simulated devices of the demo.
var demoFleets = []simulate.Options{
	{Kind: "bp", Devices: 20, Rate: 20, Abnormal: 0.02, Invalid: 0.01},
	{Kind: "hr", Devices: 50, Rate: 200, Abnormal: 0.005},
	{Kind: "accelerometer", Devices: 10, Rate: 100, Abnormal: 0.001},
	{Kind: "ecg", Devices: 2, Rate: 2.4}, // two patients at 72 beats/min, real MIT-BIH beats
}

func startDemo(ctx context.Context, g *globals, cfg *config.Config, r *app.Running, dir string, temporary bool, sims *sync.WaitGroup) {
	secret, _, err := r.Tokens.Create(ctx, token.ScopeIngest, "", "demo devices")
	if err != nil {
		fmt.Fprintf(g.stderr, "demo: creating a device token: %v\n", err)
		return
	}
	viewer, _, err := r.Tokens.Create(ctx, token.ScopeRead, "", "demo dashboard")
	if err != nil {
		fmt.Fprintf(g.stderr, "demo: creating a dashboard token: %v\n", err)
		return
	}
	fmt.Fprintf(g.stdout, "pulselake demo\n  dashboard: %s/#token=%s\n  API:       %s/v1  (admin token: %s)\n  MQTT:      mqtt://%s  (topic readings/<kind>/<device>, password = an ingest token)\n  metrics:   %s/metrics\n  SQL:       curl -H 'Authorization: Bearer %s' -d '{\"sql\":\"SELECT device, avg(systolic) FROM blood_pressure GROUP BY device\"}' %s/v1/query\n%s\nPress Ctrl-C to stop.\n",
		r.HTTPURL, viewer, r.HTTPURL, demoAdminToken(dir), r.MQTTAddr, r.HTTPURL, viewer, r.HTTPURL, demoDataLines(dir, temporary))
	log := newLogger(cfg, g.stderr)
	for i, f := range demoFleets {
		f.Token, f.Seed = secret, uint64(i+1)
		f.Target = r.HTTPURL
		if f.Kind == "accelerometer" && r.MQTTAddr != "" {
			f.Target = "mqtt://" + r.MQTTAddr
		}
		sims.Add(1)
		go func() {
			defer sims.Done()
			if _, err := simulate.Run(ctx, log, f); err != nil && ctx.Err() == nil {
				fmt.Fprintf(g.stderr, "demo: %s simulator: %v\n", f.Kind, err)
			}
		}()
	}
	sims.Add(1)
	go func() {
		defer sims.Done()
		summarize(ctx, g, r)
	}()
}

// demoAdminToken returns the admin token of the demo's data directory: the one serve wrote on
// first start, else the preset $PULSELAKE_ADMIN_TOKEN.
func demoAdminToken(dir string) string {
	if b, err := os.ReadFile(filepath.Join(dir, app.AdminTokenFile)); err == nil {
		return strings.TrimSpace(string(b))
	}
	if os.Getenv("PULSELAKE_ADMIN_TOKEN") != "" {
		return "$PULSELAKE_ADMIN_TOKEN"
	}
	return "see pulselake token create --scope admin --data " + dir
}

// demoDataLines names the data directory and how the other commands reach it while the demo runs.
func demoDataLines(dir string, temporary bool) string {
	what := "kept after the demo stops"
	if temporary {
		what = "removed when the demo stops; --data DIR keeps it"
	}
	return fmt.Sprintf("  data:      %s  (%s)\n  CLI:       pulselake query --data %s \"SELECT count(*) FROM heart_rate\"   (also token, silence, erase, catalog)",
		dir, what, shellQuote(dir))
}

// shellQuote quotes s for a POSIX shell when it holds anything but safe characters.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// summarize prints a live line every 2 seconds: readings/s, totals, rejects.
func summarize(ctx context.Context, g *globals, r *app.Running) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var last float64
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c := counts(r)
			rate := (c["accepted"] - last) / now.Sub(lastAt).Seconds()
			last, lastAt = c["accepted"], now
			firing := 0
			if r.Alerts != nil {
				firing = len(r.Alerts.Alerts(rules.StateFiring))
			}
			fmt.Fprintf(g.stdout, "%s  %6.0f readings/s  accepted %.0f  duplicates %.0f  rejected %.0f (quarantined)  alerts firing %d  trusted rows %.0f (readings and beat predictions)  beats classified %.0f\n",
				now.Format("15:04:05"), rate, c["accepted"], c["duplicate"], c["rejected"], firing, c["lake"], c["beats"])
		}
	}
}

func counts(r *app.Running) map[string]float64 {
	out := map[string]float64{}
	mfs, err := r.Gatherer.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "pulselake_ingest_readings_total":
				out[label(m, "outcome")] += m.GetCounter().GetValue()
			case "pulselake_lake_rows_written_total":
				if label(m, "zone") == "trusted" {
					out["lake"] += m.GetCounter().GetValue()
				}
			case "pulselake_ecg_beats_total":
				out["beats"] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
