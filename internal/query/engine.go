// Package query runs read-only SQL over the lake with an embedded DuckDB. It is the only
// package that links DuckDB.
//
// Before each query the engine refreshes one DuckDB view per Iceberg table, named
// zone.table, over the data files of the table's current snapshot (read from the catalog, so
// it sees commits of a server running in another process); the schema search path is
// trusted, so an unqualified name means trusted.<name>. Files of an s3:// warehouse are
// fetched through iceberg-go's file IO into a local cache first (DuckDB's httpfs extension
// is not linked), keyed by path: Iceberg data files never change once written.
//
// Only single SELECT (or EXPLAIN) statements run; DuckDB's external access is limited to the
// lake and cache directories, so a query cannot read or write other files. Row and time
// limits apply per query. An Engine is safe for concurrent use.
package query

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/duckdb/duckdb-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/catalog"
	"github.com/pulselake/pulselake/internal/durable"
	"github.com/pulselake/pulselake/internal/lake"
)

// Defaults of Limits.
const (
	DefaultMaxRows = 10000
	DefaultTimeout = 30 * time.Second
)

// Options configures an Engine.
type Options struct {
	// Lake is the lake configuration; defaults are applied by Open.
	Lake lake.Config
	// DataDir is the --data directory.
	DataDir string
	// Store is an open store to use; nil opens one.
	Store *lake.Store
	// CacheDir holds local copies of S3 data files. Default <data>/cache/lake.
	CacheDir string
	// MemoryLimit caps DuckDB's memory, e.g. "2GB"; empty is DuckDB's default (80% of RAM).
	MemoryLimit string
}

// Limits bound one query.
type Limits struct {
	MaxRows int           // rows returned; more set Result.Truncated. 0 means DefaultMaxRows.
	Timeout time.Duration // 0 means DefaultTimeout
}

// Result is the outcome of a query.
type Result struct {
	Columns   []string `json:"columns"`
	Types     []string `json:"types"`
	Rows      [][]any  `json:"rows"`
	Truncated bool     `json:"truncated"`
	Elapsed   float64  `json:"elapsed_seconds"`
}

// Engine is DuckDB over the lake.
type Engine struct {
	log      *slog.Logger
	o        Options
	store    *lake.Store
	ownStore bool
	db       *sql.DB
	queries  *prometheus.CounterVec
	latency  prometheus.Histogram

	mu       sync.Mutex        // serialises view refreshes
	views    map[string]string // zone.table → metadata location (or external definition) of its view
	external map[string]bool   // folders of external tables DuckDB may read
	dbMu     sync.RWMutex      // queries hold it for reading; replacing db takes it for writing
	// fixed keeps the database for the engine's life (sessions hold a connection to it);
	// otherwise a newly crawled folder replaces the database.
	fixed bool
}

// ErrNotReadOnly is returned for statements other than a single SELECT or EXPLAIN.
var ErrNotReadOnly = errors.New("only a single read-only SELECT statement is allowed")

// ErrSyntax is returned for a query the SQL parser rejects.
var ErrSyntax = errors.New("syntax error")

// Open starts an in-memory DuckDB over the lake.
func Open(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, o Options) (*Engine, error) {
	o.Lake.ApplyDefaults(o.DataDir)
	if o.CacheDir == "" {
		o.CacheDir = filepath.Join(o.DataDir, "cache", "lake")
	}
	e := &Engine{log: log, o: o, store: o.Store, views: map[string]string{},
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_query_total",
			Help: "SQL queries by outcome (ok, error, rejected)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pulselake_query_seconds",
			Help: "SQL query latency.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(e.queries, e.latency)
	}
	if e.store == nil {
		st, err := lake.Open(ctx, log, o.Lake)
		if err != nil {
			return nil, err
		}
		e.store, e.ownStore = st, true
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		e.Close()
		return nil, fmt.Errorf("creating query cache: %w", err)
	}
	ext, err := catalog.List(o.DataDir)
	if err != nil {
		e.Close()
		return nil, err
	}
	if err := e.openDB(ctx, ext); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// openDB starts the in-memory DuckDB allowed to read the lake, the cache and the folders of
// the external tables ext. DuckDB's configuration is locked afterwards, so a newly crawled
// folder needs a new database (Refresh does that).
func (e *Engine) openDB(ctx context.Context, ext []catalog.Table) error {
	o := e.o
	allowed := []string{o.CacheDir}
	e.external = map[string]bool{}
	for _, x := range ext {
		allowed = append(allowed, x.Location)
		e.external[x.Location] = true
	}
	if u, err := url.Parse(o.Lake.Warehouse); err == nil && u.Scheme == "file" {
		allowed = append(allowed, u.Path)
	}
	for i, a := range allowed {
		if abs, err := filepath.Abs(a); err == nil {
			allowed[i] = abs
		}
	}
	// Every connection gets the zone schemas (idempotent) and the search path that makes an
	// unqualified name a trusted table.
	connector, err := duckdb.NewConnector("", func(ex driver.ExecerContext) error {
		for _, z := range lake.Zones {
			if _, err := ex.ExecContext(context.Background(), "CREATE SCHEMA IF NOT EXISTS "+ident(z), nil); err != nil {
				return err
			}
		}
		_, err := ex.ExecContext(context.Background(), "SET search_path = 'trusted,main'", nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("starting DuckDB: %w", err)
	}
	db := sql.OpenDB(connector)
	setup := []string{}
	if o.MemoryLimit != "" {
		setup = append(setup, "SET memory_limit = "+literal(o.MemoryLimit))
	}
	setup = append(setup, "SET TimeZone = 'UTC'")
	setup = append(setup, "SET allowed_directories = ["+joinLiterals(allowed)+"]",
		"SET enable_external_access = false", "SET autoinstall_known_extensions = false",
		"SET autoload_known_extensions = false", "SET lock_configuration = true")
	for _, s := range setup {
		if _, err := db.ExecContext(ctx, s); err != nil {
			if strings.HasPrefix(s, "SET TimeZone") {
				continue // without the ICU extension timestamps print in UTC anyway
			}
			db.Close()
			return fmt.Errorf("configuring DuckDB (%s): %w", s, err)
		}
	}
	e.dbMu.Lock()
	old := e.db
	e.db, e.views = db, map[string]string{}
	e.dbMu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Store returns the lake store the engine reads.
func (e *Engine) Store() *lake.Store { return e.store }

// Close releases DuckDB and the store when the engine opened it.
func (e *Engine) Close() error {
	if e.db != nil {
		e.db.Close()
	}
	if e.ownStore {
		return e.store.Close()
	}
	return nil
}

// Query runs one read-only statement.
func (e *Engine) Query(ctx context.Context, query string, lim Limits) (*Result, error) {
	start := time.Now()
	res, err := e.query(ctx, query, lim)
	switch {
	case errors.Is(err, ErrNotReadOnly):
		e.queries.WithLabelValues("rejected").Inc()
	case err != nil:
		e.queries.WithLabelValues("error").Inc()
	default:
		e.queries.WithLabelValues("ok").Inc()
		res.Elapsed = time.Since(start).Seconds()
	}
	e.latency.Observe(time.Since(start).Seconds())
	return res, err
}

func (e *Engine) query(ctx context.Context, query string, lim Limits) (*Result, error) {
	if lim.MaxRows <= 0 {
		lim.MaxRows = DefaultMaxRows
	}
	if lim.Timeout <= 0 {
		lim.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	if err := e.Refresh(ctx); err != nil {
		return nil, err
	}
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to DuckDB: %w", err)
	}
	defer conn.Close()
	if err := checkReadOnly(ctx, conn, query); err != nil {
		return nil, err
	}
	rows, err := conn.QueryContext(ctx, query)
	if err != nil {
		return nil, timeoutErr(ctx, lim, err)
	}
	defer rows.Close()
	cols, err := rows.ColumnTypes()
	if err != nil {
		return nil, fmt.Errorf("reading result columns: %w", err)
	}
	res := &Result{Rows: [][]any{}}
	for _, c := range cols {
		res.Columns = append(res.Columns, c.Name())
		res.Types = append(res.Types, c.DatabaseTypeName())
	}
	for rows.Next() {
		if len(res.Rows) == lim.MaxRows {
			res.Truncated = true
			break
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("reading result row: %w", err)
		}
		res.Rows = append(res.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, timeoutErr(ctx, lim, err)
	}
	return res, nil
}

func timeoutErr(ctx context.Context, lim Limits, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("query exceeded its time limit of %s: %w", lim.Timeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("running query: %w", err)
}

// checkReadOnly accepts only a single SELECT (optionally under EXPLAIN). DuckDB's own
// parser decides: json_serialize_sql serialises SELECT statements only and lists every
// statement of the text; the prepared statement's type is checked as well.
func checkReadOnly(ctx context.Context, conn *sql.Conn, query string) error {
	inner := strings.TrimSpace(query)
	if len(inner) > 8 && strings.EqualFold(inner[:8], "EXPLAIN ") {
		inner = inner[8:]
	}
	var js string
	if err := conn.QueryRowContext(ctx, "SELECT CAST(json_serialize_sql(CAST(? AS VARCHAR)) AS VARCHAR)", inner).Scan(&js); err != nil {
		return fmt.Errorf("parsing query: %w", err)
	}
	var parsed struct {
		Error      bool              `json:"error"`
		Type       string            `json:"error_type"`
		Message    string            `json:"error_message"`
		Statements []json.RawMessage `json:"statements"`
	}
	if err := json.Unmarshal([]byte(js), &parsed); err != nil {
		return fmt.Errorf("parsing query: %w", err)
	}
	switch {
	case parsed.Error && parsed.Type == "not implemented":
		return ErrNotReadOnly
	case parsed.Error:
		return fmt.Errorf("%w: %s", ErrSyntax, parsed.Message)
	case len(parsed.Statements) != 1:
		return fmt.Errorf("%w: found %d statements", ErrNotReadOnly, len(parsed.Statements))
	}
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*duckdb.Conn)
		if !ok {
			return fmt.Errorf("unexpected DuckDB connection %T", dc)
		}
		st, err := c.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("preparing query: %w", err)
		}
		defer st.Close()
		typ, err := st.(*duckdb.Stmt).StatementType()
		if err != nil {
			return fmt.Errorf("preparing query: %w", err)
		}
		if typ != duckdb.STATEMENT_TYPE_SELECT && typ != duckdb.STATEMENT_TYPE_EXPLAIN {
			return ErrNotReadOnly
		}
		return nil
	})
}

// Refresh brings every view up to date with the catalog's current snapshots and the
// crawler's external tables.
func (e *Engine) Refresh(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	start := time.Now()
	defer func() { e.log.Debug("refreshed lake views", "views", len(e.views), "took", time.Since(start)) }()
	ext, err := catalog.List(e.o.DataDir)
	if err != nil {
		return err
	}
	if !e.fixed {
		for _, x := range ext {
			if !e.external[x.Location] {
				e.log.Info("a crawled folder is new to the SQL engine; restarting it", "location", x.Location)
				if err := e.openDB(ctx, ext); err != nil {
					return err
				}
				break
			}
		}
	}
	seen := map[string]bool{}
	for _, z := range lake.Zones {
		names, err := e.store.TableNames(ctx, z)
		if err != nil {
			return err
		}
		for _, n := range names {
			key := z + "." + n
			seen[key] = true
			t, err := e.store.Load(ctx, z, n)
			if err != nil {
				return err
			}
			if e.views[key] == t.MetadataLocation() {
				continue
			}
			stmt, err := e.viewSQL(ctx, z, n, t)
			if err != nil {
				return err
			}
			if _, err := e.db.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("creating view %s: %w", key, err)
			}
			e.views[key] = t.MetadataLocation()
		}
	}
	for _, x := range ext {
		key := x.Zone + "." + x.Name
		if seen[key] {
			continue // an Iceberg table wins over a crawled one of the same name
		}
		seen[key] = true
		stmt := externalViewSQL(x)
		if e.views[key] == stmt {
			continue
		}
		if _, err := e.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("creating view %s over crawled files: %w", key, err)
		}
		e.views[key] = stmt
	}
	for key := range e.views {
		if !seen[key] {
			z, n, _ := strings.Cut(key, ".")
			if _, err := e.db.ExecContext(ctx, "DROP VIEW IF EXISTS "+ident(z)+"."+ident(n)); err != nil {
				return fmt.Errorf("dropping view %s: %w", key, err)
			}
			delete(e.views, key)
		}
	}
	return nil
}

func (e *Engine) viewSQL(ctx context.Context, zone, name string, t *table.Table) (string, error) {
	files, err := lake.DataFiles(ctx, t)
	if err != nil {
		return "", err
	}
	sc := t.Schema()
	var sel []string
	for _, f := range sc.Fields() {
		typ, err := duckType(f.Type)
		if err != nil {
			return "", fmt.Errorf("table %s.%s column %s: %w", zone, name, f.Name, err)
		}
		if len(files) == 0 {
			sel = append(sel, fmt.Sprintf("CAST(NULL AS %s) AS %s", typ, ident(f.Name)))
		} else {
			sel = append(sel, ident(f.Name))
		}
	}
	view := "CREATE OR REPLACE VIEW " + ident(zone) + "." + ident(name) + " AS SELECT " + strings.Join(sel, ", ")
	if len(files) == 0 {
		return view + " WHERE false", nil
	}
	local := make([]string, 0, len(files))
	for _, f := range files {
		p, err := e.localPath(ctx, f)
		if err != nil {
			return "", err
		}
		local = append(local, p)
	}
	return view + " FROM read_parquet([" + joinLiterals(local) + "], union_by_name = true, hive_partitioning = false)", nil
}

// localPath returns a path DuckDB can read for a data file location.
func (e *Engine) localPath(ctx context.Context, loc string) (string, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("parsing data file location %q: %w", loc, err)
	}
	if u.Scheme == "file" || u.Scheme == "" {
		return u.Path, nil
	}
	sum := sha256.Sum256([]byte(loc))
	dst := filepath.Join(e.o.CacheDir, hex.EncodeToString(sum[:12])+".parquet")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	fs, err := e.store.FS(ctx, loc)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", loc, err)
	}
	src, err := fs.Open(loc)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", loc, err)
	}
	defer src.Close()
	err = durable.Replace(dst, 0o600, func(w io.Writer) error {
		if _, err := io.Copy(w, src); err != nil {
			return fmt.Errorf("fetching %s: %w", loc, err)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("caching %s: %w", loc, err)
	}
	return dst, nil
}

func duckType(t iceberg.Type) (string, error) {
	switch t := t.(type) {
	case iceberg.StringType:
		return "VARCHAR", nil
	case iceberg.Float64Type:
		return "DOUBLE", nil
	case iceberg.Float32Type:
		return "FLOAT", nil
	case iceberg.Int64Type:
		return "BIGINT", nil
	case iceberg.Int32Type:
		return "INTEGER", nil
	case iceberg.BooleanType:
		return "BOOLEAN", nil
	case iceberg.TimestampTzType:
		return "TIMESTAMPTZ", nil
	case iceberg.TimestampType:
		return "TIMESTAMP", nil
	case iceberg.DateType:
		return "DATE", nil
	case iceberg.BinaryType:
		return "BLOB", nil
	case *iceberg.ListType:
		el, err := duckType(t.Element)
		if err != nil {
			return "", err
		}
		return el + "[]", nil
	}
	return "", fmt.Errorf("type %s has no DuckDB mapping", t)
}

func externalViewSQL(x catalog.Table) string {
	var from string
	glob := literal(x.Glob())
	hive := "false"
	if len(x.Partitions) > 0 {
		hive = "true"
	}
	switch x.Format {
	case catalog.FormatCSV:
		from = fmt.Sprintf("read_csv(%s, header = true, union_by_name = true, hive_partitioning = %s)", glob, hive)
	case catalog.FormatParquet:
		from = fmt.Sprintf("read_parquet(%s, union_by_name = true, hive_partitioning = %s)", glob, hive)
	default:
		from = fmt.Sprintf("read_json_auto(%s, format = 'newline_delimited', union_by_name = true, hive_partitioning = %s)", glob, hive)
	}
	return "CREATE OR REPLACE VIEW " + ident(x.Zone) + "." + ident(x.Name) + " AS SELECT * FROM " + from
}

func ident(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func joinLiterals(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = literal(s)
	}
	return strings.Join(out, ", ")
}
