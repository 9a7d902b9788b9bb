package query

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/iceberg-go"

	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/pipeline"
)

var _ pipeline.Session = (*Session)(nil)

func testEngine(t *testing.T) *Engine {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var lc lake.Config
	lc = lc.WithDefaults(dir)
	e, err := Open(context.Background(), log, nil, Options{Lake: lc, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func testSession(t *testing.T, e *Engine) *Session {
	t.Helper()
	s, err := e.NewSession(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rowsOf reads a table through the engine (a fresh connection), as text.
func rowsOf(t *testing.T, e *Engine, q string) string {
	t.Helper()
	res, err := e.Query(context.Background(), q, Limits{})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var b strings.Builder
	b.WriteString(strings.Join(res.Columns, ",") + "\n")
	for _, r := range res.Rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = fmt.Sprint(v)
		}
		b.WriteString(strings.Join(cells, ",") + "\n")
	}
	return b.String()
}

func TestSessionReplaceTypesAndSchemaChange(t *testing.T) {
	ctx := context.Background()
	e := testEngine(t)
	s := testSession(t, e)
	ok, err := s.Exists(ctx, "curated.t")
	if err != nil || ok {
		t.Fatalf("exists before create: %v %v", ok, err)
	}
	q := `SELECT i::TINYINT AS small, i::HUGEINT * 10 AS big, i / 4 AS ratio, (i * 1.5)::DECIMAL(10,2) AS dec,
		'v' || i AS txt, DATE '2026-11-01' + i::INTEGER AS day, epoch_ms(1700000000000 + i) AS ts, [i, i + 1]::DOUBLE[] AS list,
		i % 2 = 0 AS even, CASE WHEN i = 2 THEN NULL ELSE i END AS maybe
		FROM range(3) r(i)`
	if err := s.Replace(ctx, "curated.t", q); err != nil {
		t.Fatal(err)
	}
	got := rowsOf(t, e, "SELECT * FROM curated.t ORDER BY small")
	want := "small,big,ratio,dec,txt,day,ts,list,even,maybe\n" +
		"0,0,0,0,v0,2026-11-01 00:00:00 +0000 UTC,2023-11-14 22:13:20 +0000 UTC,[0 1],true,0\n" +
		"1,10,0.25,1.5,v1,2026-11-02 00:00:00 +0000 UTC,2023-11-14 22:13:20.001 +0000 UTC,[1 2],false,1\n" +
		"2,20,0.5,3,v2,2026-11-03 00:00:00 +0000 UTC,2023-11-14 22:13:20.002 +0000 UTC,[2 3],true,<nil>\n"
	if got != want {
		t.Fatalf("after first replace:\n%s\nwant\n%s", got, want)
	}
	// The session sees its own write at once, through the same view names.
	if _, rows, err := s.Query(ctx, "SELECT count(*) FROM curated.t"); err != nil || rows[0][0] != int64(3) {
		t.Fatalf("session count: %v %v", rows, err)
	}
	// A new shape: a column dropped, one retyped, one added, order changed.
	if err := s.Replace(ctx, "curated.t", "SELECT 'x' || i AS small, i AS added, i::BIGINT AS big FROM range(2) r(i)"); err != nil {
		t.Fatal(err)
	}
	if got, want := rowsOf(t, e, "SELECT * FROM curated.t ORDER BY small"), "small,added,big\nx0,0,0\nx1,1,1\n"; got != want {
		t.Fatalf("after schema change:\n%s\nwant\n%s", got, want)
	}
	// Empty results replace too.
	if err := s.Replace(ctx, "curated.t", "SELECT 'x' AS small, 1 AS added, 2::BIGINT AS big WHERE false"); err != nil {
		t.Fatal(err)
	}
	if got := rowsOf(t, e, "SELECT count(*) AS n FROM curated.t"); got != "n\n0\n" {
		t.Fatalf("after empty replace: %s", got)
	}
	if ok, err := s.Exists(ctx, "curated.t"); err != nil || !ok {
		t.Fatalf("exists after create: %v %v", ok, err)
	}
}

func TestSessionAppendAndErrors(t *testing.T) {
	ctx := context.Background()
	e := testEngine(t)
	s := testSession(t, e)
	for i := range 3 {
		if err := s.Append(ctx, "ops.log", fmt.Sprintf("SELECT %d AS n, 'run' AS what", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(ctx, "ops.log", "SELECT 9 AS n, 'more' AS what, true AS extra"); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, "ops.log", "SELECT 'less' AS what, 10 AS n"); err != nil { // a subset, another order
		t.Fatal(err)
	}
	if got, want := rowsOf(t, e, "SELECT * FROM ops.log ORDER BY n"), "n,what,extra\n0,run,<nil>\n1,run,<nil>\n2,run,<nil>\n9,more,true\n10,less,<nil>\n"; got != want {
		t.Fatalf("appended:\n%s\nwant\n%s", got, want)
	}
	cases := map[string]struct{ table, q, want string }{
		"struct":     {"curated.x", "SELECT {'a': 1} AS s", "column s: type STRUCT"},
		"bad zone":   {"nowhere.x", "SELECT 1 AS a", "want zone.table"},
		"sql error":  {"curated.x", "SELECT nope FROM range(1)", "nope"},
		"append mix": {"ops.log", "SELECT 'text' AS n", "column n is"},
		"overflow":   {"curated.x", "SELECT 170141183460469231731687303715884105727::HUGEINT AS h", "out of range"},
	}
	for name, c := range cases {
		err := s.Append(ctx, c.table, c.q)
		if c.table != "ops.log" {
			err = s.Replace(ctx, c.table, c.q)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", name, err, c.want)
		}
	}
	if ok, _ := s.Exists(ctx, "curated.x"); ok {
		t.Fatal("a failed write created its table")
	}
}

func TestSessionRemovesStaleStaging(t *testing.T) {
	e := testEngine(t)
	root := filepath.Join(e.o.CacheDir, "pipeline")
	old, recent := filepath.Join(root, "session-old"), filepath.Join(root, "session-recent")
	for _, d := range []string{old, recent} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * staleStage)
	if err := os.Chtimes(old, long, long); err != nil {
		t.Fatal(err)
	}
	s := testSession(t, e)
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("stale staging folder kept: %v", err)
	}
	if _, err := os.Stat(recent); err != nil {
		t.Fatalf("another session's staging folder removed: %v", err)
	}
	s.Close()
	if _, err := os.Stat(s.stage); !os.IsNotExist(err) {
		t.Fatalf("own staging folder kept after Close: %v", err)
	}
}

func TestSessionRefusesStreamTables(t *testing.T) {
	ctx := context.Background()
	e := testEngine(t)
	s := testSession(t, e)
	if err := s.Append(ctx, "trusted.heart_rate", "SELECT 'p1' AS subject, 60.0 AS bpm"); err != nil {
		t.Fatal(err)
	}
	// Mark the table as the lake writer does when it commits readings from the stream.
	tbl, err := e.Store().Load(ctx, "trusted", "heart_rate")
	if err != nil {
		t.Fatal(err)
	}
	tx := tbl.NewTransaction()
	if err := tx.SetProperties(iceberg.Properties{lake.PropStreamSeq: "42"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, write := range []func(context.Context, string, string) error{s.Replace, s.Append} {
		err := write(ctx, "trusted.heart_rate", "SELECT 'p2' AS subject, 70.0 AS bpm")
		if err == nil || !strings.Contains(err.Error(), "the lake writer fills this table") {
			t.Fatalf("write to a stream table: %v", err)
		}
	}
	if got := rowsOf(t, e, "SELECT subject FROM trusted.heart_rate"); got != "subject\np1\n" {
		t.Fatalf("stream table changed: %s", got)
	}
}
