package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/catalog"
	"github.com/pulselake/pulselake/internal/lake"
)

func TestCatalogCommand(t *testing.T) {
	data, src := t.TempDir(), t.TempDir()
	put := func(rel, content string) {
		p := filepath.Join(src, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("day=2026-11-01/a.jsonl", `{"device":"hr-1","bpm":61}`+"\n"+`{"device":"hr-2","bpm":70}`+"\n")

	code, out, errs := runCLI(t, "catalog", "crawl", "--data", data, "--source", src, "--table", "vitals")
	if code != exitOK || !strings.Contains(out, "registered landing.vitals: 2 rows in 1 json files") || !strings.Contains(out, "day     date    DATE      partition") {
		t.Fatalf("crawl: exit %d\n%s\n%s", code, out, errs)
	}
	put("day=2026-11-02/b.jsonl", `{"device":"hr-1","bpm":62.5,"spo2":97}`+"\n")
	code, out, errs = runCLI(t, "catalog", "crawl", "--data", data, "--source", src, "--table", "vitals", "--check")
	if code != exitOK || !strings.Contains(out, "checked landing.vitals") || !strings.Contains(out, "~ bpm bigint → double") || !strings.Contains(out, "keeps the schema") {
		t.Fatalf("crawl --check: exit %d\n%s\n%s", code, out, errs)
	}
	if x, err := catalog.Get(data, "landing", "vitals"); err != nil || x == nil || len(x.Columns) != 2 || x.Columns[1].Type != "bigint" {
		t.Fatalf("crawl --check changed the registered table: %+v, %v", x, err)
	}
	code, out, errs = runCLI(t, "catalog", "crawl", "--data", data, "--source", src, "--table", "vitals")
	if code != exitOK || !strings.Contains(out, "schema drift since the crawl of") || !strings.Contains(out, "+ spo2 bigint") || !strings.Contains(out, "~ bpm bigint → double") {
		t.Fatalf("re-crawl: exit %d\n%s\n%s", code, out, errs)
	}

	// An Iceberg table of the lake next to the crawled one.
	var lc lake.Config
	lc = lc.WithDefaults(data)
	st, err := lake.Open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), lc)
	if err != nil {
		t.Fatal(err)
	}
	err = st.AppendRows(context.Background(), "trusted", "heart_rate", []lake.Column{{Name: "time", Type: lake.Timestamp}, {Name: "bpm", Type: lake.Float64}},
		[][]any{{time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 60.0}, {time.Date(2026, 11, 1, 0, 1, 0, 0, time.UTC), 61.0}})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	code, out, errs = runCLI(t, "catalog", "list", "--data", data, "--format", "json")
	if code != exitOK {
		t.Fatalf("list: exit %d\n%s", code, errs)
	}
	var entries []catalog.Entry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(entries) != 2 || entries[0].Name != "vitals" || entries[0].Kind != "external" || entries[0].Rows != 3 || entries[0].Files != 2 ||
		entries[1].Name != "heart_rate" || entries[1].Kind != "iceberg" || entries[1].Rows != 2 {
		t.Fatalf("list entries %+v", entries)
	}
	code, out, _ = runCLI(t, "catalog", "list", "--data", data)
	if code != exitOK || !strings.Contains(out, "ZONE") || !strings.Contains(out, "landing  vitals      external  json") {
		t.Fatalf("list table: exit %d\n%s", code, out)
	}

	code, out, _ = runCLI(t, "catalog", "ddl", "--data", data, "--dialect", "spark", "landing.vitals")
	if code != exitOK || !strings.Contains(out, "USING json") || !strings.Contains(out, "`spo2` BIGINT") {
		t.Fatalf("ddl spark: exit %d\n%s", code, out)
	}
	code, _, errs = runCLI(t, "catalog", "ddl", "--data", data, "--dialect", "athena", "landing.vitals")
	if code != exitUsage || !strings.Contains(errs, "--location s3://") {
		t.Fatalf("ddl athena without S3: exit %d\n%s", code, errs)
	}
	code, out, _ = runCLI(t, "catalog", "ddl", "--data", data, "--dialect", "trino", "heart_rate")
	if code != exitOK || !strings.Contains(out, "system.register_table(schema_name => 'trusted', table_name => 'heart_rate'") {
		t.Fatalf("ddl trino iceberg: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"catalog", "crawl", "--data", data, "--source", src, "--zone", "ops", "--table", "x"},
		{"catalog", "crawl", "--data", data, "--source", src, "--zone", "trusted", "--table", "heart_rate"},
		{"catalog", "ddl", "--data", data, "--dialect", "mysql", "landing.vitals"},
		{"catalog", "ddl", "--data", data, "--dialect", "spark", "landing.nope"},
		{"catalog", "drop", "--data", data, "landing.nope"},
	} {
		if code, _, errs := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, exitUsage, errs)
		}
	}
	code, _, errs = runCLI(t, "catalog", "crawl", "--data", data, "--source", filepath.Join(src, "missing"), "--table", "y")
	if code != exitFailure || !strings.Contains(errs, "missing") {
		t.Fatalf("missing source: exit %d\n%s", code, errs)
	}
	if code, out, _ := runCLI(t, "catalog", "drop", "--data", data, "landing.vitals"); code != exitOK || !strings.Contains(out, "dropped landing.vitals") {
		t.Fatalf("drop: exit %d\n%s", code, out)
	}
	if ts, _ := catalog.List(data); len(ts) != 0 {
		t.Fatalf("registry after drop: %+v", ts)
	}
}
