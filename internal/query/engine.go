// Package query runs read-only SQL over the lake with an embedded DuckDB. It is the only
// package that links DuckDB.
//
// Before each query the engine refreshes one DuckDB view per Iceberg table, named
// zone.table, over the data files of the table's current snapshot (read from the catalog, so
// it sees commits of a server running in another process); the schema search path is
// trusted, so an unqualified name means trusted.<name>. Files of an s3:// warehouse are
// fetched through iceberg-go's file IO into a local cache first (DuckDB's httpfs extension
// is not linked), keyed by path: Iceberg data files never change once written. A table whose
// view cannot be built (a damaged data file, unreadable metadata) gets a view that fails
// with an error naming it; queries of other tables go on.
//
// Only single SELECT (or EXPLAIN) statements run, as DuckDB's parser decides; DuckDB's
// external access is limited to the lake and cache directories. A restricted caller (SQL over
// the HTTP API) reads registered tables only: the statement's syntax tree, from DuckDB's
// parser, may name no file, table function or engine internals. Every view filters on the
// connection variable pulselake_subject, so a subject-bound caller sees only its subject's
// rows whatever the SQL around the view does. DuckDB's memory, threads and spill files are
// bounded (Options.Config). Row and time limits apply per query. An Engine is safe for
// concurrent use.
package query

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/duckdb/duckdb-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/catalog"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/durable"
	"github.com/pulselake/pulselake/internal/lake"
)

// Defaults of Limits and Options.Config.
const (
	DefaultMaxRows = 10000
	DefaultTimeout = 30 * time.Second
	// DefaultTempDirMaxBytes caps the spill files of one engine.
	DefaultTempDirMaxBytes = 4 << 30
	// The default memory limit is a quarter of the machine's memory (as DuckDB sees it,
	// cgroup limits included), within these bounds: serve shares the machine with the stream
	// and the lake writer, and one query must not take it.
	minDefaultMemory = 256 << 20
	maxDefaultMemory = 4 << 30
)

// brokenRetry is how often a table whose view could not be built is tried again while its
// metadata does not change.
const brokenRetry = 10 * time.Second

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
	// Config bounds DuckDB: memory_limit, temp_dir_max_bytes and threads (zero values get
	// the defaults documented in docs/configuration.md). Spill files go to a folder of the
	// engine's own under <data>/cache/query-tmp, removed on Close.
	Config config.Query
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
	tmp      string // this engine's spill folder
	memLimit int64  // DuckDB's memory limit in bytes
	queries  *prometheus.CounterVec
	latency  prometheus.Histogram

	mu       sync.Mutex        // serialises view refreshes; guards the maps below
	views    map[string]string // zone.table → metadata location (or external definition) of its view
	tables   map[string]tableInfo
	files    map[string][]string // zone.table → the local data files its view reads
	broken   map[string]brokenView
	external map[string]bool          // folders of external tables DuckDB may read
	crawled  map[string]catalog.Table // zone.table → the registry entry its view reads
	previous string                   // the data directory's path before it was moved ("" if not)
	dbMu     sync.RWMutex             // queries hold it for reading; replacing db takes it for writing
	// fixed keeps the database for the engine's life (sessions hold a connection to it);
	// otherwise a newly crawled folder replaces the database.
	fixed bool
}

// brokenView is a table whose view could not be built.
type brokenView struct {
	loc string    // its metadata location then
	at  time.Time // when it was tried
	err error
}

// Open prepares an in-memory DuckDB over the lake; DuckDB starts on the first query or
// session.
func Open(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, o Options) (*Engine, error) {
	o.Lake = o.Lake.WithDefaults(o.DataDir)
	if o.CacheDir == "" {
		o.CacheDir = CacheDir(o.DataDir)
	}
	e := &Engine{log: log, o: o, store: o.Store, views: map[string]string{},
		tables: map[string]tableInfo{}, files: map[string][]string{}, broken: map[string]brokenView{},
		crawled: map[string]catalog.Table{},
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
	tmpRoot := filepath.Join(o.DataDir, "cache", "query-tmp")
	if err := os.MkdirAll(tmpRoot, 0o700); err != nil {
		e.Close()
		return nil, fmt.Errorf("creating the SQL engine's temp folder: %w", err)
	}
	removeDeadTemp(tmpRoot)
	tmp, err := os.MkdirTemp(tmpRoot, fmt.Sprintf("pid-%d-", os.Getpid()))
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("creating the SQL engine's temp folder: %w", err)
	}
	if e.tmp, err = filepath.Abs(tmp); err != nil {
		e.Close()
		return nil, fmt.Errorf("creating the SQL engine's temp folder: %w", err)
	}
	migrateRegistry(log, o.DataDir, e.store)
	e.previous = e.store.PreviousDataDir(o.DataDir)
	if _, err := catalog.List(o.DataDir); err != nil {
		e.Close()
		return nil, err
	}
	// DuckDB itself is started by the first query or session (Refresh): an idle serve, and
	// one busy importing, does not hold its memory.
	return e, nil
}

// migrateRegistry rewrites absolute locations of the crawler's registry that point into the
// data directory (or into the place it was moved from) as relative ones. A failure (a
// read-only copy) is logged: the tables at other places still read.
func migrateRegistry(log *slog.Logger, dataDir string, st *lake.Store) {
	n, err := catalog.Migrate(dataDir, st.PreviousDataDir(dataDir))
	switch {
	case err != nil:
		log.Warn("the crawled tables' registry could not be migrated to locations relative to the data directory", "err", err)
	case n > 0:
		log.Info("the crawled tables' registry now records locations relative to the data directory", "tables", n)
	}
}

// removeDeadTemp removes the spill folders of engines whose process is gone (killed before
// Close).
func removeDeadTemp(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, en := range entries {
		rest, ok := strings.CutPrefix(en.Name(), "pid-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(filepath.Join(root, en.Name()))
		}
	}
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
			if _, err := ex.ExecContext(context.Background(), "CREATE SCHEMA IF NOT EXISTS "+Ident(z), nil); err != nil {
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
	mem := o.Config.MemoryLimitBytes()
	if mem <= 0 {
		var def string
		if err := db.QueryRowContext(ctx, "SELECT current_setting('memory_limit')").Scan(&def); err != nil {
			db.Close()
			return fmt.Errorf("reading DuckDB's memory limit: %w", err)
		}
		n, err := config.ParseBytes(def)
		if err != nil {
			db.Close()
			return fmt.Errorf("reading DuckDB's memory limit %q: %w", def, err)
		}
		mem = min(max(n*10/8/4, minDefaultMemory), maxDefaultMemory) // DuckDB's default is 80% of memory
	}
	spill := o.Config.TempDirMaxBytes
	if spill <= 0 {
		spill = DefaultTempDirMaxBytes
	}
	setup := []string{
		fmt.Sprintf("SET memory_limit = '%dB'", mem),
		"SET temp_directory = " + Literal(e.tmp),
		fmt.Sprintf("SET max_temp_directory_size = '%dB'", spill),
	}
	if o.Config.Threads > 0 {
		setup = append(setup, fmt.Sprintf("SET threads = %d", o.Config.Threads))
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
	e.db, e.views, e.memLimit = db, map[string]string{}, mem
	e.dbMu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Store returns the lake store the engine reads.
func (e *Engine) Store() *lake.Store { return e.store }

// Close releases DuckDB, its spill folder and the store when the engine opened it.
func (e *Engine) Close() error {
	if e.db != nil {
		e.db.Close()
	}
	if e.tmp != "" {
		_ = os.RemoveAll(e.tmp)
	}
	if e.ownStore {
		return e.store.Close()
	}
	return nil
}

// Query runs one read-only statement as the owner of the data directory: every table,
// unfiltered, and files under the lake.
func (e *Engine) Query(ctx context.Context, query string, lim Limits) (*Result, error) {
	return e.QueryAs(ctx, query, lim, Caller{})
}

// QueryAs runs one read-only statement for a caller (see Caller).
func (e *Engine) QueryAs(ctx context.Context, query string, lim Limits, c Caller) (*Result, error) {
	start := time.Now()
	res, err := e.query(ctx, query, lim, c)
	switch {
	case errors.Is(err, ErrNotReadOnly), errors.Is(err, ErrForbidden):
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

// query runs one read-only statement for c within lim: the catalog is refreshed, the
// tables it reads are checked against what c may see, and the connection is bound to c's
// subject for the views to filter on.
func (e *Engine) query(ctx context.Context, query string, lim Limits, c Caller) (*Result, error) {
	lim = lim.withDefaults()
	if c.Subject != "" {
		c.Restricted = true
	}
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	if err := e.Refresh(ctx); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("query exceeded its time limit of %s while reading the catalog: %w", lim.Timeout, context.DeadlineExceeded)
		}
		return nil, fmt.Errorf("%w: %v; try again later", ErrUnavailable, err)
	}
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to DuckDB: %w", err)
	}
	defer conn.Close()
	refs, err := e.checkTables(ctx, conn, query, c)
	if err != nil {
		return nil, err
	}
	release, err := bindSubject(ctx, conn, c.Subject)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := checkType(ctx, conn, query); err != nil {
		if errors.Is(err, ErrNotReadOnly) {
			return nil, err
		}
		return nil, e.queryErr(ctx, lim, refs, err)
	}
	rows, err := conn.QueryContext(ctx, query)
	if err != nil {
		return nil, e.queryErr(ctx, lim, refs, err)
	}
	defer rows.Close()
	res, err := readRows(rows, lim.MaxRows)
	if err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, e.queryErr(ctx, lim, refs, err)
	}
	return res, nil
}

// withDefaults fills in the limits left zero.
func (lim Limits) withDefaults() Limits {
	if lim.MaxRows <= 0 {
		lim.MaxRows = DefaultMaxRows
	}
	if lim.Timeout <= 0 {
		lim.Timeout = DefaultTimeout
	}
	return lim
}

// checkTables parses query and returns the tables it reads, failing when c may not read
// one of them or one is broken.
func (e *Engine) checkTables(ctx context.Context, conn *sql.Conn, query string, c Caller) (*refs, error) {
	stmt, err := parse(ctx, conn, query)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	tables := make(map[string]tableInfo, len(e.tables))
	for k, v := range e.tables {
		tables[k] = v
	}
	e.mu.Unlock()
	refs, err := inspect(stmt, c, tables)
	if err != nil {
		return nil, err
	}
	for _, key := range refs.tables {
		if b := tables[key].broken; b != nil {
			return nil, &BrokenTableError{Table: key, Err: b}
		}
	}
	return refs, nil
}

// bindSubject sets the subject every view filters on: subject for a bound caller, cleared
// otherwise. Call release when the query is done: it clears a subject set, and drops from
// the pool a connection that cannot be cleared.
func bindSubject(ctx context.Context, conn *sql.Conn, subject string) (release func(), err error) {
	if subject == "" {
		if _, err := conn.ExecContext(ctx, "RESET VARIABLE "+subjectVar); err != nil {
			return nil, fmt.Errorf("preparing the connection: %w", err)
		}
		return func() {}, nil
	}
	if _, err := conn.ExecContext(ctx, "SET VARIABLE "+subjectVar+" = "+Literal(subject)); err != nil {
		return nil, fmt.Errorf("binding the query to its subject: %w", err)
	}
	return func() {
		if _, err := conn.ExecContext(context.Background(), "RESET VARIABLE "+subjectVar); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}, nil
}

// readRows reads the columns and up to maxRows rows of rows, marking the result truncated
// when there are more. The caller checks rows.Err.
func readRows(rows *sql.Rows, maxRows int) (*Result, error) {
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
		if len(res.Rows) == maxRows {
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
	return res, nil
}

// queryErr explains an error of a running query: the time limit, the memory limit, or a
// data file of a table it reads that turned out to be damaged (the table's view is rebuilt
// on the next refresh, which records it as broken).
func (e *Engine) queryErr(ctx context.Context, lim Limits, r *refs, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("query exceeded its time limit of %s: %w", lim.Timeout, context.DeadlineExceeded)
	}
	msg := err.Error()
	if strings.Contains(msg, "Out of Memory Error") || strings.Contains(msg, "max_temp_directory_size") {
		first, _, _ := strings.Cut(msg, "\n")
		return fmt.Errorf("%w (query.memory_limit %s, spill space query.temp_dir_max_bytes): aggregate or filter more, add LIMIT, or raise the limits: %s",
			ErrMemoryLimit, humanBytes(e.memLimit), first)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := driftErr(r, e.crawled, msg); err != nil {
		return err
	}
	for _, key := range r.tables {
		for _, f := range e.files[key] {
			if strings.Contains(msg, f) {
				delete(e.views, key)
				return &BrokenTableError{Table: key, Err: fmt.Errorf("data file %s: %w", f, err)}
			}
		}
	}
	return fmt.Errorf("running query: %w", err)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dB", n)
}

// Refresh brings every view up to date with the catalog's current snapshots and the
// crawler's external tables. A table whose view cannot be built gets a view that fails with
// an error naming it, and is recorded as broken; the others are unaffected.
func (e *Engine) Refresh(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	start := time.Now()
	defer func() { e.log.Debug("refreshed lake views", "views", len(e.views), "took", time.Since(start)) }()
	ext, err := catalog.List(e.o.DataDir)
	if err != nil {
		return err
	}
	ext = catalog.Moved(ext, e.o.DataDir, e.previous)
	if e.db == nil { // the first query or session starts DuckDB
		if err := e.openDB(ctx, ext); err != nil {
			return err
		}
	} else if !e.fixed {
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
			if err := e.refreshTable(ctx, z, n); err != nil {
				if ctx.Err() != nil {
					return err
				}
				e.markBroken(ctx, key, err)
			}
		}
	}
	for _, x := range ext {
		key := x.Zone + "." + x.Name
		if seen[key] {
			delete(e.crawled, key)
			continue // an Iceberg table wins over a crawled one of the same name
		}
		seen[key] = true
		subject := ""
		for _, c := range append(x.Columns, x.Partitions...) {
			if strings.EqualFold(c.Name, "subject") {
				subject = c.Name
			}
		}
		stmt := externalViewSQL(x) + viewFilter(subject)
		if e.views[key] == stmt {
			continue
		}
		if _, err := e.db.ExecContext(ctx, stmt); err != nil {
			if ctx.Err() != nil {
				return err
			}
			e.markBroken(ctx, key, fmt.Errorf("crawled files under %s: %w", x.Location, err))
			continue
		}
		e.views[key] = stmt
		e.tables[key] = tableInfo{subject: subject != ""}
		e.crawled[key] = x
		delete(e.broken, key)
	}
	for key := range e.tables {
		if !seen[key] {
			z, n, _ := strings.Cut(key, ".")
			if _, err := e.db.ExecContext(ctx, "DROP VIEW IF EXISTS "+Ident(z)+"."+Ident(n)); err != nil {
				return fmt.Errorf("dropping view %s: %w", key, err)
			}
			delete(e.views, key)
			delete(e.tables, key)
			delete(e.files, key)
			delete(e.broken, key)
			delete(e.crawled, key)
		}
	}
	return nil
}

// refreshTable brings the view of one Iceberg table up to date. e.mu is held.
func (e *Engine) refreshTable(ctx context.Context, zone, name string) error {
	key := zone + "." + name
	t, err := e.store.Load(ctx, zone, name)
	if err != nil {
		return fmt.Errorf("loading its metadata: %w", err)
	}
	loc := t.MetadataLocation()
	if e.views[key] == loc {
		return nil
	}
	if b, ok := e.broken[key]; ok && b.loc == loc && time.Since(b.at) < brokenRetry {
		return b.err
	}
	stmt, files, subject, err := e.viewSQL(ctx, zone, name, t)
	if err != nil {
		e.broken[key] = brokenView{loc: loc, at: time.Now(), err: err}
		return err
	}
	if _, err := e.db.ExecContext(ctx, stmt); err != nil {
		err = fmt.Errorf("reading its data files: %w", err)
		e.broken[key] = brokenView{loc: loc, at: time.Now(), err: err}
		return err
	}
	if _, was := e.broken[key]; was {
		e.log.Info("a table is readable again", "table", key)
	}
	delete(e.broken, key)
	e.views[key] = loc
	e.files[key] = files
	e.tables[key] = tableInfo{subject: subject}
	return nil
}

// markBroken replaces the view of a table that cannot be read with one that fails naming it
// (so pipeline sessions, which run their SQL directly, get that error too). e.mu is held.
func (e *Engine) markBroken(ctx context.Context, key string, err error) {
	info := e.tables[key]
	if info.broken == nil || info.broken.Error() != err.Error() {
		e.log.Error("a lake table cannot be read; queries of it fail until it is repaired, other tables are unaffected", "table", key, "err", err)
	}
	info.broken = err
	e.tables[key] = info
	delete(e.views, key)
	if _, ok := e.broken[key]; !ok {
		e.broken[key] = brokenView{at: time.Now(), err: err}
	}
	z, n, _ := strings.Cut(key, ".")
	msg := (&BrokenTableError{Table: key, Err: err}).Error()
	stmt := "CREATE OR REPLACE VIEW " + Ident(z) + "." + Ident(n) + " AS SELECT NULL AS unreadable FROM range(1) WHERE error(" + Literal(msg) + ")"
	if _, xerr := e.db.ExecContext(ctx, stmt); xerr != nil {
		e.log.Warn("replacing the view of an unreadable table", "table", key, "err", xerr)
		_, _ = e.db.ExecContext(ctx, "DROP VIEW IF EXISTS "+Ident(z)+"."+Ident(n))
	}
}

// viewFilter is the WHERE clause of every view: all rows while the connection's subject
// variable is unset, else only that subject's rows (none for a table without a subject
// column, which the checker refuses to such callers anyway).
func viewFilter(subjectCol string) string {
	if subjectCol == "" {
		return " WHERE getvariable('" + subjectVar + "') IS NULL"
	}
	return " WHERE getvariable('" + subjectVar + "') IS NULL OR " + Ident(subjectCol) + " = getvariable('" + subjectVar + "')"
}

// viewSQL is the statement creating the view of an Iceberg table, the local files it reads
// and whether the table has a subject column.
func (e *Engine) viewSQL(ctx context.Context, zone, name string, t *table.Table) (string, []string, bool, error) {
	files, err := lake.DataFiles(ctx, t)
	if err != nil {
		return "", nil, false, fmt.Errorf("listing its data files: %w", err)
	}
	sc := t.Schema()
	var sel []string
	subject := ""
	for _, f := range sc.Fields() {
		typ, err := duckType(f.Type)
		if err != nil {
			return "", nil, false, fmt.Errorf("table %s.%s column %s: %w", zone, name, f.Name, err)
		}
		if strings.EqualFold(f.Name, "subject") {
			subject = f.Name
		}
		if len(files) == 0 {
			sel = append(sel, fmt.Sprintf("CAST(NULL AS %s) AS %s", typ, Ident(f.Name)))
		} else {
			sel = append(sel, Ident(f.Name))
		}
	}
	view := "CREATE OR REPLACE VIEW " + Ident(zone) + "." + Ident(name) + " AS SELECT " + strings.Join(sel, ", ")
	if len(files) == 0 {
		return view + " WHERE false", nil, subject != "", nil
	}
	local := make([]string, 0, len(files))
	for _, f := range files {
		p, err := e.localPath(ctx, f)
		if err != nil {
			return "", nil, false, err
		}
		local = append(local, p)
	}
	return view + " FROM read_parquet([" + joinLiterals(local) + "], union_by_name = true, hive_partitioning = false)" + viewFilter(subject), local, subject != "", nil
}

// localPath returns a path DuckDB can read for a data file location.
func (e *Engine) localPath(ctx context.Context, loc string) (string, error) {
	name, remote, err := cacheName(loc)
	if err != nil {
		return "", err
	}
	if !remote {
		u, _ := url.Parse(loc)
		return u.Path, nil
	}
	dst := filepath.Join(e.o.CacheDir, name)
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

// typeStruct is a DuckDB struct literal {'name': 'TYPE', ...} of columns, as read_json's
// columns, read_csv's types and the hive_types options take it. Timestamps in text files are
// read as text and converted by the view (see timestampOf).
func typeStruct(cols []catalog.Column, text bool) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		typ := catalog.SQLType(c.Type)
		if text && c.Type == catalog.TypeTimestamp {
			typ = "VARCHAR"
		}
		parts[i] = Literal(c.Name) + ": " + Literal(typ)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// timestampOf converts timestamp text to a UTC TIMESTAMP. DuckDB's cast to TIMESTAMP drops
// a zone offset (10:00+02:00 would read as 10:00); the cast to TIMESTAMPTZ applies it, and
// text without an offset is UTC, as the crawler's docs say.
func timestampOf(col string) string {
	return "CAST(CAST(" + col + " AS TIMESTAMPTZ) AS TIMESTAMP)"
}

// externalViewSQL is the view of a crawled table. It reads the files with the columns and
// types the crawler recorded (as Athena reads a Glue table): DuckDB infers nothing, so a
// column is the same type in every zone and in `catalog list`, a key only newer files have
// is not seen until the table is crawled again, and a value that does not fit its recorded
// type fails the query (driftErr) instead of changing the column's type.
func externalViewSQL(x catalog.Table) string {
	glob := Literal(x.Glob())
	text := x.Format != catalog.FormatParquet
	hive := "hive_partitioning = false"
	if len(x.Partitions) > 0 {
		hive = "hive_partitioning = true, hive_types = " + typeStruct(x.Partitions, false) + ", hive_types_autocast = false"
	}
	sel := make([]string, 0, len(x.Columns)+len(x.Partitions))
	for _, c := range x.Columns {
		col := Ident(c.Name)
		switch {
		case c.Type == catalog.TypeTimestamp:
			sel = append(sel, timestampOf(col)+" AS "+col)
		case !text:
			// Parquet files carry their own types: convert them to the recorded ones.
			sel = append(sel, "CAST("+col+" AS "+catalog.SQLType(c.Type)+") AS "+col)
		default:
			sel = append(sel, col)
		}
	}
	for _, p := range x.Partitions {
		sel = append(sel, Ident(p.Name))
	}
	var from string
	switch x.Format {
	case catalog.FormatCSV:
		from = fmt.Sprintf("read_csv(%s, header = true, union_by_name = true, types = %s, %s)", glob, typeStruct(x.Columns, true), hive)
	case catalog.FormatParquet:
		from = fmt.Sprintf("read_parquet(%s, union_by_name = true, %s)", glob, hive)
	default:
		from = fmt.Sprintf("read_json(%s, format = 'newline_delimited', columns = %s, maximum_object_size = %d, %s)", glob, typeStruct(x.Columns, true), catalog.DefaultMaxLineBytes, hive)
	}
	return "CREATE OR REPLACE VIEW " + Ident(x.Zone) + "." + Ident(x.Name) + " AS SELECT " + strings.Join(sel, ", ") + " FROM " + from
}

// conversionErrors are the starts of DuckDB's messages for a value that does not convert to
// the type it is read as.
var conversionErrors = []string{"JSON transform error", "Conversion Error", "Could not convert", "CSV Error", "Invalid Input Error: Failed to cast"}

// driftErr explains a query error that comes from a crawled table's files holding values of
// another type than the catalog records (nil for other errors). msg is DuckDB's message.
func driftErr(r *refs, crawled map[string]catalog.Table, msg string) error {
	if !slices.ContainsFunc(conversionErrors, func(p string) bool { return strings.Contains(msg, p) }) {
		return nil
	}
	var candidates []catalog.Table
	for _, key := range r.tables {
		if x, ok := crawled[key]; ok {
			if strings.Contains(msg, x.Location+"/") {
				candidates = []catalog.Table{x}
				break
			}
			candidates = append(candidates, x)
		}
	}
	if len(candidates) != 1 {
		return nil
	}
	x := candidates[0]
	// DuckDB's advice (auto_detect, ignore_errors) is about its own reader options, which
	// the user does not control here.
	first, _, _ := strings.Cut(msg, "\n")
	return fmt.Errorf("%w: %s.%s (crawled %s) is read with the types the catalog recorded, and a file holds a value of another type: %s; "+
		"crawl it again to see the drift and record the new schema (pulselake catalog crawl --source %s --zone %s --table %s; add --sample-rows N when the value is past the rows a crawl samples of each file), or fix the file",
		ErrSchemaDrift, x.Zone, x.Name, x.CrawledAt, first, x.Location, x.Zone, x.Name)
}

func joinLiterals(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = Literal(s)
	}
	return strings.Join(out, ", ")
}
