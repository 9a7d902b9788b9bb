package query

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/duckdb/duckdb-go/v2"
)

// FuzzInspect runs arbitrary SQL through the checker as a subject-bound API caller, on a
// DuckDB whose external access is fully off and whose zone views (built as the engine
// builds them, with the subject filter) sit over in-memory tables of a hidden schema. A
// statement the checker accepts must run without touching a file and without returning a
// value of the other subject (every value of theirs carries the marker "SECRET").
func FuzzInspect(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM heart_rate",
		"SELECT count(*) FROM trusted.heart_rate h JOIN ops.alerts a USING (subject)",
		"WITH a AS (SELECT * FROM heart_rate) SELECT * FROM a",
		"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
		"SELECT * FROM hidden.hr",
		"SELECT * FROM read_parquet('/etc/passwd')",
		"SELECT * FROM '/etc/passwd'",
		`WITH "/etc/passwd" AS (SELECT 1) SELECT * FROM "/etc/passwd"`,
		`WITH x AS (SELECT * FROM "/etc/hosts"), "/etc/hosts" AS (SELECT 1) SELECT * FROM x`,
		"SELECT * FROM heart_rate, (SELECT * FROM glob('/*'))",
		"FROM query('SELECT * FROM hidden.hr')",
		"SELECT * FROM memory.hidden.hr",
		"SELECT string_agg(subject || value, ',') FROM heart_rate",
		"SELECT * FROM information_schema.tables",
		"DESCRIBE heart_rate",
		"SELECT (SELECT max(value) FROM heart_rate) FROM range(2)",
		"PIVOT heart_rate ON subject USING max(value)",
		"SELECT * FROM (PIVOT heart_rate ON subject USING max(value))",
		"SELECT * FROM heart_rate WHERE CAST(value AS INTEGER) = 1",
	} {
		f.Add(s)
	}
	ctx := context.Background()
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		f.Fatal(err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, s := range []string{
		"CREATE SCHEMA hidden", "CREATE SCHEMA trusted", "CREATE SCHEMA ops",
		"CREATE TABLE hidden.hr AS SELECT * FROM (VALUES ('p1', 'v1'), ('p2', 'SECRET-1'), ('SECRET-p3', 'SECRET-2')) t(subject, value)",
		"CREATE TABLE hidden.al AS SELECT * FROM (VALUES ('p1', 'a1'), ('p2', 'SECRET-a')) t(subject, rule)",
		"CREATE VIEW trusted.heart_rate AS SELECT * FROM hidden.hr" + viewFilter("subject"),
		"CREATE VIEW ops.alerts AS SELECT * FROM hidden.al" + viewFilter("subject"),
		"CREATE VIEW ops.runs AS SELECT 'SECRET-run' AS what" + viewFilter(""),
		"SET search_path = 'trusted,main'",
		"SET enable_external_access = false", "SET autoinstall_known_extensions = false",
		"SET autoload_known_extensions = false", "SET lock_configuration = true",
	} {
		if _, err := db.Exec(s); err != nil {
			f.Fatalf("%s: %v", s, err)
		}
	}
	tables := map[string]tableInfo{"trusted.heart_rate": {subject: true}, "ops.alerts": {subject: true}, "ops.runs": {}}
	caller := Caller{Restricted: true, Subject: "p1"}
	f.Fuzz(func(t *testing.T, q string) {
		if len(q) > 2000 {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stmt, err := parse(ctx, conn, q)
		if err != nil {
			return
		}
		if _, err := inspect(stmt, caller, tables); err != nil {
			if !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrUnknownTable) {
				t.Fatalf("%q: unexpected checker error %v", q, err)
			}
			return
		}
		if err := checkType(ctx, conn, q); err != nil {
			return
		}
		if _, err := conn.ExecContext(ctx, "SET VARIABLE "+subjectVar+" = 'p1'"); err != nil {
			t.Fatal(err)
		}
		defer conn.ExecContext(context.Background(), "RESET VARIABLE "+subjectVar)
		rows, err := conn.QueryContext(ctx, q)
		if err != nil {
			if m := err.Error(); strings.Contains(m, "SECRET") || strings.Contains(m, "Permission Error") || strings.Contains(m, "disabled by configuration") {
				t.Fatalf("%q was accepted and then: %v", q, err)
			}
			return
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		for n := 0; rows.Next() && n < 1000; n++ {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return
			}
			for _, v := range vals {
				if strings.Contains(Text(v), "SECRET") {
					t.Fatalf("%q returned another subject's value %v", q, v)
				}
			}
		}
		if err := rows.Err(); err != nil && (strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "Permission Error")) {
			t.Fatalf("%q was accepted and then: %v", q, err)
		}
	})
}
