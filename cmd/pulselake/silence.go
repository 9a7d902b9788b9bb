package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/stream"
)

// withSilences runs f with the silences of the data directory (or cluster); a running serve
// sees the changes at once because it watches the same bucket.
func withSilences(cmd *cobra.Command, g *globals, f func(*notify.Silences) error) error {
	return withConn(cmd, g, func(log *slog.Logger, conn *stream.Conn) error {
		s, err := app.OpenSilences(cmd.Context(), log, conn)
		if err != nil {
			return err
		}
		defer s.Close()
		return f(s)
	})
}

func newSilenceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "silence", Short: "Add, list and expire alert silences"}
	cmd.AddCommand(newSilenceAddCmd(g), newSilenceListCmd(g), newSilenceExpireCmd(g))
	return cmd
}

func newSilenceAddCmd(g *globals) *cobra.Command {
	var matchers []string
	var duration time.Duration
	var comment, author string
	add := &cobra.Command{
		Use:   "add --matcher NAME=VALUE... --duration D --comment TEXT [--author A]",
		Short: "Mute alerts whose labels match every matcher (=, !=, =~, !~) for a duration; prints the ID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(matchers) == 0 {
				return usagef("silence add: give at least one --matcher, like --matcher alertname=hypertensive-crisis")
			}
			var ms notify.Matchers
			for _, s := range matchers {
				m, err := notify.ParseMatcher(s)
				if err != nil {
					return usagef("silence add: --matcher: %v", err)
				}
				ms = append(ms, m)
			}
			if duration <= 0 {
				return usagef("silence add: --duration must be positive, like 2h or 30m")
			}
			if strings.TrimSpace(comment) == "" {
				return usagef("silence add: --comment is required: say why the alerts are muted")
			}
			now := time.Now().UTC()
			sil := notify.Silence{Matchers: ms, StartsAt: now, EndsAt: now.Add(duration), CreatedBy: author, Comment: comment}
			return withSilences(cmd, g, func(s *notify.Silences) error {
				id, err := s.Create(cmd.Context(), sil)
				if errors.Is(err, notify.ErrInvalidSilence) {
					return usageError{err}
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, id)
				fmt.Fprintf(g.stderr, "silenced %s until %s\n", matchersString(ms), sil.EndsAt.Format(time.RFC3339))
				return nil
			})
		},
	}
	add.Flags().StringArrayVar(&matchers, "matcher", nil, "label matcher name=value, name!=value, name=~regex or name!~regex (repeat; all must match)")
	add.Flags().DurationVar(&duration, "duration", 0, "how long the silence lasts, like 2h (required)")
	add.Flags().StringVar(&comment, "comment", "", "why the alerts are muted (required)")
	add.Flags().StringVar(&author, "author", os.Getenv("USER"), "who created the silence")
	_ = add.MarkFlagRequired("duration")
	return add
}

func newSilenceListCmd(g *globals) *cobra.Command {
	var format string
	list := &cobra.Command{
		Use:   "list [--format table|json]",
		Short: "List silences (pending, active and recently expired), newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return usagef("silence list: --format: want table or json, got %q", format)
			}
			return withSilences(cmd, g, func(s *notify.Silences) error {
				now := time.Now()
				list := s.List(cmd.Context())
				if format == "json" {
					type out struct {
						notify.Silence
						Status struct {
							State string `json:"state"`
						} `json:"status"`
					}
					res := make([]out, len(list))
					for i, sil := range list {
						res[i].Silence = sil
						res[i].Status.State = sil.State(now)
					}
					enc := json.NewEncoder(g.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(res)
				}
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tMATCHERS\tSTARTS\tENDS\tCREATED BY\tCOMMENT")
				for _, sil := range list {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sil.ID, sil.State(now), matchersString(sil.Matchers),
						sil.StartsAt.UTC().Format(time.RFC3339), sil.EndsAt.UTC().Format(time.RFC3339), dash(sil.CreatedBy),
						dash(strings.ReplaceAll(sil.Comment, "\n", " ")))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&format, "format", "table", "table or json")
	return list
}

func newSilenceExpireCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "expire ID",
		Short: "End a silence now (its alerts notify again)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withSilences(cmd, g, func(s *notify.Silences) error {
				err := s.Expire(cmd.Context(), args[0])
				if errors.Is(err, notify.ErrSilenceNotFound) {
					return fmt.Errorf("no silence with ID %q; `pulselake silence list` shows them", args[0])
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "expired %s\n", args[0])
				return nil
			})
		},
	}
}

func matchersString(ms notify.Matchers) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return strings.Join(parts, ",")
}
