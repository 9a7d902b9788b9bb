package pipeline

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeSession stands in for DuckDB where only the runner's control flow matters: a model's
// SELECT fails when it contains the word FAIL, and every count is 3.
type fakeSession struct {
	mu       sync.Mutex
	replaced []string
	runs     [][]string // statuses per recorded run
	onAppend func()
	execs    []string
}

func (f *fakeSession) Exec(_ context.Context, sql string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs = append(f.execs, sql)
	if strings.Contains(sql, "FAIL") {
		return errors.New("Binder Error: column FAIL not found")
	}
	return nil
}

func (f *fakeSession) Query(_ context.Context, sql string) ([]string, [][]any, error) {
	return []string{"count"}, [][]any{{int64(3)}}, nil
}

func (f *fakeSession) Exists(context.Context, string) (bool, error) { return false, nil }

func (f *fakeSession) Replace(_ context.Context, table, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replaced = append(f.replaced, table)
	return nil
}

func (f *fakeSession) Append(_ context.Context, table, q string) error {
	f.mu.Lock()
	var st []string
	for _, s := range []string{"'ok'", "'failed'", "'skipped'"} {
		for range strings.Count(q, s) {
			st = append(st, strings.Trim(s, "'"))
		}
	}
	f.runs = append(f.runs, st)
	cb := f.onAppend
	f.mu.Unlock()
	if table != RunsTable {
		return errors.New("append to " + table)
	}
	if cb != nil {
		cb()
	}
	return nil
}

func (f *fakeSession) Close() error { return nil }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRunnerSkipsDownstreamOfFailure(t *testing.T) {
	p, err := Parse(map[string]string{
		"trusted.a.sql": "SELECT 1",
		"trusted.b.sql": "SELECT FAIL FROM trusted.a",
		"curated.c.sql": "SELECT * FROM trusted.b",
		"curated.d.sql": "SELECT * FROM curated.c",
		"curated.e.sql": "SELECT * FROM trusted.a",
	})
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeSession{}
	reg := prometheus.NewRegistry()
	r, err := NewRunner(discard(), reg, Options{Open: func(context.Context) (Session, error) { return fs, nil }})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range rep.Models {
		got = append(got, m.Model+"="+string(m.Status))
	}
	if want := "trusted.a=ok curated.e=ok trusted.b=failed curated.c=skipped curated.d=skipped"; strings.Join(got, " ") != want {
		t.Fatalf("results %s\nwant    %s", strings.Join(got, " "), want)
	}
	if strings.Join(fs.replaced, " ") != "trusted.a curated.e" {
		t.Fatalf("committed %v; a failed or skipped model must not be committed", fs.replaced)
	}
	if rep.Err() == nil || !strings.Contains(rep.Err().Error(), "model trusted.b: running SELECT: Binder Error") {
		t.Fatalf("report error: %v", rep.Err())
	}
	if !strings.Contains(rep.Models[4].Err.Error(), "curated.c did not succeed") {
		t.Fatalf("skip reason: %v", rep.Models[4].Err)
	}
	if len(fs.runs) != 1 || len(fs.runs[0]) != 5 {
		t.Fatalf("run record: %v", fs.runs)
	}
	var out strings.Builder
	_ = rep.Print(&out)
	if !strings.Contains(out.String(), "trusted.a") || !strings.Contains(out.String(), "skipped") {
		t.Fatalf("printed:\n%s", out.String())
	}
}

func TestPseudonymizeMacroIsHMAC(t *testing.T) {
	// The macro's key blocks are the RFC 2104 inner and outer pads of the key.
	key := []byte("0123456789abcdef0123456789abcdef")
	m := PseudonymizeMacro(key)
	if !strings.Contains(m, "unhex('06070405020300010e0f57545552535006070405020300010e0f5754555253503636363636363636363636363636363636363636363636363636363636363636')") {
		t.Fatalf("inner pad missing from macro: %s", m)
	}
	if got := Pseudonymize(key, "a@b.c"); len(got) != 64 || got == Pseudonymize([]byte("other"), "a@b.c") {
		t.Fatalf("pseudonym %s", got)
	}
}

func TestSchedulerRunsDueModelsAndStops(t *testing.T) {
	dir := t.TempDir()
	write := func(name, sql string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("trusted.fast.sql", "-- schedule: @every 1s\nSELECT 1")
	write("curated.never.sql", "SELECT 2") // no schedule and no default: on demand only
	fs := &fakeSession{}
	runs := make(chan struct{}, 10)
	fs.onAppend = func() { runs <- struct{}{} }
	r, err := NewRunner(discard(), nil, Options{Open: func(context.Context) (Session, error) { return fs, nil }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewScheduler(discard(), r, SchedulerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for i := range 2 {
		select {
		case <-runs:
		case <-time.After(10 * time.Second):
			t.Fatalf("scheduled run %d did not happen", i+1)
		}
		if i == 0 { // an edit applies at the next firing
			write("trusted.fast.sql", "-- schedule: @every 1s\nSELECT 42 AS edited")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("scheduler did not stop")
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, tbl := range fs.replaced {
		if tbl != "trusted.fast" {
			t.Fatalf("unscheduled model ran: %v", fs.replaced)
		}
	}
	if !strings.Contains(strings.Join(fs.execs, "\n"), "SELECT 42 AS edited") {
		t.Fatal("edited model not picked up")
	}
	if _, err := NewScheduler(discard(), r, SchedulerOptions{Dir: dir, Schedule: "not cron"}); err == nil {
		t.Fatal("bad default schedule accepted")
	}
}
