package ingest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// TestImportExportReadAhead: while every storer waits for the stream, the reader stops
// after exportStorers chunks being stored, exportReadAhead waiting and the one it is
// filling: an export's memory does not grow with the file.
func TestImportExportReadAhead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "big.fake")
	os.WriteFile(p, nil, 0o644)
	const chunk = 10
	var emitted atomic.Int64
	endless := Export{Format: "endless", Source: "fake-source", Detect: func(string) bool { return true },
		Read: func(ctx context.Context, _ string, o ExportOptions, emit func([]byte, string) error) error {
			for i := 0; ; i++ {
				raw := fmt.Sprintf(`{"subject":%q,"device":"d","kind":"heart_rate","time":"2026-01-01T00:%02d:%02d.%03dZ","values":{"bpm":70}}`, o.Subject, i/60000%60, i/1000%60, i%1000)
				if err := emit([]byte(raw), ""); err != nil {
					return err
				}
				emitted.Add(1)
			}
		}}
	release := make(chan struct{})
	var publishing atomic.Int64
	publish := func(ctx context.Context, b *stream.Batch) (int, error) {
		publishing.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return 0, ctx.Err()
	}
	in := newTestIngester(t, publish, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.Import(ctx, []string{p}, ImportOptions{Subject: "s1", Chunk: chunk, Exports: []Export{endless}, Format: "endless"})
	}()
	for publishing.Load() < exportStorers {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the reader runs as far as it can
	want := int64((exportStorers + exportReadAhead + 1) * chunk)
	if got := emitted.Load(); got > want {
		t.Errorf("the reader emitted %d records while the storers waited; at most %d expected", got, want)
	}
	cancel()
	close(release)
	<-done
}
