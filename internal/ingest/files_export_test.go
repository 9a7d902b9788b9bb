package ingest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pulselake/pulselake/internal/stream"
)

// fakeExport is an export format whose files hold one reading per line, "bad" for a record
// the ingester rejects; Detect accepts files named *.fake.
func fakeExport() Export {
	return Export{
		Format: "fake", Source: "fake-source",
		Detect: func(p string) bool { return strings.HasSuffix(p, ".fake") },
		Read: func(ctx context.Context, p string, o ExportOptions, emit func([]byte, string) error) error {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for i, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				if l == "fail" {
					return errors.New("unreadable record")
				}
				raw := fmt.Sprintf(`{"subject":%q,"device":"d","kind":"heart_rate","time":"2026-01-01T00:00:%02d.%03dZ","values":{"bpm":%s}}`, o.Subject, i/1000%60, i%1000, l)
				if err := emit([]byte(raw), fmt.Sprintf("line %d", i+1)); err != nil {
					return err
				}
			}
			o.Progress(int64(len(data)))
			return nil
		},
	}
}

// TestImportExport: an export found by Detect (or named by Format) is read with its reader,
// stored in chunks by several storers with the export's source, counted once, its rejections
// listed in order with their index in the export; a reader's error fails the import.
func TestImportExport(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := range 2500 {
		if i%500 == 7 {
			lines = append(lines, "999") // out of range
		} else {
			lines = append(lines, "70")
		}
	}
	good := filepath.Join(dir, "a.fake")
	os.WriteFile(good, []byte(strings.Join(lines, "\n")), 0o644)
	var mu sync.Mutex
	sources := map[string]int{}
	publish := func(_ context.Context, b *stream.Batch) (int, error) {
		mu.Lock()
		sources[b.Source] += len(b.Entries)
		mu.Unlock()
		return 0, nil
	}
	in := newTestIngester(t, publish, Options{})
	var last ImportProgress
	o := ImportOptions{Subject: "s1", Chunk: 100, Exports: []Export{fakeExport()}, Progress: func(p ImportProgress) { last = p }}
	for _, tc := range []struct{ name, format string }{{"detected", ""}, {"named", "fake"}} {
		t.Run(tc.name, func(t *testing.T) {
			o.Format = tc.format
			res, err := in.Import(context.Background(), []string{good}, o)
			if err != nil || len(res) != 1 {
				t.Fatalf("Import: %v %v", res, err)
			}
			r := res[0]
			if r.Accepted+r.Duplicates != 2495 || len(r.Rejected) != 5 || r.Rejected[0].Index != 7 || r.Rejected[4].Index != 2007 {
				t.Errorf("result: %d accepted, %d duplicates, rejected %+v", r.Accepted, r.Duplicates, r.Rejected)
			}
			if last.Records != 2500 || last.Rejected != 5 || last.Bytes != last.BytesTotal || last.Format != "fake" {
				t.Errorf("last progress %+v", last)
			}
		})
	}
	// The test ingester keeps no de-duplication window: both imports are stored.
	if sources["fake-source"] != 5000 || len(sources) != 1 {
		t.Errorf("stored by source: %v; want 2×2500 records under fake-source", sources)
	}

	bad := filepath.Join(dir, "b.fake")
	os.WriteFile(bad, []byte("70\nfail\n"), 0o644)
	if _, err := in.Import(context.Background(), []string{bad}, o); err == nil || !strings.Contains(err.Error(), "unreadable record") {
		t.Errorf("a reader's error: %v", err)
	}
	o.Format = "nope"
	if _, err := in.Import(context.Background(), []string{good}, o); err == nil || !strings.Contains(err.Error(), "unknown import format") {
		t.Errorf("unknown format: %v", err)
	}
	o.Format, o.Subject = "", ""
	if _, err := in.Import(context.Background(), []string{good}, o); err == nil || !strings.Contains(err.Error(), "--subject") {
		t.Errorf("no subject: %v", err)
	}
}
