package query

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/iceberg-go"

	"github.com/pulselake/pulselake/internal/lake"
)

// MaxSessionRows bounds the rows Session.Query returns: it is meant for counts, checks and
// the few rows an assertion shows, not for moving tables.
const MaxSessionRows = 100000

// Session is a read-write SQL session over the lake for pipelines. It runs statements one at
// a time on one DuckDB connection of an Engine, so temporary tables and macros live until
// Close. Lake tables are the engine's views (zone.table at the current snapshot); Replace
// and Append write a query's result into an Iceberg table without passing rows through Go
// one by one: DuckDB writes the result as a Parquet file into a staging folder, which is read
// back as Arrow record batches and committed with iceberg-go (duckdb-go's own Arrow interface
// is compiled only with the duckdb_arrow build tag, which a plain go build does not set; the
// staged file costs one extra write of the result). A Session is not safe for
// concurrent use; several sessions of one engine may run at once.
type Session struct {
	e     *Engine
	own   bool // e was opened for this session
	conn  *sql.Conn
	stage string
	n     int
}

// NewSession opens a session on e. Close releases it.
func (e *Engine) NewSession(ctx context.Context) (*Session, error) {
	if err := e.Refresh(ctx); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(filepath.Join(e.o.CacheDir, "pipeline"))
	if err != nil {
		return nil, fmt.Errorf("staging folder: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating staging folder: %w", err)
	}
	removeStale(root, time.Now().Add(-staleStage))
	stage, err := os.MkdirTemp(root, "session-")
	if err != nil {
		return nil, fmt.Errorf("creating staging folder: %w", err)
	}
	e.mu.Lock()
	e.fixed = true // the session's connection must outlive any refresh
	e.mu.Unlock()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		os.RemoveAll(stage)
		return nil, fmt.Errorf("connecting to DuckDB: %w", err)
	}
	// Pipelines read every subject's rows (see viewFilter).
	if _, err := conn.ExecContext(ctx, "RESET VARIABLE "+subjectVar); err != nil {
		conn.Close()
		os.RemoveAll(stage)
		return nil, fmt.Errorf("preparing the session: %w", err)
	}
	return &Session{e: e, conn: conn, stage: stage}, nil
}

// OpenSession opens a session on an engine of its own, so that it sees the lake and the
// crawled tables as they are now (an engine allows DuckDB to read only the folders of
// tables registered when it opened). Close closes that engine; o.Store, if given, stays open.
func OpenSession(ctx context.Context, log *slog.Logger, o Options) (*Session, error) {
	e, err := Open(ctx, log, nil, o)
	if err != nil {
		return nil, err
	}
	e.fixed = true // the session's connection must outlive any refresh
	s, err := e.NewSession(ctx)
	if err != nil {
		e.Close()
		return nil, err
	}
	s.own = true
	return s, nil
}

// Close drops the session's temporary tables and staged files.
func (s *Session) Close() error {
	err := s.conn.Close()
	if rerr := os.RemoveAll(s.stage); err == nil {
		err = rerr
	}
	if s.own {
		if cerr := s.e.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Exec runs a statement that returns no rows.
func (s *Session) Exec(ctx context.Context, stmt string) error {
	if _, err := s.conn.ExecContext(ctx, stmt); err != nil {
		return err
	}
	return nil
}

// Query runs a statement and returns its columns and rows; more than MaxSessionRows rows is
// an error.
func (s *Session) Query(ctx context.Context, q string) ([]string, [][]any, error) {
	rows, err := s.conn.QueryContext(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	out := [][]any{}
	for rows.Next() {
		if len(out) == MaxSessionRows {
			return nil, nil, fmt.Errorf("query returned more than %d rows; aggregate or add LIMIT", MaxSessionRows)
		}
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		out = append(out, vals)
	}
	return cols, out, rows.Err()
}

// Exists reports whether the Iceberg table zone.table exists.
func (s *Session) Exists(ctx context.Context, name string) (bool, error) {
	zone, tbl, err := splitTable(name)
	if err != nil {
		return false, err
	}
	_, err = s.e.store.Load(ctx, zone, tbl)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, lake.ErrNoTable):
		return false, nil
	}
	return false, err
}

// Replace makes the rows of q the contents of the lake table zone.table in one Iceberg
// commit, creating it or changing its schema as needed. Later statements see the new rows.
func (s *Session) Replace(ctx context.Context, name, q string) error {
	return s.write(ctx, name, q, true)
}

// Append adds the rows of q to the lake table zone.table, creating it if needed.
func (s *Session) Append(ctx context.Context, name, q string) error {
	return s.write(ctx, name, q, false)
}

func (s *Session) write(ctx context.Context, name, q string, replace bool) error {
	zone, tbl, err := splitTable(name)
	if err != nil {
		return err
	}
	sel, err := s.storable(ctx, q)
	if err != nil {
		return err
	}
	s.n++
	path := filepath.Join(s.stage, fmt.Sprintf("%s.%s-%d.parquet", zone, tbl, s.n))
	defer os.Remove(path)
	if _, err := s.conn.ExecContext(ctx, "COPY ("+sel+") TO "+Literal(path)+" (FORMAT parquet, COMPRESSION zstd)"); err != nil {
		return fmt.Errorf("writing the result: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading the result back: %w", err)
	}
	defer f.Close()
	pr, err := file.NewParquetReader(f)
	if err != nil {
		return fmt.Errorf("reading the result back: %w", err)
	}
	defer pr.Close()
	fr, err := pqarrow.NewFileReader(pr, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
	if err != nil {
		return fmt.Errorf("reading the result back: %w", err)
	}
	rr, err := fr.GetRecordReader(ctx, nil, nil)
	if err != nil {
		return fmt.Errorf("reading the result back: %w", err)
	}
	defer rr.Release()
	props := iceberg.Properties{"pulselake.written-by": "pipeline"}
	if replace {
		_, err = s.e.store.Replace(ctx, zone, tbl, rr, props)
	} else {
		_, err = s.e.store.AppendRecords(ctx, zone, tbl, rr, props)
	}
	if err != nil {
		return err
	}
	return s.e.Refresh(ctx)
}

// storable wraps q in a SELECT that casts every column to a type lake tables hold (and the
// engine reads back): narrower integers widen, unsigned and 128-bit integers become BIGINT
// (an overflow is an error), decimals DOUBLE, timestamps microseconds, and text-like types
// (UUID, ENUM, JSON, TIME, INTERVAL) VARCHAR. Nested structs and maps are an error naming
// the column.
func (s *Session) storable(ctx context.Context, q string) (string, error) {
	_, rows, err := s.Query(ctx, "DESCRIBE SELECT * FROM ("+q+")")
	if err != nil {
		return "", err
	}
	if len(rows) == 0 {
		return "", errors.New("the result has no columns")
	}
	seen := map[string]bool{}
	sel := make([]string, 0, len(rows))
	for _, r := range rows {
		col, _ := r[0].(string)
		typ, _ := r[1].(string)
		low := strings.ToLower(col)
		if seen[low] {
			return "", fmt.Errorf("the result has two columns named %q; give one of them another name with AS", col)
		}
		seen[low] = true
		to, err := storableType(typ)
		if err != nil {
			return "", fmt.Errorf("column %s: %w", col, err)
		}
		if to == typ {
			sel = append(sel, Ident(col))
		} else {
			sel = append(sel, "CAST("+Ident(col)+" AS "+to+") AS "+Ident(col))
		}
	}
	return "SELECT " + strings.Join(sel, ", ") + " FROM (" + q + ")", nil
}

var arrayTypeRE = regexp.MustCompile(`^(.*)\[\d*\]$`)

func storableType(t string) (string, error) {
	if m := arrayTypeRE.FindStringSubmatch(t); m != nil {
		el, err := storableType(m[1])
		if err != nil {
			return "", err
		}
		if strings.HasSuffix(el, "]") {
			return "", fmt.Errorf("type %s: lists of lists cannot be stored; cast to VARCHAR", t)
		}
		return el + "[]", nil
	}
	switch {
	case slices.Contains([]string{"BOOLEAN", "INTEGER", "BIGINT", "FLOAT", "DOUBLE", "VARCHAR", "DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "BLOB"}, t):
		return t, nil
	case slices.Contains([]string{"TINYINT", "SMALLINT", "UTINYINT", "USMALLINT"}, t):
		return "INTEGER", nil
	case slices.Contains([]string{"UINTEGER", "UBIGINT", "HUGEINT", "UHUGEINT", "BIGNUM", "VARINT"}, t):
		return "BIGINT", nil
	case strings.HasPrefix(t, "DECIMAL"):
		return "DOUBLE", nil
	case slices.Contains([]string{"TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"}, t):
		return "TIMESTAMP", nil
	case slices.Contains([]string{"UUID", "JSON", "TIME", "TIME WITH TIME ZONE", "TIME_NS", "INTERVAL", "BIT"}, t), strings.HasPrefix(t, "ENUM("):
		return "VARCHAR", nil
	case t == `"NULL"` || t == "NULL":
		return "VARCHAR", nil
	}
	return "", fmt.Errorf("type %s cannot be stored in a lake table; select its parts as separate columns or CAST it to VARCHAR", t)
}

// splitTable checks a zone.table name.
func splitTable(name string) (zone, tbl string, err error) {
	zone, tbl, ok := strings.Cut(name, ".")
	if !ok || !slices.Contains(lake.Zones, zone) || tbl == "" || strings.ContainsAny(tbl, `."/\`) {
		return "", "", fmt.Errorf("table %q: want zone.table with zone one of %s", name, strings.Join(lake.Zones, ", "))
	}
	return zone, tbl, nil
}

// staleStage is the age after which the staging folder of a session that never closed (its
// process was killed) is removed.
const staleStage = 24 * time.Hour

func removeStale(root string, before time.Time) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, en := range entries {
		info, err := en.Info()
		if err == nil && strings.HasPrefix(en.Name(), "session-") && info.ModTime().Before(before) {
			_ = os.RemoveAll(filepath.Join(root, en.Name()))
		}
	}
}
