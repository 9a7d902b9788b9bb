package query

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/pulselake/pulselake/internal/catalog"
)

// writeTestParquet writes a Parquet file whose columns DuckDB would read as INTEGER, FLOAT,
// TIMESTAMP, DATE and a list (which the crawler leaves out).
func writeTestParquet(t *testing.T, root, rel string, n int) {
	t.Helper()
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "device", Type: arrow.BinaryTypes.String},
		{Name: "bpm", Type: arrow.PrimitiveTypes.Int32},
		{Name: "spo2", Type: arrow.PrimitiveTypes.Float32},
		{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond}},
		{Name: "day", Type: arrow.FixedWidthTypes.Date32},
		{Name: "samples", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64)},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for i := 0; i < n; i++ {
		b.Field(0).(*array.StringBuilder).Append(fmt.Sprintf("hr-%d", i))
		b.Field(1).(*array.Int32Builder).Append(int32(60 + i))
		b.Field(2).(*array.Float32Builder).Append(97.5)
		b.Field(3).(*array.TimestampBuilder).Append(arrow.Timestamp(1_793_000_000_000_000 + int64(i)))
		b.Field(4).(*array.Date32Builder).Append(arrow.Date32(20_000))
		lb := b.Field(5).(*array.ListBuilder)
		lb.Append(true)
		lb.ValueBuilder().(*array.Float64Builder).Append(0.5)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pqarrow.NewFileWriter(sc, f, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

const (
	serialA = "8d3b2d5e-7c1f-4b7a-9e2d-0a1b2c3d4e5f"
	serialB = "f0e1d2c3-b4a5-4968-8776-655443322110"
)

// TestCrawledTablesTypedAsCatalog: every format is read with exactly the columns and types
// the crawler recorded, whatever DuckDB would infer from the files (UUID-looking text,
// INTEGER and FLOAT Parquet columns, nested JSON objects, hive partition values).
func TestCrawledTablesTypedAsCatalog(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		pq    []string // Parquet files to write
		// want are the columns DESCRIBE must show, name and DuckDB type, in order.
		want string
		// query and its expected rows check values read under the recorded types.
		query, rows string
	}{
		{
			name: "json",
			files: map[string]string{
				"day=2026-11-01/a.json": `{"serialNumber":"` + serialA + `","sensorReadingTime":1793000000000,"distance":181,"meta":{"fw":"1.2"},"ok":true,"at":"2026-11-01T10:00:00Z","born":"1990-05-01"}` + "\n",
				"day=2026-11-02/b.json": `{"serialNumber":"` + serialB + `","sensorReadingTime":1793000000001,"distance":182.5,"meta":[1,2],"ok":false,"at":"2026-11-02T12:00:00+02:00","born":"1991-06-02"}` + "\n",
			},
			want: "serialNumber VARCHAR, sensorReadingTime BIGINT, distance DOUBLE, meta VARCHAR, ok BOOLEAN, at TIMESTAMP, born DATE, day DATE",
			query: `SELECT serialNumber, meta, distance, strftime("at", '%H:%M') FROM T
				WHERE serialNumber IN (SELECT s FROM (VALUES ('` + serialA + `'), ('` + serialB + `')) v(s)) ORDER BY day`,
			rows: serialA + `|{"fw":"1.2"}|181|10:00` + "\n" + serialB + "|[1,2]|182.5|10:00",
		},
		{
			name: "csv",
			files: map[string]string{
				"site=1/a.csv": "serialNumber,distance,ok,at,code\n" + serialA + ",181,TRUE,2026-11-01T10:00:00Z,007\n",
				"site=2/b.csv": "serialNumber,distance,ok,at,code\n" + serialB + ",182,false,2026-11-02 10:00:00,x1\n",
			},
			want:  "serialNumber VARCHAR, distance BIGINT, ok BOOLEAN, at TIMESTAMP, code VARCHAR, site BIGINT",
			query: `SELECT serialNumber, code, ok FROM T WHERE serialNumber IN (SELECT '` + serialA + `') ORDER BY site`,
			rows:  serialA + "|007|true",
		},
		{
			name:  "parquet",
			pq:    []string{"site=7/x.parquet"},
			want:  "device VARCHAR, bpm BIGINT, spo2 DOUBLE, at TIMESTAMP, day DATE, site BIGINT",
			query: `SELECT device, bpm, spo2 FROM T WHERE bpm = 61`,
			rows:  "hr-1|61|97.5",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, src := t.TempDir(), t.TempDir()
			for rel, content := range tt.files {
				writeFile(t, src, rel, content)
			}
			for _, rel := range tt.pq {
				writeTestParquet(t, src, rel, 3)
			}
			e := crawledEngine(t, data, catalog.Options{Source: src, Zone: "landing", Name: "x"})
			reg, err := catalog.Get(data, "landing", "x")
			if err != nil || reg == nil {
				t.Fatal(reg, err)
			}
			// what `catalog list --format json` shows
			var fromCatalog []string
			for _, c := range catalog.Inventory(nil, []catalog.Table{*reg})[0].Columns {
				fromCatalog = append(fromCatalog, c.Name+" "+c.SQLType)
			}
			if got := strings.Join(fromCatalog, ", "); got != tt.want {
				t.Fatalf("catalog list shows %s, want %s", got, tt.want)
			}
			got := strings.ReplaceAll(queryText(t, e, `SELECT column_name || ' ' || column_type FROM (DESCRIBE landing.x)`), "\n", ", ")
			if got != tt.want {
				t.Fatalf("the engine reads\n  %s\nthe catalog says\n  %s", got, tt.want)
			}
			if got := queryText(t, e, strings.ReplaceAll(tt.query, "FROM T", "FROM landing.x")); got != tt.rows {
				t.Fatalf("rows:\n%s\nwant\n%s", got, tt.rows)
			}
		})
	}
}

// TestCrawledSchemaKeptUntilRecrawl: files added after a crawl do not change the table's
// columns; a key only they have stays invisible and a value of another type fails the
// query as schema drift, which a check reports without changing the table, until a new
// crawl records the new schema.
func TestCrawledSchemaKeptUntilRecrawl(t *testing.T) {
	data, src := t.TempDir(), t.TempDir()
	writeFile(t, src, "a.json", `{"serialNumber":"`+serialA+`","distance":181}`+"\n")
	e := crawledEngine(t, data, catalog.Options{Source: src, Zone: "landing", Name: "st"})
	const describe = `SELECT column_name || ' ' || column_type FROM (DESCRIBE landing.st)`
	before := "serialNumber VARCHAR\ndistance BIGINT"
	if got := queryText(t, e, describe); got != before {
		t.Fatalf("columns %q, want %q", got, before)
	}

	writeFile(t, src, "b.json", `{"serialNumber":"`+serialB+`","distance":182,"battery":0.9}`+"\n")
	if got := queryText(t, e, describe); got != before {
		t.Fatalf("a new file changed the columns to %q; the catalog still says %q", got, before)
	}
	if got := queryText(t, e, `SELECT count(*), sum(distance) FROM landing.st`); got != "2|363" {
		t.Fatalf("count and sum %s", got)
	}

	writeFile(t, src, "c.json", `{"serialNumber":"`+serialB+`","distance":"far"}`+"\n")
	_, err := e.Query(context.Background(), `SELECT sum(distance) FROM landing.st`, Limits{})
	if err == nil || !strings.Contains(err.Error(), "c.json") || !strings.Contains(err.Error(), "catalog crawl") {
		t.Fatalf("a value that does not fit the recorded type: err %v, want one naming c.json and telling to crawl again", err)
	}
	if code, name := statusOf(err); !errors.Is(err, ErrSchemaDrift) || code != 422 || name != "schema-drift" {
		t.Fatalf("the drift error maps to %d %s (errors.Is ErrSchemaDrift: %v)", code, name, errors.Is(err, ErrSchemaDrift))
	}

	opts := catalog.Options{Source: src, Zone: "landing", Name: "st"}
	checked, err := catalog.Check(context.Background(), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := checked.Drift.String(); !strings.Contains(d, "+ battery double") || !strings.Contains(d, "~ distance bigint → string") {
		t.Fatalf("drift reported by a check:\n%s", d)
	}
	if got := queryText(t, e, describe); got != before {
		t.Fatalf("a check changed the columns to %q", got)
	}

	res, err := catalog.Crawl(context.Background(), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Drift.String(); d != checked.Drift.String() {
		t.Fatalf("the crawl reports\n%s\nthe check reported\n%s", d, checked.Drift)
	}
	if got, want := queryText(t, e, describe), "serialNumber VARCHAR\ndistance VARCHAR\nbattery DOUBLE"; got != want {
		t.Fatalf("after the new crawl the columns are %q, want %q", got, want)
	}
	if got := queryText(t, e, `SELECT count(*), count(battery) FROM landing.st`); got != "3|1" {
		t.Fatalf("after the new crawl: %s", got)
	}
}
