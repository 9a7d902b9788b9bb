package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/connector"
)

func newConnectCmd(g *globals) *cobra.Command {
	var subject string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "connect google-health|withings --subject S",
		Short: "Connect a subject's wearable cloud account (OAuth); list and revoke connections",
		Long: `Prints the provider's authorization URL for the subject to open (nothing is opened for
you). After consent the provider redirects to the configured redirect_url: a running serve
receives it at /v1/connect/<provider>/callback; without serve this command listens on that
URL's host and port itself. The tokens are sealed in the encrypted secret store.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return err
			}
			if _, ok := (config.Connectors{}).ByName(args[0]); ok {
				return nil
			}
			cmd.SuggestionsMinimumDistance = 2
			msg := fmt.Sprintf("unknown provider or command %q: want google-health, withings, list or revoke", args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return usagef("%s", msg)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConnect(cmd.Context(), g, args[0], subject, timeout)
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "the subject whose account is connected (required)")
	cmd.Flags().DurationVar(&timeout, "timeout", connector.DefaultStateTTL, "how long to wait for the authorization")

	cmd.AddCommand(newConnectListCmd(g), newConnectRevokeCmd(g))
	return cmd
}

// runConnect starts the OAuth flow for one subject at provider, prints the authorization URL
// and waits up to timeout for the provider's redirect.
func runConnect(ctx context.Context, g *globals, provider, subject string, timeout time.Duration) error {
	if _, ok := (config.Connectors{}).ByName(provider); !ok {
		return usagef("unknown provider %q: want google-health or withings", provider)
	}
	if err := connector.CheckSubject(subject); err != nil {
		return usageError{fmt.Errorf("--subject: %w", err)}
	}
	cfg, log, err := setup(g)
	if err != nil {
		return err
	}
	pc, _ := cfg.Connectors.ByName(provider)
	if !pc.Enabled() {
		return usagef("%s is not configured: set connectors.%s.client_id and client_secret_file in the config file (docs/sources.md)",
			provider, map[string]string{config.GoogleHealth: "google_health", config.Withings: "withings"}[provider])
	}
	_, serving := app.ServeHTTPURL(g.dataDir) // before Dial, which may lock the directory
	conn, closeConn, err := app.Dial(ctx, log, g.dataDir, cfg)
	if err != nil {
		return err
	}
	defer closeConn()
	mgr, err := app.OpenConnectors(ctx, log, nil, g.dataDir, cfg, conn)
	if err != nil {
		return err
	}
	if !serving {
		// Listen before printing the URL, so the redirect finds us.
		stop, err := listenCallback(pc.RedirectURL, provider, mgr)
		if err != nil {
			return err
		}
		defer stop()
	}
	authURL, state, err := mgr.Begin(ctx, provider, subject)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "Open this URL as %s and grant access:\n\n  %s\n\n", subject, authURL)
	if serving {
		fmt.Fprintf(g.stdout, "Waiting for the redirect to reach serve at %s ...\n", pc.RedirectURL)
	} else {
		fmt.Fprintf(g.stdout, "Waiting for the redirect at %s ...\n", pc.RedirectURL)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := mgr.Wait(wctx, provider, subject, state)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no authorization arrived within %s; run pulselake connect again", timeout)
		}
		return err
	}
	fmt.Fprintf(g.stdout, "Connected %s for %s (connection %s); data types: %v.\n", c.Provider, c.Subject, c.ID, c.DataTypes)
	if !serving {
		fmt.Fprintln(g.stdout, "serve pulls it on its schedule; pulselake pull", provider, "--subject", subject, "pulls it now.")
	}
	return nil
}

// newConnectListCmd is "connect list": every connection with its status and last sync.
func newConnectListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List connections: provider, subject, status, last sync, last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withConnectors(cmd, g, func(mgr *connector.Manager) error {
				all, err := mgr.List(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tPROVIDER\tSUBJECT\tSTATUS\tCREATED\tLAST SYNC\tLAST ERROR")
				for _, c := range all {
					last := "-"
					if !c.LastSync.IsZero() {
						last = c.LastSync.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Provider, c.Subject, c.Status, c.Created.Format(time.RFC3339), last, orDash(c.LastError))
				}
				return tw.Flush()
			})
		},
	}
}

// newConnectRevokeCmd is "connect revoke ID": revokes the grant and deletes the connection.
func newConnectRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Remove a connection: revoke the grant at the provider where it can be, delete its tokens, cursors and metadata",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withConnectors(cmd, g, func(mgr *connector.Manager) error {
				c, err := mgr.Revoke(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "revoked %s (%s, %s); readings already pulled stay in the lake (pulselake erase --subject %s removes them)\n", c.ID, c.Provider, c.Subject, c.Subject)
				return nil
			})
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// withConnectors runs f with the connections of the data directory (or cluster).
func withConnectors(cmd *cobra.Command, g *globals, f func(*connector.Manager) error) error {
	cfg, log, err := setup(g)
	if err != nil {
		return err
	}
	conn, closeConn, err := app.Dial(cmd.Context(), log, g.dataDir, cfg)
	if err != nil {
		return err
	}
	defer closeConn()
	mgr, err := app.OpenConnectors(cmd.Context(), log, nil, g.dataDir, cfg, conn)
	if err != nil {
		return err
	}
	return f(mgr)
}

// listenCallback serves the OAuth redirect on the redirect URL's host and port, at its path,
// until stop is called.
func listenCallback(redirect, provider string, mgr *connector.Manager) (stop func(), err error) {
	u, err := url.Parse(redirect)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("redirect_url %q is not a URL", redirect)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	host := net.JoinHostPort(u.Hostname(), port)
	l, err := net.Listen("tcp", host)
	if err != nil {
		return nil, fmt.Errorf("listening for the OAuth redirect on %s (the redirect_url's address): %w; stop what uses it or start serve", host, err)
	}
	mux := http.NewServeMux()
	path := u.Path
	if path == "" {
		path = "/"
	}
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		r.SetPathValue("provider", provider)
		mgr.Callback(w, r)
	})
	srv := &http.Server{Handler: http.MaxBytesHandler(mux, 1<<20), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l) // ErrServerClosed after stop
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
