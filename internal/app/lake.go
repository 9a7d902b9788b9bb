package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/web"
)

// lakeParts is the lake as serve runs it: the store, the writer consuming the ingest
// stream, the buffer of monitoring rows (ops zone) and the SQL engine.
type lakeParts struct {
	store  *lake.Store
	writer *lake.Writer
	ops    *lake.RowBuffer
	engine *query.Engine
}

func openLake(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, cfg *config.Config, dataDir string, conn *stream.Conn, kinds *reading.Registry) (*lakeParts, error) {
	lc := cfg.Lake.WithDefaults(dataDir)
	st, err := OpenLake(ctx, log, dataDir, cfg)
	if err != nil {
		return nil, err
	}
	w, err := lake.New(log.With("component", "lake"), reg, lake.Options{Config: lc, DataDir: dataDir, Conn: conn, Registry: kinds, Store: st,
		Lease: shared(cfg), LeaseTTL: leaseTTL(cfg)}) // on a cluster one serve writes, the others stand by
	if err != nil {
		st.Close()
		return nil, err
	}
	eng, err := query.Open(ctx, log.With("component", "query"), reg, queryOptions(dataDir, cfg, st))
	if err != nil {
		st.Close()
		return nil, err
	}
	ops := lake.NewRowBuffer(log.With("component", "lake"), reg, st, lc.FlushInterval.D(), 0)
	return &lakeParts{store: st, writer: w, ops: ops, engine: eng}, nil
}

func (l *lakeParts) close() {
	l.engine.Close()
	l.store.Close()
}

// queryLimits are the limits of POST /v1/query.
func queryLimits(cfg *config.Config) query.Limits {
	return query.Limits{MaxRows: cfg.Query.MaxRows, Timeout: cfg.Query.Timeout.D()}
}

// ready reports whether the catalog answers and the writer writes. A writer that cannot
// commit to any table makes serve not ready; tables that fail while the others are written
// leave it ready but "degraded", naming each broken table: accepted readings are still
// stored durably in the stream and the broken table catches up once repaired, so taking
// the server out of a load balancer would not help (docs/lake.md, Health).
func (l *lakeParts) ready() web.Check {
	return func(ctx context.Context) error {
		if _, err := l.store.TableNames(ctx, lake.ZoneTrusted); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		h := l.writer.Health()
		if h.Stalled != nil {
			return fmt.Errorf("lake writer cannot commit: %w", h.Stalled)
		}
		if len(h.Broken) > 0 {
			return web.Degraded{Reason: h.String()}
		}
		return nil
	}
}

// alertColumns are the columns of ops.alerts: one row per state change of an alert.
var alertColumns = []lake.Column{
	{Name: "time", Type: lake.Timestamp}, // when the state changed
	{Name: "rule", Type: lake.String},
	{Name: "subject", Type: lake.String},
	{Name: "device", Type: lake.String},
	{Name: "kind", Type: lake.String},
	{Name: "state", Type: lake.String},
	{Name: "from_state", Type: lake.String},
	{Name: "severity", Type: lake.String},
	{Name: "reading_time", Type: lake.Timestamp},
	{Name: "active_at", Type: lake.Timestamp},
	{Name: "labels", Type: lake.String},      // JSON
	{Name: "values", Type: lake.String},      // JSON
	{Name: "annotations", Type: lake.String}, // JSON
}

// recordAlerts queues alert transitions for ops.alerts.
func (l *lakeParts) recordAlerts(ts []rules.Transition) {
	for _, t := range ts {
		a := t.Alert
		at := a.LastEval
		switch a.State {
		case "firing":
			at = a.FiredAt
		case "resolved":
			at = a.ResolvedAt
		case "pending":
			at = a.ActiveAt
		}
		if at.IsZero() {
			at = time.Now()
		}
		l.ops.Add(lake.ZoneOps, "alerts", alertColumns, []any{
			at.UTC(), a.Rule, a.Subject, a.Device, a.Kind, a.State, t.From, a.Severity,
			optTime(a.ReadingTime), optTime(a.ActiveAt), jsonText(a.Labels), jsonText(a.Values), jsonText(a.Annotations),
		})
	}
}

func optTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// jsonText is v as JSON, or NULL when v is empty.
func jsonText[M ~map[string]V, V any](v M) any {
	if len(v) == 0 {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return string(b)
}
