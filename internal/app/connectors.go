package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/connector"
	"github.com/pulselake/pulselake/internal/connector/googlehealth"
	"github.com/pulselake/pulselake/internal/connector/withings"
	"github.com/pulselake/pulselake/internal/ingest"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/secret"
	"github.com/pulselake/pulselake/internal/stream"
)

// startConnectors runs the wearable clouds' sync engine (SPEC §10, docs/sources.md): one
// scheduler pulling every configured provider's connections every connectors.<p>.every. The
// connection routes are mounted even with no provider configured (the list is then empty).
// A connection needing consent is a firing alert "connector-needs-consent", notified when its
// status changes, whoever changed it (serve's pulls, `pulselake pull`).
func startConnectors(n *node) error {
	log := n.log.With("component", "connector")
	mgr, err := OpenConnectors(n.ctx, log, n.reg, n.dataDir, n.cfg, n.conn)
	if err != nil {
		return err
	}
	n.connectors = mgr
	n.alerting.addSource(func(state string) []alert.Alert { return consentAlerts(n.ctx, mgr, state) })
	kv, err := n.conn.KV(n.ctx, connector.ConnectionsBucket, "")
	if err != nil {
		return err
	}
	if len(mgr.Providers()) == 0 {
		n.runLeader(leaderProc{name: "connector-alerts", run: func(ctx context.Context) error { return watchConnections(ctx, log, kv, n, nil) }})
		return nil
	}
	eng, err := connector.NewEngine(log, n.reg, connector.EngineOptions{
		Manager: mgr, Timing: timings(n.cfg), Ingest: ingestReadings(n.ingester),
		Record: func(r connector.RunRecord) {
			n.lake.ops.Add(lake.ZoneOps, "connector_runs", connectorRunColumns, connectorRunRow(r))
		},
	})
	if err != nil {
		return err
	}
	n.runLeader(leaderProc{name: "connectors", run: eng.Run})
	n.runLeader(leaderProc{name: "connector-alerts", run: func(ctx context.Context) error { return watchConnections(ctx, log, kv, n, eng) }})
	log.Info("wearable connectors scheduled", "providers", mgr.Providers())
	return nil
}

// OpenConnectors opens the wearable connections of a data directory over a dialled stream
// connection (serve, `pulselake connect`, `pulselake pull`). The secret store holding the
// tokens is opened on first use. reg may be nil.
func OpenConnectors(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, dataDir string, cfg *config.Config, conn *stream.Conn) (*connector.Manager, error) {
	providers, types, err := buildProviders(log, cfg)
	if err != nil {
		return nil, err
	}
	mo := connector.ManagerOptions{Providers: providers, DataTypes: types,
		Secrets: &connectorSecrets{log: log, reg: reg, dataDir: dataDir, conn: conn}}
	if err := connector.OpenBuckets(ctx, conn.KV, &mo); err != nil {
		return nil, err
	}
	return connector.NewManager(log, mo), nil
}

// NewConnectorEngine is the sync engine of `pulselake pull`: it stores through in and hands
// each data type's run to record (nil: none); RecordConnectorRuns writes them.
func NewConnectorEngine(log *slog.Logger, cfg *config.Config, mgr *connector.Manager, in *ingest.Ingester, record func(connector.RunRecord)) (*connector.Engine, error) {
	return connector.NewEngine(log, prometheus.NewRegistry(), connector.EngineOptions{Manager: mgr, Timing: timings(cfg), Ingest: ingestReadings(in), Record: record})
}

// RecordConnectorRuns appends runs to ops.connector_runs in one commit, as serve's scheduled
// pulls do.
func RecordConnectorRuns(ctx context.Context, st *lake.Store, runs []connector.RunRecord) error {
	if len(runs) == 0 {
		return nil
	}
	rows := make([][]any, len(runs))
	for i, r := range runs {
		rows[i] = connectorRunRow(r)
	}
	if err := st.AppendRows(ctx, lake.ZoneOps, "connector_runs", connectorRunColumns, rows); err != nil {
		return fmt.Errorf("recording the pull in ops.connector_runs: %w", err)
	}
	return nil
}

func timings(cfg *config.Config) map[string]connector.Timing {
	out := map[string]connector.Timing{}
	for _, name := range []string{config.GoogleHealth, config.Withings} {
		c, _ := cfg.Connectors.ByName(name)
		out[name] = connector.Timing{Every: c.Every.D(), InitialWindow: c.InitialWindow.D(), Lookback: c.Lookback.D(), MaxRetries: c.MaxRetries}
	}
	return out
}

// readSecretFile reads a client secret file: its first line, trimmed.
func readSecretFile(path, key string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s (connectors.%s.client_secret_file): %w", path, key, err)
	}
	s, _, _ := strings.Cut(string(b), "\n")
	if s = strings.TrimSpace(s); s == "" {
		return "", fmt.Errorf("%s (connectors.%s.client_secret_file) is empty: put the OAuth client secret in it", path, key)
	}
	return s, nil
}

// ingestReadings stores pulled readings through the ingest path like any other reading, in
// batches of at most ingest.max_batch, waiting when intake is busy.
func ingestReadings(in *ingest.Ingester) connector.Ingest {
	return func(ctx context.Context, source string, rs []json.RawMessage) error {
		maxBatch := in.Limits().MaxBatch
		for len(rs) > 0 {
			chunk := rs[:min(maxBatch, len(rs))]
			recs := make([]ingest.Record, len(chunk))
			for i, r := range chunk {
				recs[i] = ingest.Record{Raw: r, Origin: source}
			}
			if _, err := in.IngestWaiting(ctx, source, recs); err != nil {
				return err
			}
			rs = rs[len(chunk):]
		}
		return nil
	}
}

// connectorRunColumns are the columns of ops.connector_runs: one row per data type of a
// connection and pull.
var connectorRunColumns = []lake.Column{
	{Name: "time", Type: lake.Timestamp}, // when the pull of the data type ended
	{Name: "subject", Type: lake.String},
	{Name: "provider", Type: lake.String},
	{Name: "type", Type: lake.String},
	{Name: "window_start", Type: lake.Timestamp},
	{Name: "window_end", Type: lake.Timestamp}, // where it stopped (the start when nothing was stored)
	{Name: "points", Type: lake.Int64},
	{Name: "pages", Type: lake.Int64},
	{Name: "duration_ms", Type: lake.Int64},
	{Name: "error", Type: lake.String},
}

func connectorRunRow(r connector.RunRecord) []any {
	var errText any
	if r.Err != "" {
		errText = r.Err
	}
	return []any{time.Now().UTC(), r.Subject, r.Provider, r.DataType, r.WindowStart.UTC(), r.WindowEnd.UTC(),
		int64(r.Points), int64(r.Pages), r.Duration.Milliseconds(), errText}
}

// sourceConnector is the alert source of the connectors' alerts.
const sourceConnector = "connector"

// consentAlert is the alert of a connection needing consent.
func consentAlert(c connector.Connection) alert.Alert {
	at := c.StatusSince
	if at.IsZero() {
		at = c.Created
	}
	return alert.Alert{Rule: connector.AlertNeedsConsent, Source: sourceConnector, Subject: c.Subject, Device: c.Provider, State: alert.StateFiring, Severity: "warning",
		Labels: map[string]string{"alertname": connector.AlertNeedsConsent, "subject": c.Subject, "provider": c.Provider, "severity": "warning"},
		Annotations: map[string]string{"summary": fmt.Sprintf("%s stopped pulling %s: the grant was revoked or expired; reconnect with: pulselake connect %s --subject %s",
			c.Provider, c.Subject, c.Provider, c.Subject)},
		ActiveAt: at, FiredAt: at, LastEval: at, Cond: true}
}

// consentAlerts lists the connections needing consent as firing alerts (GET /v1/alerts).
func consentAlerts(ctx context.Context, mgr *connector.Manager, state string) []alert.Alert {
	if state != "" && state != alert.StateFiring {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	all, err := mgr.List(ctx)
	if err != nil {
		return nil
	}
	var out []alert.Alert
	for _, c := range all {
		if c.Status == connector.StatusNeedsConsent {
			out = append(out, consentAlert(c))
		}
	}
	return out
}

// watchConnections follows the connections, whoever changes them (serve's callback and
// pulls, `pulselake connect` and `pull`): a new one is pulled at once (eng.Wake); one that
// comes to need consent is notified through the notification pipeline (firing), and one
// reconnected or removed is notified resolved. Connections that need consent when serve
// starts are notified again; the notification log keeps repeats within repeat_interval from
// being sent.
func watchConnections(ctx context.Context, log *slog.Logger, kv jetstream.KeyValue, n *node, eng *connector.Engine) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watching connections: %w", err)
	}
	defer w.Stop()
	needs := map[string]connector.Connection{} // by key
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil
		case e = <-w.Updates():
		}
		if e == nil {
			continue // the end of the initial values
		}
		prev, was := needs[e.Key()]
		var c connector.Connection
		gone := e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &c) != nil
		now := !gone && c.Status == connector.StatusNeedsConsent
		if eng != nil && !gone && c.Status == connector.StatusOK && c.LastSync.IsZero() {
			eng.Wake(c.Provider)
		}
		switch {
		case now && !was:
			needs[e.Key()] = c
			a := consentAlert(c)
			n.notifyAlert(ctx, log, alert.StateInactive, a)
		case !now && was:
			delete(needs, e.Key())
			a := consentAlert(prev)
			a.State, a.ResolvedAt, a.Cond = alert.StateResolved, time.Now(), false
			n.notifyAlert(ctx, log, alert.StateFiring, a)
		}
	}
}

// notifyAlert hands a connector alert's transition to the alert outputs every source
// shares: the notification pipeline, the dashboard's events and ops.alerts.
func (n *node) notifyAlert(ctx context.Context, log *slog.Logger, from string, a alert.Alert) {
	ts := []alert.Transition{{From: from, Alert: a}}
	if err := n.alerting.outputs.Notify(ctx, alert.Notifications(ts)); err != nil {
		log.Warn("handing a connector alert to notification", "err", err)
	}
	if err := n.alerting.outputs.Record(ctx, ts); err != nil {
		log.Warn("recording a connector alert", "err", err)
	}
}

// connectorSecrets opens the secret store (OpenSecrets) on first use: a data directory with
// no connection needs no master key.
type connectorSecrets struct {
	log     *slog.Logger
	reg     prometheus.Registerer
	dataDir string
	conn    *stream.Conn
	mu      sync.Mutex
	store   *secret.Store
}

func (s *connectorSecrets) open(ctx context.Context) (*secret.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return s.store, nil
	}
	st, err := OpenSecrets(ctx, s.log, s.reg, s.dataDir, s.conn)
	if err != nil {
		return nil, err
	}
	s.store = st
	return st, nil
}

func (s *connectorSecrets) Get(ctx context.Context, name string) ([]byte, error) {
	st, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	return st.Get(ctx, name)
}

func (s *connectorSecrets) Put(ctx context.Context, name string, v []byte) error {
	st, err := s.open(ctx)
	if err != nil {
		return err
	}
	return st.Put(ctx, name, v)
}

func (s *connectorSecrets) Delete(ctx context.Context, name string) error {
	st, err := s.open(ctx)
	if err != nil {
		return err
	}
	return st.Delete(ctx, name)
}

// rawSecrets reaches the sealed values of the secret store's bucket without opening them:
// what erase needs (it counts and deletes, it never reads a token), so erase works without
// the master key.
type rawSecrets struct{ kv jetstream.KeyValue }

func (s rawSecrets) Get(ctx context.Context, name string) ([]byte, error) {
	e, err := s.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, secret.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

func (s rawSecrets) Put(context.Context, string, []byte) error {
	return errors.New("erase never writes secrets")
}

func (s rawSecrets) Delete(ctx context.Context, name string) error {
	if err := s.kv.Purge(ctx, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deleting secret %s: %w", name, err)
	}
	return nil
}

// eraseConnectors is the erase step of the connectors: the subject's OAuth tokens (secret
// store), sync cursors and connection metadata (KV).
func (e *eraser) connectors(ctx context.Context, subject string, dryRun bool) ([]EraseRow, error) {
	skv, err := e.conn.KV(ctx, secret.Bucket, "pulselake secrets (AES-256-GCM)")
	if err != nil {
		return nil, err
	}
	mo := connector.ManagerOptions{Secrets: rawSecrets{skv}}
	if err := connector.OpenBuckets(ctx, e.conn.KV, &mo); err != nil {
		return nil, err
	}
	m := connector.NewManager(e.log, mo)
	before, err := m.EraseSubject(ctx, subject, true)
	if err != nil {
		return nil, err
	}
	after := before
	if !dryRun {
		if _, err := m.EraseSubject(ctx, subject, false); err != nil {
			return nil, err
		}
		if after, err = m.EraseSubject(ctx, subject, true); err != nil {
			return nil, err
		}
	}
	return []EraseRow{
		{Place: "connector tokens (secret store " + secret.Bucket + ")", Before: int64(before.Tokens), After: int64(after.Tokens)},
		{Place: "connector cursors (KV " + connector.CursorsBucket + ")", Before: int64(before.Cursors), After: int64(after.Cursors)},
		{Place: "connector connections (KV " + connector.ConnectionsBucket + ")", Before: int64(before.Connections), After: int64(after.Connections)},
	}, nil
}

// ServeHTTPURL is the HTTP address of a serve running on the data directory, if one does.
func ServeHTTPURL(dataDir string) (string, bool) {
	data, err := os.ReadFile(filepath.Join(dataDir, serveInfoFile))
	if err != nil {
		return "", false
	}
	var info serveInfo
	if json.Unmarshal(data, &info) != nil || info.HTTP == "" {
		return "", false
	}
	unlock, err := lockDataDir(dataDir)
	if err == nil { // nobody holds the directory: the file is stale
		unlock()
		return "", false
	}
	return info.HTTP, true
}

// buildProviders makes the configured providers' clients, and the data types configured for
// each (none: all the provider offers).
func buildProviders(log *slog.Logger, cfg *config.Config) (map[string]connector.Provider, map[string][]string, error) {
	ps, types := map[string]connector.Provider{}, map[string][]string{}
	add := func(name, key string, make func(c config.Connector, secret string) (connector.Provider, error)) error {
		c, _ := cfg.Connectors.ByName(name)
		if !c.Enabled() {
			return nil
		}
		secret, err := readSecretFile(c.ClientSecretFile, key)
		if err != nil {
			return err
		}
		p, err := make(c, secret)
		if err != nil {
			return fmt.Errorf("connectors.%s: %w", key, err)
		}
		for _, t := range c.DataTypes {
			if !slices.Contains(p.DataTypes(), t) {
				return fmt.Errorf("connectors.%s.data_types: %s has no data type %q; it offers %s", key, name, t, strings.Join(p.DataTypes(), ", "))
			}
		}
		ps[name], types[name] = p, c.DataTypes
		return nil
	}
	err := add(config.GoogleHealth, "google_health", func(c config.Connector, secret string) (connector.Provider, error) {
		return googlehealth.New(googlehealth.Options{ClientID: c.ClientID, ClientSecret: secret, RedirectURL: c.RedirectURL,
			APIURL: c.APIURL, AuthURL: c.AuthURL, TokenURL: c.TokenURL, Logger: log.With("provider", config.GoogleHealth)})
	})
	if err != nil {
		return nil, nil, err
	}
	err = add(config.Withings, "withings", func(c config.Connector, secret string) (connector.Provider, error) {
		return withings.New(withings.Options{ClientID: c.ClientID, ClientSecret: secret, RedirectURL: c.RedirectURL,
			APIURL: c.APIURL, AuthURL: c.AuthURL, TokenURL: c.TokenURL, Logger: log.With("provider", config.Withings)})
	})
	if err != nil {
		return nil, nil, err
	}
	return ps, types, nil
}
