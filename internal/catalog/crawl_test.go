package catalog

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fixedNow() time.Time { return time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC) }

func col(t *testing.T, cols []Column, name string) Column {
	t.Helper()
	for _, c := range cols {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no column %q in %+v", name, cols)
	return Column{}
}

func TestCrawlJSONPartitionsAndDrift(t *testing.T) {
	ctx := context.Background()
	data, src := t.TempDir(), t.TempDir()
	write(t, src, "source=watch/day=2026-11-01/part-0.jsonl",
		`{"device":"hr-1","bpm":61,"at":"2026-11-01T10:00:00Z","ok":true}
{"device":"hr-2","bpm":null,"at":"2026-11-01T10:00:05Z","ok":false}

{"device":"hr-1","bpm":64,"at":"2026-11-01T10:01:00Z","ok":true}
`)
	write(t, src, "source=cuff/day=2026-11-02/part-0.json", `{"device":"bp-1","bpm":70,"at":"2026-11-02","ok":true}`) // no final newline
	write(t, src, "source=cuff/day=2026-11-02/notes.txt", "not data")

	opts := Options{Source: src, Zone: "landing", Name: "vitals", Now: fixedNow}
	res, err := Crawl(ctx, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	tb := res.Table
	if res.Previous != nil || !res.Drift.Empty() {
		t.Fatalf("first crawl: previous %v drift %+v", res.Previous, res.Drift)
	}
	if tb.Format != FormatJSON || tb.Files != 2 || tb.Rows != 4 {
		t.Fatalf("format %s files %d rows %d, want json 2 4", tb.Format, tb.Files, tb.Rows)
	}
	want := []Column{{Name: "device", Type: "string"}, {Name: "bpm", Type: "bigint"}, {Name: "at", Type: "timestamp"}, {Name: "ok", Type: "boolean"}}
	if !slices.Equal(tb.Columns, want) {
		t.Fatalf("columns %+v, want %+v", tb.Columns, want)
	}
	wantParts := []Column{{Name: "source", Type: "string"}, {Name: "day", Type: "date"}}
	if !slices.Equal(tb.Partitions, wantParts) {
		t.Fatalf("partitions %+v, want %+v", tb.Partitions, wantParts)
	}
	sizes := int64(0)
	for _, f := range []string{"source=watch/day=2026-11-01/part-0.jsonl", "source=cuff/day=2026-11-02/part-0.json"} {
		st, _ := os.Stat(filepath.Join(src, f))
		sizes += st.Size()
	}
	if tb.Bytes != sizes {
		t.Fatalf("bytes %d, want %d", tb.Bytes, sizes)
	}

	// A later file adds a column and a decimal bpm; another crawl reports the drift.
	write(t, src, "source=watch/day=2026-11-03/part-0.jsonl", `{"device":"hr-1","bpm":62.5,"at":"2026-11-03T09:00:00Z","ok":true,"spo2":97,"tags":["rest"]}`+"\n")
	res, err = Crawl(ctx, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Previous == nil || res.Previous.Rows != 4 {
		t.Fatalf("previous %+v", res.Previous)
	}
	d := res.Drift
	if len(d.Added) != 2 || d.Added[0].Name != "spo2" || d.Added[0].Type != "bigint" || d.Added[1].Name != "tags" || !d.Added[1].Nested {
		t.Fatalf("added %+v", d.Added)
	}
	if len(d.Changed) != 1 || d.Changed[0] != (TypeChange{Name: "bpm", From: "bigint", To: "double"}) {
		t.Fatalf("changed %+v", d.Changed)
	}
	if len(d.Removed) != 0 {
		t.Fatalf("removed %+v", d.Removed)
	}
	for _, line := range []string{"+ spo2 bigint", "~ bpm bigint → double"} {
		if !strings.Contains(d.String(), line) {
			t.Errorf("drift report lacks %q:\n%s", line, d)
		}
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "tags") }) {
		t.Errorf("no warning about nested column tags: %v", res.Warnings)
	}
	got, err := Get(data, "landing", "vitals")
	if err != nil || got == nil || got.Rows != 5 || got.Files != 3 {
		t.Fatalf("registry entry %+v, %v", got, err)
	}

	// Removing the file that had the new columns is drift too.
	os.RemoveAll(filepath.Join(src, "source=watch/day=2026-11-03"))
	res, err = Crawl(ctx, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Drift.Removed) != 2 || res.Drift.Removed[0].Name != "spo2" {
		t.Fatalf("removed %+v", res.Drift.Removed)
	}
}

func TestCrawlCSV(t *testing.T) {
	data, src := t.TempDir(), t.TempDir()
	write(t, src, "day=2026-11-01/a.csv", "subject,systolic,weight,measured_at,note\np1,120,70.5,2026-11-01 08:00:00,\np2,135,,2026-11-01 08:05:00,\"fasting, seated\"\n")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	fmt.Fprint(zw, "subject,systolic,weight,measured_at,note,arm\np3,128,80,2026-11-02T07:00:00Z,x,left\n")
	zw.Close()
	write(t, src, "day=2026-11-02/b.csv.gz", gz.String())
	res, err := Crawl(context.Background(), data, Options{Source: "file://" + src, Zone: "curated", Name: "bp", Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	tb := res.Table
	if tb.Format != FormatCSV || tb.Rows != 3 || tb.Files != 2 || !tb.Quoted {
		t.Fatalf("table %+v", tb)
	}
	for name, typ := range map[string]string{"subject": "string", "systolic": "bigint", "weight": "double", "measured_at": "timestamp", "note": "string", "arm": "string"} {
		if c := col(t, tb.Columns, name); c.Type != typ {
			t.Errorf("column %s type %s, want %s", name, c.Type, typ)
		}
	}
	if tb.Location != src {
		t.Errorf("location %s, want %s", tb.Location, src)
	}
}

func TestCrawlParquet(t *testing.T) {
	data, src := t.TempDir(), t.TempDir()
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "device", Type: arrow.BinaryTypes.String},
		{Name: "bpm", Type: arrow.PrimitiveTypes.Int32},
		{Name: "spo2", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}},
		{Name: "day", Type: arrow.FixedWidthTypes.Date32},
		{Name: "samples", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64)},
	}, nil)
	writeParquet := func(rel string, n int) {
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
		p := filepath.Join(src, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		w, err := pqarrow.NewFileWriter(sc, f, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(2)), pqarrow.DefaultWriterProps())
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
	writeParquet("site=7/x.parquet", 5)
	writeParquet("site=8/y.parquet", 3)
	res, err := Crawl(context.Background(), data, Options{Source: src, Zone: "trusted", Name: "hr_export"})
	if err != nil {
		t.Fatal(err)
	}
	tb := res.Table
	if tb.Format != FormatParquet || tb.Rows != 8 || tb.Files != 2 {
		t.Fatalf("table %+v", tb)
	}
	want := []Column{{Name: "device", Type: "string"}, {Name: "bpm", Type: "bigint"}, {Name: "spo2", Type: "double"}, {Name: "at", Type: "timestamp"}, {Name: "day", Type: "date"}}
	if !slices.Equal(tb.Columns, want) {
		t.Fatalf("columns %+v, want %+v", tb.Columns, want)
	}
	if !slices.Equal(tb.Partitions, []Column{{Name: "site", Type: "bigint"}}) {
		t.Fatalf("partitions %+v", tb.Partitions)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "samples") {
		t.Fatalf("warnings %v", res.Warnings)
	}
}

func TestCrawlErrors(t *testing.T) {
	data := t.TempDir()
	cases := []struct {
		name  string
		files map[string]string
		opts  Options
		want  string
	}{
		{"ops zone", map[string]string{"a.json": "{}"}, Options{Zone: "ops", Name: "x"}, "landing, trusted or curated"},
		{"bad name", map[string]string{"a.json": "{}"}, Options{Zone: "landing", Name: "Vitals-1"}, "lower-case"},
		{"mixed formats", map[string]string{"a.json": `{"a":1}`, "b.csv": "a\n1\n"}, Options{Zone: "landing", Name: "x"}, "--format"},
		{"no files", map[string]string{"a.txt": "x"}, Options{Zone: "landing", Name: "x"}, "no JSON-lines"},
		{"layouts", map[string]string{"k=1/a.json": `{"a":1}`, "b.json": `{"a":1}`}, Options{Zone: "landing", Name: "x"}, "same k=v folder levels"},
		{"not an object", map[string]string{"a.jsonl": "{\"a\":1}\n[1,2]\n"}, Options{Zone: "landing", Name: "x"}, "a.jsonl: line 2: not a JSON object"},
		{"bad json", map[string]string{"a.jsonl": "{\"a\":1}\n\n{\"a\":\n"}, Options{Zone: "landing", Name: "x"}, "a.jsonl: line 3:"},
		{"long line", map[string]string{"a.jsonl": `{"a":"` + strings.Repeat("x", 100) + `"}`}, Options{Zone: "landing", Name: "x", MaxLineBytes: 50}, "longer than 50 bytes"},
		{"csv header", map[string]string{"a.csv": "a,a\n1,2\n"}, Options{Zone: "landing", Name: "x"}, `column "a" appears twice`},
		{"csv fields", map[string]string{"a.csv": "a,b\n1,2\n3\n"}, Options{Zone: "landing", Name: "x"}, "line 3: wrong number of fields"},
		{"key clash", map[string]string{"a=1/x.json": `{"a":2}`}, Options{Zone: "landing", Name: "x"}, `partition key "a" is also a column`},
		{"s3", nil, Options{Source: "s3://bucket/p", Zone: "landing", Name: "x"}, "aws s3 sync"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := t.TempDir()
			for rel, content := range c.files {
				write(t, src, rel, content)
			}
			if c.opts.Source == "" {
				c.opts.Source = src
			}
			_, err := Crawl(context.Background(), data, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if ts, _ := List(data); len(ts) != 0 {
		t.Fatalf("failed crawls registered %+v", ts)
	}
}

func TestRegistryConcurrentPuts(t *testing.T) {
	data := t.TempDir()
	var wg sync.WaitGroup
	const n = 16
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Put(data, Table{Zone: "landing", Name: fmt.Sprintf("t%02d", i), Format: FormatJSON, Columns: []Column{{Name: "a", Type: "bigint"}}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ts, err := List(data)
	if err != nil || len(ts) != n {
		t.Fatalf("%d tables after %d concurrent puts (%v)", len(ts), n, err)
	}
	if err := Remove(data, "landing", "t03"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(data, "landing", "t03"); !errors.Is(err, ErrNoTable) {
		t.Fatalf("second remove: %v", err)
	}
	if ts, _ := List(data); len(ts) != n-1 {
		t.Fatalf("%d tables after remove", len(ts))
	}
	left, _ := filepath.Glob(filepath.Join(data, "catalog", ".external.json.tmp*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestTextType(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "true": "boolean", "FALSE": "boolean", "42": "bigint", "-7": "bigint", "+3": "bigint",
		"99999999999999999999": "double", "1.5": "double", "-.5": "double", "1e3": "double", "2.": "double",
		"2026-11-01": "date", "2026-13-01": "string", "2026-11-01T10:00:00Z": "timestamp",
		"2026-11-01 10:00:00.123": "timestamp", "2026-11-01T10:00:00+01:00": "timestamp",
		"NaN": "string", "inf": "string", "0x10": "string", "1,5": "string", "e5": "string", ".": "string", "abc": "string",
	} {
		if got := TextType(in); got != want {
			t.Errorf("TextType(%q) = %q, want %q", in, got, want)
		}
	}
	for _, c := range [][3]string{
		{"bigint", "double", "double"}, {"date", "timestamp", "timestamp"}, {"bigint", "boolean", "string"},
		{"", "date", "date"}, {"timestamp", "bigint", "string"}, {"string", "bigint", "string"},
	} {
		if got := widen(c[0], c[1]); got != c[2] {
			t.Errorf("widen(%s, %s) = %s, want %s", c[0], c[1], got, c[2])
		}
		if got := widen(c[1], c[0]); got != c[2] {
			t.Errorf("widen(%s, %s) = %s, want %s", c[1], c[0], got, c[2])
		}
	}
}

var portable = []string{TypeString, TypeBigint, TypeDouble, TypeBoolean, TypeTimestamp, TypeDate}

// FuzzInfer feeds arbitrary bytes to the JSON-lines and CSV scanners and the cell typer.
func FuzzInfer(f *testing.F) {
	f.Add([]byte("{\"a\":1,\"b\":\"2026-11-01\"}\n{\"a\":1.5,\"c\":[1]}\n"))
	f.Add([]byte("a,b\n1,\"x\ny\"\n2,2026-11-01T10:00:00Z\n"))
	f.Add([]byte("\n\n  \n{}"))
	f.Add([]byte("\ufeffa\n\"unterminated\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := int64(bytes.Count(data, []byte("\n")) + 1)
		for _, scan := range []string{"json", "csv"} {
			s := newSchema()
			var rows int64
			var err error
			if scan == "json" {
				rows, err = scanJSON(bytes.NewReader(data), s, 3, 64)
			} else {
				rows, _, err = scanCSV(bytes.NewReader(data), s, 3, 64)
			}
			if rows < 0 || rows > lines {
				t.Fatalf("%s: %d rows from %d lines", scan, rows, lines)
			}
			if err != nil {
				continue
			}
			for _, c := range s.columns() {
				if !slices.Contains(portable, c.Type) {
					t.Fatalf("%s: column %q has type %q", scan, c.Name, c.Type)
				}
			}
		}
		if ty := TextType(string(data)); ty != "" && !slices.Contains(portable, ty) {
			t.Fatalf("TextType(%q) = %q", data, ty)
		}
		if ty := PartitionType(string(data)); ty != "" && !slices.Contains([]string{TypeString, TypeBigint, TypeDate, TypeTimestamp}, ty) {
			t.Fatalf("PartitionType(%q) = %q", data, ty)
		}
	})
}

func TestDiffPartitionKeysAndFormat(t *testing.T) {
	old := Table{Format: FormatJSON, Columns: []Column{{Name: "a", Type: "bigint"}}}
	cur := Table{Format: FormatCSV, Columns: []Column{{Name: "a", Type: "bigint"}}, Partitions: []Column{{Name: "day", Type: "date"}}}
	d := Diff(old, cur)
	if d.Format != "json → csv" || d.PartitionKeys != "(none) → day" || len(d.Added) != 1 || d.Added[0].Name != "day" {
		t.Fatalf("%+v", d)
	}
	if d := Diff(cur, cur); !d.Empty() {
		t.Fatalf("self diff %+v", d)
	}
}
