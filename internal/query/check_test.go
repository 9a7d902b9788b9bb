package query

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/lake"
)

// lakeEngine is an engine over a lake with two subjects in trusted.heart_rate and
// ops.alerts and a table without a subject column (ops.runs).
func lakeEngine(t *testing.T, qc config.Query) *Engine {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	var lc lake.Config
	lc = lc.WithDefaults(dir)
	e, err := Open(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, Options{Lake: lc, DataDir: dir, Config: qc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s := testSession(t, e)
	for q, table := range map[string]string{
		"SELECT * FROM (VALUES ('p1', 61.0), ('p1', 62.0), ('p2', 71.0), ('p2', 72.0), ('p2', 73.0)) v(subject, bpm)": "trusted.heart_rate",
		"SELECT * FROM (VALUES ('p1', 'high'), ('p2', 'low')) v(subject, rule)":                                       "ops.alerts",
		"SELECT * FROM (VALUES (1, 'compact')) v(n, what)":                                                            "ops.runs",
	} {
		if err := s.Append(ctx, table, q); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// lakeFile is one Parquet data file of the lake.
func lakeFile(t *testing.T, e *Engine, table string) string {
	t.Helper()
	z, n, _ := strings.Cut(table, ".")
	files, _ := filepath.Glob(filepath.Join(e.o.DataDir, "lake", z, n, "data", "*.parquet"))
	if len(files) == 0 {
		files, _ = filepath.Glob(filepath.Join(e.o.DataDir, "lake", z+".db", n, "data", "*.parquet"))
	}
	if len(files) == 0 {
		var all []string
		filepath.Walk(e.o.DataDir, func(p string, _ os.FileInfo, _ error) error { all = append(all, p); return nil })
		t.Fatalf("no data file of %s among %v", table, all)
	}
	return files[0]
}

func TestRestrictedCallerReadsRegisteredTablesOnly(t *testing.T) {
	e := lakeEngine(t, config.Query{})
	file := lakeFile(t, e, "trusted.heart_rate")
	dir := filepath.Dir(file)
	api := Caller{Restricted: true}
	allowed := []string{
		"SELECT count(*) FROM heart_rate",
		"SELECT count(*) FROM trusted.heart_rate h JOIN ops.alerts a USING (subject)",
		"WITH a AS (SELECT * FROM trusted.heart_rate), b AS (SELECT * FROM a) SELECT count(*) FROM b",
		"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
		"SELECT * FROM range(3)",
		"SELECT table_schema, table_name FROM information_schema.tables",
		"DESCRIBE heart_rate",
		"EXPLAIN SELECT * FROM heart_rate",
		"SELECT (SELECT max(bpm) FROM heart_rate WHERE subject = h.subject) FROM heart_rate h",
	}
	for _, q := range allowed {
		if _, err := e.QueryAs(context.Background(), q, Limits{}, api); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
	refused := map[string]error{
		fmt.Sprintf("SELECT * FROM read_parquet('%s')", file):                                         ErrForbidden,
		fmt.Sprintf("SELECT * FROM read_parquet('%s/*.parquet')", dir):                                ErrForbidden,
		fmt.Sprintf("SELECT * FROM parquet_scan('%s')", file):                                         ErrForbidden,
		fmt.Sprintf("SELECT * FROM glob('%s/*')", dir):                                                ErrForbidden,
		fmt.Sprintf("SELECT * FROM read_csv('%s')", file):                                             ErrForbidden,
		fmt.Sprintf("SELECT * FROM read_csv_auto('%s')", file):                                        ErrForbidden,
		fmt.Sprintf("SELECT * FROM read_json_auto('%s')", file):                                       ErrForbidden,
		fmt.Sprintf("SELECT * FROM read_text('%s')", file):                                            ErrForbidden,
		fmt.Sprintf("SELECT * FROM read_blob('%s')", file):                                            ErrForbidden,
		fmt.Sprintf("SELECT * FROM parquet_metadata('%s')", file):                                     ErrForbidden,
		fmt.Sprintf("SELECT * FROM '%s'", file):                                                       ErrForbidden,
		fmt.Sprintf(`SELECT * FROM "%s"`, file):                                                       ErrForbidden,
		fmt.Sprintf("SELECT * FROM iceberg_scan('%s')", dir):                                          ErrForbidden,
		fmt.Sprintf("SELECT 1 WHERE 1 IN (SELECT 1 FROM read_parquet('%s'))", file):                   ErrForbidden,
		fmt.Sprintf("SELECT * FROM heart_rate UNION ALL SELECT * FROM read_parquet('%s')", file):      ErrForbidden,
		fmt.Sprintf("SELECT * FROM heart_rate, LATERAL (SELECT * FROM read_parquet('%s')) x", file):   ErrForbidden,
		fmt.Sprintf(`WITH "%s" AS (SELECT 1) SELECT * FROM "%s"`, file, file):                         ErrForbidden,
		fmt.Sprintf(`WITH x AS (SELECT * FROM "%s"), "%s" AS (SELECT 1) SELECT * FROM x`, file, file): ErrForbidden,
		fmt.Sprintf(`SELECT * FROM (WITH y AS (SELECT 1) SELECT * FROM y), "%s"`, file):               ErrForbidden,
		fmt.Sprintf("FROM query('SELECT * FROM read_parquet(''%s'')')", file):                         ErrForbidden,
		"FROM query_table('trusted.heart_rate')":                                                      ErrForbidden,
		"SELECT * FROM duckdb_views()":                                                                ErrForbidden,
		"SELECT * FROM duckdb_settings()":                                                             ErrForbidden,
		"SELECT * FROM duckdb_views":                                                                  ErrUnknownTable,
		"SELECT * FROM sqlite_master":                                                                 ErrUnknownTable,
		"SELECT * FROM information_schema.views":                                                      ErrForbidden,
		"SELECT * FROM pg_catalog.pg_views":                                                           ErrForbidden,
		"SELECT * FROM memory.trusted.heart_rate":                                                     ErrForbidden,
		"SELECT * FROM system.main.duckdb_views":                                                      ErrForbidden,
		"SELECT * FROM main.range(3)":                                                                 ErrForbidden,
		"SELECT * FROM heart_rate AT (VERSION => 1)":                                                  ErrForbidden,
		"SELECT * FROM trusted.heart_rate_unfiltered":                                                 ErrUnknownTable,
		"COPY (SELECT 1) TO '/tmp/x.csv'":                                                             ErrNotReadOnly,
		fmt.Sprintf("ATTACH '%s/x.db' AS x", dir):                                                     ErrNotReadOnly,
		"INSTALL httpfs":                        ErrNotReadOnly,
		"LOAD parquet":                          ErrNotReadOnly,
		"SET enable_external_access = true":     ErrNotReadOnly,
		"SET VARIABLE pulselake_subject = NULL": ErrNotReadOnly,
		"RESET VARIABLE pulselake_subject":      ErrNotReadOnly,
		"PRAGMA database_list":                  ErrNotReadOnly,
		"CREATE VIEW v AS SELECT 1":             ErrNotReadOnly,
		"CALL duckdb_views()":                   ErrNotReadOnly,
		"SELECT 1; SELECT 2":                    ErrNotReadOnly,
		"EXPORT DATABASE '/tmp/x'":              ErrNotReadOnly,
		"SELEC 1":                               ErrSyntax,
	}
	for q, want := range refused {
		_, err := e.QueryAs(context.Background(), q, Limits{}, api)
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", q, err, want)
		}
	}
	// The owner's local query keeps reading files under the lake.
	if _, err := e.Query(context.Background(), fmt.Sprintf("SELECT count(*) FROM read_parquet('%s')", file), Limits{}); err != nil {
		t.Errorf("owner reading a lake file: %v", err)
	}
}

func TestSubjectBoundCallerSeesOwnRowsOnly(t *testing.T) {
	ctx := context.Background()
	e := lakeEngine(t, config.Query{})
	p1 := Caller{Restricted: true, Subject: "p1"}
	cases := map[string]string{
		"SELECT count(*) FROM heart_rate":                                                        "2",
		"SELECT string_agg(DISTINCT subject, ',') FROM trusted.heart_rate":                       "p1",
		"SELECT count(*) FROM ops.alerts":                                                        "1",
		"SELECT count(*) FROM heart_rate WHERE subject = 'p2'":                                   "0",
		"SELECT count(*) FROM heart_rate WHERE subject <> 'p1' OR true":                          "2",
		"WITH h AS (SELECT * FROM heart_rate) SELECT count(*) FROM h":                            "2",
		"SELECT count(*) FROM (SELECT * FROM heart_rate UNION ALL SELECT * FROM heart_rate)":     "4",
		"SELECT (SELECT count(*) FROM trusted.heart_rate) + (SELECT count(*) FROM ops.alerts)":   "3",
		"SELECT count(*) FROM heart_rate a, heart_rate b":                                        "4",
		"SELECT count(*) FROM information_schema.tables WHERE table_name = 'heart_rate'":         "1",
		"SELECT getvariable('pulselake_subject')":                                                "p1",
		"SELECT max(bpm) FROM heart_rate":                                                        "62",
		"EXPLAIN SELECT count(*) FROM heart_rate WHERE subject = 'p2'":                           "",
		"SELECT count(*) FROM heart_rate h WHERE EXISTS (SELECT 1 FROM ops.alerts a WHERE true)": "2",
	}
	for q, want := range cases {
		res, err := e.QueryAs(ctx, q, Limits{}, p1)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		if want == "" {
			continue
		}
		if got := Text(res.Rows[0][0]); got != want {
			t.Errorf("%s: %s, want %s", q, got, want)
		}
	}
	for _, q := range []string{"SELECT * FROM ops.runs", "SELECT count(*) FROM heart_rate, ops.runs", "WITH r AS (SELECT * FROM ops.runs) SELECT 1"} {
		_, err := e.QueryAs(ctx, q, Limits{}, p1)
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "ops.runs") {
			t.Errorf("%s: %v, want forbidden naming ops.runs", q, err)
		}
	}
	// The binding does not stay on a pooled connection: unbound callers see every row after.
	for range 5 {
		if got := queryText(t, e, "SELECT count(*) FROM heart_rate"); got != "5" {
			t.Fatalf("unbound count after bound queries: %s", got)
		}
		if _, err := e.QueryAs(ctx, "SELECT count(*) FROM heart_rate", Limits{}, p1); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := e.QueryAs(ctx, "SELECT count(*) FROM heart_rate", Limits{}, Caller{Restricted: true}); err != nil || Text(res.Rows[0][0]) != "5" {
		t.Fatalf("unbound read token: %v %v", res, err)
	}
}

// TestDamagedTableFailsOnlyItself truncates a data file of one table: queries of other
// tables go on, queries of it fail naming it, and it is readable again once repaired.
func TestDamagedTableFailsOnlyItself(t *testing.T) {
	ctx := context.Background()
	e := lakeEngine(t, config.Query{})
	file := lakeFile(t, e, "trusted.heart_rate")
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	delete(e.views, "trusted.heart_rate") // as after a new snapshot: the view is built again
	for _, c := range []Caller{{}, {Restricted: true}, {Restricted: true, Subject: "p1"}} {
		if _, err := e.QueryAs(ctx, "SELECT count(*) FROM ops.alerts", Limits{}, c); err != nil {
			t.Fatalf("%+v: another table with one damaged: %v", c, err)
		}
		_, err := e.QueryAs(ctx, "SELECT count(*) FROM heart_rate", Limits{}, c)
		var broken *BrokenTableError
		if !errors.As(err, &broken) || broken.Table != "trusted.heart_rate" || !strings.Contains(err.Error(), "Restore") {
			t.Fatalf("%+v: damaged table: %v", c, err)
		}
	}
	// A pipeline session gets the same error from DuckDB.
	s := testSession(t, e)
	if _, _, err := s.Query(ctx, "SELECT count(*) FROM trusted.heart_rate"); err == nil || !strings.Contains(err.Error(), "trusted.heart_rate cannot be read") {
		t.Fatalf("session over the damaged table: %v", err)
	}
	if err := os.WriteFile(file, good, 0o644); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	delete(e.broken, "trusted.heart_rate") // skip the retry delay
	e.mu.Unlock()
	if got := queryText(t, e, "SELECT count(*) FROM heart_rate"); got != "5" {
		t.Fatalf("repaired table: %s", got)
	}
}

// TestDamagedFileFoundWhileQuerying damages a file after its view was built: the query's
// error names the table.
func TestDamagedFileFoundWhileQuerying(t *testing.T) {
	ctx := context.Background()
	e := lakeEngine(t, config.Query{})
	queryText(t, e, "SELECT count(*) FROM heart_rate")
	file := lakeFile(t, e, "trusted.heart_rate")
	if err := os.Truncate(file, 100); err != nil {
		t.Fatal(err)
	}
	_, err := e.QueryAs(ctx, "SELECT count(*) FROM heart_rate", Limits{}, Caller{Restricted: true})
	var broken *BrokenTableError
	if !errors.As(err, &broken) || broken.Table != "trusted.heart_rate" {
		t.Fatalf("query over a file damaged after the view was built: %v", err)
	}
	if got := queryText(t, e, "SELECT count(*) FROM ops.alerts"); got != "2" {
		t.Fatalf("other table: %s", got)
	}
}

// TestMemoryLimitFailsCleanly runs a query needing far more than the memory limit and
// spill cap: it fails with ErrMemoryLimit, spill files live under the data directory.
func TestMemoryLimitFailsCleanly(t *testing.T) {
	e := lakeEngine(t, config.Query{MemoryLimit: "128MiB", TempDirMaxBytes: 64 << 20, Threads: 1})
	var setting string
	e.db.QueryRow("SELECT current_setting('temp_directory')").Scan(&setting)
	if !strings.HasPrefix(setting, filepath.Join(e.o.DataDir, "cache", "query-tmp")) {
		t.Fatalf("temp_directory %q is not under the data directory", setting)
	}
	_, err := e.QueryAs(context.Background(), "SELECT count(*) FROM (SELECT DISTINCT repeat('x', 200) || i FROM range(5000000) r(i))", Limits{}, Caller{Restricted: true})
	if !errors.Is(err, ErrMemoryLimit) || !strings.Contains(err.Error(), "query.memory_limit 128MiB") {
		t.Fatalf("query over the memory limit: %v", err)
	}
	if code, name := statusOf(err); code != 422 || name != "memory-limit" {
		t.Fatalf("status %d %s", code, name)
	}
	tmp := e.tmp
	e.Close()
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("spill folder kept after Close: %v", err)
	}
}
