package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/query"
)

func newQueryCmd(g *globals) *cobra.Command {
	var format, server, tok string
	var maxRows int
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   `query "SQL" [--format table|csv|json] [--server URL --token T]`,
		Short: "Run a read-only SQL query over the lake (zone.table; unqualified names are trusted tables)",
		Long: `Runs one read-only SELECT over the lake's Iceberg tables with the embedded SQL engine.
Without --server it reads the data directory's catalog directly (also while serve runs), as
the owner of the data directory: every table, every subject. With --server it asks a running
server (POST /v1/query, token scope read): registered tables only, and a token bound to a
subject sees only that subject's rows.`,
		Example: `  pulselake query "SELECT device, count(*), avg(systolic) FROM blood_pressure GROUP BY device"
  pulselake query "SELECT code, count(*) FROM quarantine.readings GROUP BY code" --format csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "table", "csv", "json":
			default:
				return usagef("--format %q: want table, csv or json", format)
			}
			sql := strings.TrimSpace(args[0])
			if sql == "" {
				return usagef("the query is empty; give one SELECT statement")
			}
			cfg, log, err := setup(g)
			if err != nil {
				return err
			}
			lim := query.Limits{MaxRows: maxRows, Timeout: timeout}
			if lim.MaxRows == 0 {
				lim.MaxRows = cfg.Query.MaxRows
			}
			if lim.Timeout == 0 {
				lim.Timeout = cfg.Query.Timeout.D()
			}
			var res *query.Result
			if server != "" {
				res, err = remoteQuery(server, tok, sql)
			} else {
				var eng *query.Engine
				log.Debug("opening the lake", "data", g.dataDir)
				eng, err = app.OpenQuery(cmd.Context(), log, g.dataDir, cfg)
				if err != nil {
					return err
				}
				defer func() { eng.Close(); log.Debug("closed the lake") }()
				res, err = eng.Query(cmd.Context(), sql, lim)
			}
			if errors.Is(err, query.ErrNotReadOnly) || errors.Is(err, query.ErrSyntax) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			if err := query.Write(g.stdout, format, res); err != nil {
				return err
			}
			if res.Truncated {
				fmt.Fprintf(g.stderr, "result cut at %d rows; use --max-rows or add LIMIT/aggregation\n", len(res.Rows))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output: table, csv or json")
	cmd.Flags().StringVar(&server, "server", "", "URL of a running server to ask instead of reading the data directory")
	cmd.Flags().StringVar(&tok, "token", "", "token with scope read (with --server)")
	cmd.Flags().IntVar(&maxRows, "max-rows", 0, "most rows to return (default: query.max_rows, 10000)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "time limit (default: query.timeout, 30s)")
	return cmd
}

// remoteQuery runs sql on a server through POST /v1/query.
func remoteQuery(server, tok, sql string) (*query.Result, error) {
	if tok == "" {
		return nil, usagef("--server needs --token (a token with scope read: pulselake token create --scope read)")
	}
	body, _ := json.Marshal(query.Request{SQL: sql})
	req, err := http.NewRequest(http.MethodPost, strings.TrimRight(server, "/")+"/v1/query", bytes.NewReader(body))
	if err != nil {
		return nil, usagef("--server %q: %v", server, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", server, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", server, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		if resp.StatusCode == http.StatusBadRequest {
			return nil, usagef("%s", msg)
		}
		return nil, fmt.Errorf("%s answered %s: %s", server, resp.Status, msg)
	}
	var res query.Result
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		return nil, fmt.Errorf("decoding the answer of %s: %w", server, err)
	}
	return &res, nil
}
