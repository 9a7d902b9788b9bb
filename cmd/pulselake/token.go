package main

import (
	"fmt"
	"log/slog"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

// withConn runs f with a connection to the stream of the data directory (or cluster):
// through a running serve, or an embedded server started for the command.
func withConn(cmd *cobra.Command, g *globals, f func(*slog.Logger, *stream.Conn) error) error {
	cfg, log, err := setup(g)
	if err != nil {
		return err
	}
	conn, closeConn, err := app.Dial(cmd.Context(), log, g.dataDir, cfg)
	if err != nil {
		return err
	}
	defer closeConn()
	return f(log, conn)
}

// withTokens runs f with the token store of the data directory (or cluster).
func withTokens(cmd *cobra.Command, g *globals, f func(*token.Store) error) error {
	return withConn(cmd, g, func(log *slog.Logger, conn *stream.Conn) error {
		ts, err := app.OpenTokens(cmd.Context(), log, conn)
		if err != nil {
			return err
		}
		defer ts.Close()
		return f(ts)
	})
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke API tokens"}
	var scope, subject, name string
	create := &cobra.Command{
		Use:   "create --scope ingest|read|admin [--subject S] [--name N]",
		Short: "Create a token; prints it once (only its hash is stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc, err := token.ParseScope(scope)
			if err != nil {
				return usageError{err}
			}
			if sc == token.ScopeAdmin && subject != "" {
				return usageError{token.ErrBoundAdmin}
			}
			if subject != "" {
				if err := reading.CheckIdent("--subject", subject); err != nil {
					return usageError{err}
				}
			}
			return withTokens(cmd, g, func(ts *token.Store) error {
				secret, t, err := ts.Create(cmd.Context(), sc, subject, name)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, secret)
				bound := ""
				if t.Bound() {
					bound = ", bound to subject " + t.Subject + ": HTTP only, MQTT and the NATS port refuse it"
				}
				fmt.Fprintf(g.stderr, "created token %s (scope %s%s); store it now, it cannot be shown again\n", t.ID, t.Scope, bound)
				return nil
			})
		},
	}
	create.Flags().StringVar(&scope, "scope", "", "ingest, read or admin (required)")
	create.Flags().StringVar(&subject, "subject", "", "bind the token to one subject (read or ingest; see docs/security.md)")
	create.Flags().StringVar(&name, "name", "", "a name to recognise the token by")
	_ = create.MarkFlagRequired("scope")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (IDs, never the tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withTokens(cmd, g, func(ts *token.Store) error {
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSCOPE\tSUBJECT\tNAME\tCREATED\tREVOKED")
				for _, t := range ts.List() {
					revoked := "-"
					if t.Revoked != nil {
						revoked = t.Revoked.Format("2006-01-02T15:04:05Z")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Scope, dash(t.Subject), dash(t.Name), t.Created.Format("2006-01-02T15:04:05Z"), revoked)
				}
				return tw.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token by its ID (or a unique prefix)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withTokens(cmd, g, func(ts *token.Store) error {
				t, err := ts.Revoke(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "revoked %s\n", t.ID)
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
