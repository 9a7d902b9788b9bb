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

	"github.com/pulselake/pulselake/internal/catalog"
	"github.com/pulselake/pulselake/internal/lake"
)

// crawledEngine crawls each source into dataDir, then opens an engine over dataDir (the
// engine allows DuckDB to read the folders registered when it opens).
func crawledEngine(t *testing.T, dataDir string, crawls ...catalog.Options) *Engine {
	t.Helper()
	for _, o := range crawls {
		if _, err := catalog.Crawl(context.Background(), dataDir, o); err != nil {
			t.Fatal(err)
		}
	}
	var lc lake.Config
	lc = lc.WithDefaults(dataDir)
	e, err := Open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil, Options{Lake: lc, DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// queryText runs q and renders the rows as "a|b" lines.
func queryText(t *testing.T, e *Engine, q string) string {
	t.Helper()
	res, err := e.Query(context.Background(), q, Limits{})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var lines []string
	for _, r := range res.Rows {
		cells := make([]string, len(r))
		for i, v := range r {
			if v == nil {
				cells[i] = "NULL"
			} else {
				cells[i] = fmt.Sprint(v)
			}
		}
		lines = append(lines, strings.Join(cells, "|"))
	}
	return strings.Join(lines, "\n")
}

func TestCrawledJSONQueryable(t *testing.T) {
	data, src := t.TempDir(), t.TempDir()
	writeFile(t, src, "source=watch/day=2026-11-01/a.jsonl", `{"device":"hr-1","bpm":61}
{"device":"hr-2","bpm":72}
`)
	writeFile(t, src, "source=watch/day=2026-11-02/a.jsonl", `{"device":"hr-1","bpm":64}`+"\n")
	// written later: a new column spo2, absent from the older files
	writeFile(t, src, "source=ring/day=2026-11-02/b.ndjson", `{"device":"ring-1","bpm":58,"spo2":97}
{"device":"ring-1","bpm":59,"spo2":96}
{"device":"ring-1","bpm":60,"spo2":null}
`)
	e := crawledEngine(t, data, catalog.Options{Source: src, Zone: "landing", Name: "vitals"})
	reg, err := catalog.Get(data, "landing", "vitals")
	if err != nil || reg == nil {
		t.Fatal(reg, err)
	}

	got := queryText(t, e, `SELECT source, CAST(day AS VARCHAR), count(*) FROM landing.vitals GROUP BY ALL ORDER BY 1, 2`)
	want := "ring|2026-11-02|3\nwatch|2026-11-01|2\nwatch|2026-11-02|1"
	if got != want {
		t.Fatalf("count per partition:\n%s\nwant\n%s", got, want)
	}
	if got := queryText(t, e, `SELECT count(*) FROM landing.vitals`); got != fmt.Sprint(reg.Rows) {
		t.Fatalf("SQL count %s, crawler counted %d", got, reg.Rows)
	}
	// the column added later is NULL in the rows of the older files
	got = queryText(t, e, `SELECT source, count(spo2), count(*) - count(spo2) FROM landing.vitals GROUP BY source ORDER BY source`)
	if want := "ring|2|1\nwatch|0|3"; got != want {
		t.Fatalf("spo2 presence:\n%s\nwant\n%s", got, want)
	}
	// partition columns have the types the crawler registered
	res, err := e.Query(context.Background(), `SELECT day, source FROM landing.vitals LIMIT 1`, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Types[0] != "DATE" || res.Types[1] != "VARCHAR" {
		t.Fatalf("partition types %v; registry says %+v", res.Types, reg.Partitions)
	}
}

func TestCrawledCSVAndParquetQueryable(t *testing.T) {
	data, csvSrc := t.TempDir(), t.TempDir()
	writeFile(t, csvSrc, "site=1/a.csv", "subject,systolic,note\np1,120,\"seated, calm\"\np2,135,\n")
	writeFile(t, csvSrc, "site=2/b.csv", "subject,systolic,note,arm\np3,128,x,left\n")
	e := crawledEngine(t, data, catalog.Options{Source: csvSrc, Zone: "curated", Name: "bp"})
	got := queryText(t, e, `SELECT site, count(*), sum(systolic), count(arm) FROM curated.bp GROUP BY site ORDER BY site`)
	if want := "1|2|255|0\n2|1|128|1"; got != want {
		t.Fatalf("csv per partition:\n%s\nwant\n%s", got, want)
	}
	if got := queryText(t, e, `SELECT note FROM curated.bp WHERE subject = 'p1'`); got != "seated, calm" {
		t.Fatalf("quoted value %q", got)
	}
}

// TestCrawlWhileEngineRuns crawls a folder after the engine opened (as while serve runs): the
// next query restarts DuckDB with the new folder allowed and sees the table.
func TestCrawlWhileEngineRuns(t *testing.T) {
	data, src := t.TempDir(), t.TempDir()
	e := crawledEngine(t, data)
	writeFile(t, src, "a.jsonl", `{"device":"hr-1","bpm":61}`+"\n"+`{"device":"hr-2","bpm":72}`+"\n")
	if _, err := catalog.Crawl(context.Background(), data, catalog.Options{Source: src, Zone: "landing", Name: "late"}); err != nil {
		t.Fatal(err)
	}
	if got := queryText(t, e, `SELECT count(*), max(bpm) FROM landing.late`); got != "2|72" {
		t.Fatalf("count and max of the table crawled after the engine opened: %s", got)
	}
	// Other folders stay closed to queries.
	if _, err := e.Query(context.Background(), fmt.Sprintf(`SELECT * FROM read_json_auto('%s/../*')`, src), Limits{}); err == nil {
		t.Fatal("a query read a folder outside the lake and the crawled tables")
	}
}
