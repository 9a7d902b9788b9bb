package lake

// The Iceberg SQL catalog on PostgreSQL (lake.catalog.driver: postgres): the catalog that
// several serve processes share. Its state is one row per table in iceberg_tables holding
// the current metadata location; a commit is a conditional UPDATE of that row, so commits
// from any number of processes are serialised by PostgreSQL and a stale one fails as a
// commit conflict (table.ErrCommitFailed) instead of overwriting. Readers load the row on
// every query (internal/query refreshes its views from the catalog before each statement),
// so every node sees a new snapshot as soon as it is committed.
//
// The DSN may hold a password: it never appears in a log line, an error or `check config`
// output (redactDSN, dsnError); errors name the server as host:port/database.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

// Retries of a catalog call that failed for a passing reason (connection loss, server
// restarting, serialization failure): pgRetries attempts in all, the waits doubling from
// pgRetryBase with jitter, 3 to 6 s in all: long enough for a PostgreSQL restart or a
// failover of a managed server's endpoint to be ridden out by a query, short enough that a
// server that is down is reported while the caller still waits.
const (
	pgRetries   = 6
	pgRetryBase = 200 * time.Millisecond
)

// validateSQLCatalog checks the fields of a sql catalog.
func (c *Config) validateSQLCatalog(errs *yamlconf.Problems) {
	bad := func(path, format string, args ...any) { errs.Add("lake.catalog."+path, format, args...) }
	cc := c.Catalog
	switch cc.Driver {
	case "", DriverSQLite:
		if cc.DSN != "" || cc.DSNFile != "" {
			bad("dsn", "dsn and dsn_file are for driver postgres; the SQLite catalog is the file named by uri")
		}
	case DriverPostgres:
		if cc.URI != "" {
			bad("uri", "the PostgreSQL catalog is given by dsn (or dsn_file), not uri")
		}
		switch {
		case cc.DSN == "" && cc.DSNFile == "":
			bad("dsn", "required for driver postgres: postgres://user@host:5432/db (or dsn_file: a file holding it)")
		case cc.DSN != "" && cc.DSNFile != "":
			bad("dsn_file", "give dsn or dsn_file, not both")
		case cc.DSN != "":
			if _, err := parsePostgresDSN(cc.DSN); err != nil {
				bad("dsn", "%v", err)
			}
		default:
			if _, err := readDSNFile(cc.DSNFile); err != nil {
				bad("dsn_file", "%v", err)
			}
		}
		if cc.MaxConns < 0 || cc.MaxConns > 1000 {
			bad("max_conns", "%d is out of range: want 1 to 1000 (default %d)", cc.MaxConns, DefaultCatalogMaxConns)
		}
		if cc.ConnectTimeout < 0 {
			bad("connect_timeout", "must be > 0 (default %s)", DefaultCatalogConnectTimeout)
		}
		if cc.StatementTimeout < 0 || (cc.StatementTimeout > 0 && cc.StatementTimeout.D() < time.Second) {
			bad("statement_timeout", "%s is too short: a commit must fit; use at least 1s (default %s)", cc.StatementTimeout.D(), DefaultCatalogStatementTimeout)
		}
	default:
		bad("driver", "%q is not one of sqlite, postgres", cc.Driver)
	}
}

// readDSNFile reads a DSN kept in a file.
func readDSNFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the DSN file: %w", err)
	}
	dsn := strings.TrimSpace(string(b))
	if dsn == "" {
		return "", fmt.Errorf("the DSN file %s is empty; write the connection string in it (postgres://user:password@host:5432/db)", path)
	}
	if _, err := parsePostgresDSN(dsn); err != nil {
		return "", fmt.Errorf("the DSN file %s: %w", path, err)
	}
	return dsn, nil
}

// catalogDSN is the DSN of a postgres catalog, from dsn or dsn_file.
func (cc CatalogConfig) catalogDSN() (string, error) {
	if cc.DSNFile != "" {
		return readDSNFile(cc.DSNFile)
	}
	return cc.DSN, nil
}

// parsePostgresDSN parses a DSN the way the driver will (including PG* environment
// variables and the password file), returning an error free of the password.
func parsePostgresDSN(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The driver's message quotes the DSN with the password masked on a best-effort
		// basis, and a URL error quotes it whole: remove every password we can find.
		msg := err.Error()
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			msg = pe.Unwrap().Error()
		}
		return nil, fmt.Errorf("not a valid PostgreSQL connection string (%s); want postgres://user@host:5432/db?sslmode=... or host=... dbname=...", scrubPasswords(msg, dsn))
	}
	return cfg, nil
}

var (
	kvPassword = regexp.MustCompile(`password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
	// Everything from the user's colon to the last "@": a password typed without escaping
	// may hold "?", "#" or "/", which end a URL's user part; masking more than the password
	// (when a later part has an "@") is the safe mistake.
	urlPassword = regexp.MustCompile(`(?s)^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@?#:]*:(.*)@`)
)

// dsnPasswords returns every string of dsn that may be its password.
func dsnPasswords(dsn string) []string {
	var pws []string
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			pws = append(pws, pw, url.PathEscape(pw), url.QueryEscape(pw))
		}
	}
	if m := urlPassword.FindStringSubmatch(dsn); m != nil {
		pws = append(pws, m[1])
		if un, err := url.PathUnescape(m[1]); err == nil {
			pws = append(pws, un)
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		pws = append(pws, m[1], strings.Trim(m[1], "'"))
		if un, err := url.QueryUnescape(m[1]); err == nil {
			pws = append(pws, un)
		}
	}
	return pws
}

// scrubPasswords replaces every password of dsn found in msg.
func scrubPasswords(msg, dsn string) string {
	for _, pw := range dsnPasswords(dsn) {
		if pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}

// redactDSN returns dsn with its password masked, for showing.
func redactDSN(dsn string) string {
	return scrubPasswords(dsn, dsn)
}

// pgWhere names the catalog's server for messages: host:port/database, no user or password.
func pgWhere(cfg *pgx.ConnConfig) string {
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))) + "/" + cfg.Database
}

// openPostgresCatalog opens the SQL catalog on the PostgreSQL server of cfg, creating its
// tables when the database has none. props are the catalog's properties (warehouse, file
// IO).
func openPostgresCatalog(ctx context.Context, log *slog.Logger, cfg Config, props iceberg.Properties) (*pgCatalog, *sql.DB, error) {
	dsn, err := cfg.Catalog.catalogDSN()
	if err != nil {
		return nil, nil, fmt.Errorf("opening the PostgreSQL catalog: %w", err)
	}
	cc, err := parsePostgresDSN(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the PostgreSQL catalog: %w", err)
	}
	where := pgWhere(cc)
	if cc.ConnectTimeout == 0 || cc.ConnectTimeout > cfg.Catalog.ConnectTimeout.D() {
		cc.ConnectTimeout = cfg.Catalog.ConnectTimeout.D()
	}
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "pulselake"
	}
	ms := strconv.FormatInt(cfg.Catalog.StatementTimeout.D().Milliseconds(), 10)
	cc.RuntimeParams["statement_timeout"] = ms
	cc.RuntimeParams["lock_timeout"] = ms
	cc.RuntimeParams["idle_in_transaction_session_timeout"] = ms
	db := stdlib.OpenDB(*cc)
	db.SetMaxOpenConns(cfg.Catalog.MaxConns)
	db.SetMaxIdleConns(cfg.Catalog.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(30 * time.Minute) // follow a server's failover of its address

	c := &pgCatalog{log: log, where: where, props: props, db: db, loaded: map[string]*table.Table{}}
	// Several processes may open an empty database at once: creating the catalog's
	// tables then races in PostgreSQL's own catalog (a unique violation on pg_type, or
	// "type … already exists", duplicate_object 42710); the loser finds them on its retry.
	err = c.retry(ctx, "opening", func() error {
		if err := db.PingContext(ctx); err != nil {
			return err
		}
		inner, err := sqlcat.NewCatalog(cfg.Catalog.Name, db, sqlcat.Postgres, props)
		if err != nil {
			return err
		}
		c.Catalog = inner
		return nil
	}, func(err error) bool { return transientPG(err, true) || pgState(err, "23505", "42P07", "42710") })
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("opening the lake catalog: %w", c.wrap(err))
	}
	log.Info("lake catalog on PostgreSQL", "server", where, "max_conns", cfg.Catalog.MaxConns)
	return c, db, nil
}

// pgCatalog is iceberg-go's SQL catalog on PostgreSQL with retries of calls that failed
// for a passing reason and errors naming the server. Tables it loads or creates commit
// through it, so their commits get the same treatment.
type pgCatalog struct {
	*sqlcat.Catalog
	log   *slog.Logger
	where string
	props iceberg.Properties
	db    *sql.DB

	mu sync.Mutex
	// loaded is the last table loaded of each zone.name, returned again while the catalog
	// still names its metadata file: every query loads every table, and a metadata file read
	// from S3 costs a request where the catalog's row costs one indexed SELECT.
	loaded map[string]*table.Table
}

// transientPG reports whether err is a failure that a new attempt may not meet. With
// sent false, only failures before a statement reached the server count (and rolled-back
// serialization failures): a commit whose outcome is unknown must not be repeated blindly.
func transientPG(err error, sent bool) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ce *pgconn.ConnectError
	connecting := errors.As(err, &ce)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "40001" || pe.Code == "40P01": // serialization failure, deadlock: rolled back
			return true
		case pe.Code == "57P03" || pe.Code == "53300": // starting up; too many connections
			return connecting || sent
		case pe.Code == "57P01" || pe.Code == "57P02" || strings.HasPrefix(pe.Code, "08"):
			return connecting || sent // shutting down, crashed, connection failure
		default: // the server refused: a wrong password, a missing database, a bad statement
			return false
		}
	}
	if connecting || pgconn.SafeToRetry(err) || errors.Is(err, driver.ErrBadConn) {
		return true // nothing reached the server
	}
	if !sent {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, sql.ErrConnDone)
}

// pgState reports whether err carries one of the SQLSTATE codes.
func pgState(err error, codes ...string) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	for _, c := range codes {
		if pe.Code == c {
			return true
		}
	}
	return false
}

// retry runs fn until it succeeds, fails for a lasting reason (again false) or pgRetries
// attempts failed.
func (c *pgCatalog) retry(ctx context.Context, op string, fn func() error, again func(error) bool) error {
	var err error
	for attempt := range pgRetries {
		if err = fn(); err == nil || !again(err) || attempt == pgRetries-1 {
			return err
		}
		wait := pgRetryBase << attempt
		wait = wait/2 + rand.N(wait/2+1)
		c.log.Warn("the lake catalog database failed; retrying", "op", op, "server", c.where, "attempt", attempt+1, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, context.Cause(ctx))
		case <-t.C:
		}
	}
	return err
}

// wrap names the server in an error of the database; the catalog's own outcomes (no such
// table, commit conflict, ...) are returned as they are. Callers say what was being done.
func (c *pgCatalog) wrap(err error) error {
	if err == nil || errors.Is(err, catalog.ErrNoSuchTable) || errors.Is(err, catalog.ErrNoSuchNamespace) ||
		errors.Is(err, catalog.ErrTableAlreadyExists) || errors.Is(err, catalog.ErrNamespaceAlreadyExists) ||
		errors.Is(err, table.ErrCommitFailed) {
		return err
	}
	hint := ""
	if transientPG(err, true) {
		hint = "; check that the server is running and reachable from this machine"
	}
	return fmt.Errorf("PostgreSQL catalog %s: %w%s", c.where, err, hint)
}

// own makes a table of the inner catalog commit through c.
func (c *pgCatalog) own(t *table.Table) *table.Table {
	if t == nil {
		return nil
	}
	return table.New(t.Identifier(), t.Metadata(), t.MetadataLocation(), iceio.LoadFSFunc(c.props, t.MetadataLocation()), c)
}

// LoadTable loads a table, retrying passing failures. A table whose metadata location is
// the one loaded last is not read again (metadata files never change).
func (c *pgCatalog) LoadTable(ctx context.Context, id table.Identifier) (*table.Table, error) {
	key := strings.Join(id, ".")
	if loc, ok := c.currentLocation(ctx, id); ok {
		c.mu.Lock()
		t := c.loaded[key]
		c.mu.Unlock()
		if t != nil && t.MetadataLocation() == loc {
			return t, nil
		}
	}
	var t *table.Table
	err := c.retry(ctx, "loading a table", func() (err error) {
		t, err = c.Catalog.LoadTable(ctx, id)
		return err
	}, func(err error) bool { return transientPG(err, true) })
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		delete(c.loaded, key)
		return nil, c.wrap(err)
	}
	t = c.own(t)
	c.loaded[key] = t
	return t, nil
}

// currentLocation reads the metadata location the catalog holds for a table of a zone; ok
// is false when it cannot tell (a failure, a name the query does not cover), and the
// caller loads the table in full.
func (c *pgCatalog) currentLocation(ctx context.Context, id table.Identifier) (loc string, ok bool) {
	// Zones are one plain word: their key in iceberg_tables is the name itself.
	if len(id) != 2 || strings.Contains(id[0], ".") || strings.Contains(id[0], ":") {
		return "", false
	}
	var v sql.NullString
	err := c.db.QueryRowContext(ctx, `SELECT metadata_location FROM iceberg_tables
		WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3
		AND (iceberg_type = $4 OR iceberg_type IS NULL)`, c.Name(), id[0], id[1], sqlcat.TableType).Scan(&v)
	if err != nil || !v.Valid {
		return "", false
	}
	return v.String, true
}

// CreateTable creates a table, retrying failures that left nothing behind.
func (c *pgCatalog) CreateTable(ctx context.Context, id table.Identifier, sc *iceberg.Schema, opts ...catalog.CreateTableOpt) (*table.Table, error) {
	var t *table.Table
	err := c.retry(ctx, "creating a table", func() (err error) {
		t, err = c.Catalog.CreateTable(ctx, id, sc, opts...)
		return err
	}, func(err error) bool { return transientPG(err, false) })
	if err != nil {
		return nil, c.wrap(err)
	}
	return c.own(t), nil
}

// CommitTable commits to a table. Only failures that left the catalog unchanged are
// retried: a connection lost while the commit was in flight leaves its outcome unknown,
// and the caller (the lake writer, whose stream messages are redelivered and whose rows
// are de-duplicated) decides.
func (c *pgCatalog) CommitTable(ctx context.Context, id table.Identifier, reqs []table.Requirement, updates []table.Update) (table.Metadata, string, error) {
	var (
		meta table.Metadata
		loc  string
	)
	err := c.retry(ctx, "committing", func() (err error) {
		meta, loc, err = c.Catalog.CommitTable(ctx, id, reqs, updates)
		return err
	}, func(err error) bool { return transientPG(err, false) })
	if err != nil {
		return nil, "", c.wrap(err)
	}
	return meta, loc, nil
}

// ListTables lists a namespace's tables, retrying passing failures of the listing.
func (c *pgCatalog) ListTables(ctx context.Context, ns table.Identifier) iter.Seq2[table.Identifier, error] {
	return func(yield func(table.Identifier, error) bool) {
		var ids []table.Identifier
		err := c.retry(ctx, "listing tables", func() error {
			ids = ids[:0]
			for id, err := range c.Catalog.ListTables(ctx, ns) {
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return nil
		}, func(err error) bool { return transientPG(err, true) })
		if err != nil {
			yield(nil, c.wrap(err))
			return
		}
		for _, id := range ids {
			if !yield(id, nil) {
				return
			}
		}
	}
}

// CheckTableExists reports whether a table exists, retrying passing failures.
func (c *pgCatalog) CheckTableExists(ctx context.Context, id table.Identifier) (bool, error) {
	var ok bool
	err := c.retry(ctx, "looking up a table", func() (err error) {
		ok, err = c.Catalog.CheckTableExists(ctx, id)
		return err
	}, func(err error) bool { return transientPG(err, true) })
	return ok, c.wrap(err)
}

// CreateNamespace creates a namespace, retrying failures that left nothing behind.
func (c *pgCatalog) CreateNamespace(ctx context.Context, ns table.Identifier, props iceberg.Properties) error {
	err := c.retry(ctx, "creating a namespace", func() error {
		return c.Catalog.CreateNamespace(ctx, ns, props)
	}, func(err error) bool { return transientPG(err, false) })
	return c.wrap(err)
}

// ListNamespaces lists namespaces, retrying passing failures.
func (c *pgCatalog) ListNamespaces(ctx context.Context, parent table.Identifier) ([]table.Identifier, error) {
	var ids []table.Identifier
	err := c.retry(ctx, "listing namespaces", func() (err error) {
		ids, err = c.Catalog.ListNamespaces(ctx, parent)
		return err
	}, func(err error) bool { return transientPG(err, true) })
	return ids, c.wrap(err)
}

var _ catalog.Catalog = (*pgCatalog)(nil)
