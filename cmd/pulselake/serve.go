package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/config"
)

// loadConfig loads --config over the defaults without validating it (rules test needs only
// the kinds). Commands that run anything use checkConfig or checkConfigWith, which list the
// problems of the file and the flags in one pass.
func loadConfig(g *globals) (*config.Config, error) {
	cfg, err := config.Load(g.configFile)
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

// setup loads and validates the configuration, listing every problem of both, and returns
// it with a logger on stderr.
func setup(g *globals) (*config.Config, *slog.Logger, error) {
	cfg, err := checkConfig(g)
	if err != nil {
		return nil, nil, err
	}
	return cfg, newLogger(cfg, g.stderr), nil
}

// checkConfig loads and validates --config (no flags to apply between), returning every
// problem of both as a usage error.
func checkConfig(g *globals) (*config.Config, error) {
	return checkConfigWith(g, nil, nil)
}

// checkConfigWith loads --config, applies a command's flags over it (apply) and validates
// the result, returning every problem of the file, its rule files and the flags as one
// usage error. flags maps the YAML path of each setting a flag gave to the flag's name, so
// that its problems name the flag instead of a line of the file.
func checkConfigWith(g *globals, apply func(*config.Config), flags map[string]string) (*config.Config, error) {
	cfg, err := config.Check(g.configFile, apply)
	var ps config.Problems
	if errors.As(err, &ps) {
		for i, p := range ps {
			if flag, ok := flags[p.Path]; ok {
				ps[i] = config.Problem{Path: flag, Msg: p.Msg}
			}
		}
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("invalid configuration:\n%w", err)}
	}
	return cfg, nil
}

// changedFlags maps the YAML path of each setting to its flag, for the flags given.
func changedFlags(cmd *cobra.Command, paths map[string]string) map[string]string {
	out := map[string]string{}
	for path, flag := range paths {
		if cmd.Flags().Changed(flag) {
			out[path] = "--" + flag
		}
	}
	return out
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func newServeCmd(g *globals) *cobra.Command {
	var httpAddr, mqttAddr, natsURL string
	var cluster bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run everything: stream, ingest (HTTP, MQTT), API and dashboard",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := checkConfigWith(g, func(cfg *config.Config) {
				if cmd.Flags().Changed("http") {
					cfg.HTTP.Listen = httpAddr
				}
				if cmd.Flags().Changed("mqtt") {
					cfg.MQTT.Listen = mqttAddr
				}
				if cmd.Flags().Changed("nats-url") {
					cfg.NATS.URL = natsURL
				}
				cfg.Cluster.Enabled = cluster
			}, changedFlags(cmd, map[string]string{"http.listen": "http", "mqtt.listen": "mqtt", "nats.url": "nats-url"}))
			if err != nil {
				return err
			}
			return app.Run(cmd.Context(), app.Options{DataDir: g.dataDir, Config: cfg, Log: newLogger(cfg, g.stderr)})
		},
	}
	cmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:8080", "HTTP listen address (API, dashboard, metrics)")
	cmd.Flags().StringVar(&mqttAddr, "mqtt", "127.0.0.1:1883", `MQTT listen address, or "off"`)
	cmd.Flags().StringVar(&natsURL, "nats-url", "", "external NATS cluster URL (default: embedded server under <data>/stream)")
	cmd.Flags().BoolVar(&cluster, "cluster", false, "join the other nodes of the config's cluster: section (embedded NATS cluster, replicated streams; docs/scale-out.md)")
	return cmd
}

func newCheckCmd(g *globals) *cobra.Command {
	check := &cobra.Command{Use: "check", Short: "Check configuration"}
	check.AddCommand(&cobra.Command{
		Use:   "config",
		Short: "Validate the --config file; exits 2 listing every problem with file:line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := checkConfig(g)
			if err != nil {
				return err
			}
			name := cfg.File()
			if name == "" {
				name = "defaults (no --config given)"
			}
			fmt.Fprintf(g.stdout, "%s: ok\n", name)
			return nil
		},
	})
	return check
}
