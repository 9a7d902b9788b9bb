package lake

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

// orphanFixture is a trusted-like table with committed rows of three subjects, plus the
// leftovers of failed flushes in its folders: an unreferenced Parquet file of p-1's rows,
// one of p-2's rows, a truncated Parquet file and an empty metadata file (what a full disk
// leaves).
type orphanFixture struct {
	s                         *Store
	rows                      []string // the table's rows
	p1, p2, broken, emptyMeta string   // local paths of the leftovers
	referenced                []string // local paths of the committed data files
}

func newOrphanFixture(t *testing.T) *orphanFixture {
	t.Helper()
	ctx := context.Background()
	s := eraseStore(t, t.TempDir())
	var rows [][]any
	for i := range 30 {
		rows = append(rows, eraseTrustedRow(i, eraseSubject(i)))
	}
	appendWithSeq(t, s, ZoneTrusted, "heart_rate", eraseTrustedCols, rows, 7, ColTime)
	tb, err := s.Load(ctx, ZoneTrusted, "heart_rate")
	if err != nil {
		t.Fatal(err)
	}
	f := &orphanFixture{s: s, rows: tableRows(t, tb)}
	for _, p := range currentFiles(t, tb) {
		f.referenced = append(f.referenced, strings.TrimPrefix(p, "file://"))
	}
	// A failed flush: files written, never committed.
	leftover := func(subject string) string {
		rec, err := buildRows(tb, eraseTrustedCols, [][]any{eraseTrustedRow(100, subject), eraseTrustedRow(103, subject)})
		if err != nil {
			t.Fatal(err)
		}
		defer rec.Release()
		files, err := writeFiles(ctx, tb, []arrow.RecordBatch{rec})
		if err != nil || len(files) != 1 {
			t.Fatalf("writing a leftover: %v (%d files)", err, len(files))
		}
		return strings.TrimPrefix(files[0].FilePath(), "file://")
	}
	f.p1, f.p2 = leftover("p-1"), leftover("p-2")
	loc := strings.TrimPrefix(tb.Location(), "file://")
	f.broken = filepath.Join(loc, "data", "00000-0-broken.parquet")
	f.emptyMeta = filepath.Join(loc, "metadata", "00009-0-broken.metadata.json")
	if err := os.WriteFile(f.broken, []byte("PAR1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.emptyMeta, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// age sets the modification time of files to d ago.
func age(t *testing.T, d time.Duration, files ...string) {
	t.Helper()
	at := time.Now().Add(-d)
	for _, f := range files {
		if err := os.Chtimes(f, at, at); err != nil {
			t.Fatal(err)
		}
	}
}

func exists(f string) bool { _, err := os.Stat(f); return err == nil }

// check asserts which leftovers exist and that the table is whole.
func (f *orphanFixture) check(t *testing.T, want map[string]bool) {
	t.Helper()
	for name, p := range map[string]string{"p-1 leftover": f.p1, "p-2 leftover": f.p2, "truncated parquet": f.broken, "empty metadata": f.emptyMeta} {
		if got := exists(p); got != want[name] {
			t.Errorf("%s exists = %v, want %v", name, got, want[name])
		}
	}
	for _, p := range f.referenced {
		if !exists(p) {
			t.Errorf("referenced data file %s was deleted", p)
		}
	}
	tb, err := f.s.Load(context.Background(), ZoneTrusted, "heart_rate")
	if err != nil {
		t.Fatal(err)
	}
	if got := tableRows(t, tb); !slices.Equal(got, f.rows) {
		t.Errorf("table rows changed: %d rows, want %d", len(got), len(f.rows))
	}
}

func TestRemoveOrphans(t *testing.T) {
	ctx := context.Background()
	all := map[string]bool{"p-1 leftover": true, "p-2 leftover": true, "truncated parquet": true, "empty metadata": true}
	tests := []struct {
		name string
		old  []string // leftovers made 2 h old
		o    OrphanOptions
		want map[string]bool
	}{
		{name: "age threshold: only old leftovers go", old: []string{"p-2 leftover", "empty metadata"},
			o:    OrphanOptions{OlderThan: time.Hour},
			want: map[string]bool{"p-1 leftover": true, "truncated parquet": true}},
		{name: "age threshold: nothing old enough", o: OrphanOptions{OlderThan: time.Hour}, want: all},
		{name: "zero age: every unreferenced file", o: OrphanOptions{}, want: map[string]bool{}},
		{name: "subject at any age; unreadable parquet may hold it", o: OrphanOptions{OlderThan: -1, Subject: "p-1"},
			want: map[string]bool{"p-2 leftover": true, "empty metadata": true}},
		{name: "subject plus age", old: []string{"empty metadata"}, o: OrphanOptions{OlderThan: time.Hour, Subject: "p-2"},
			want: map[string]bool{"p-1 leftover": true}},
		{name: "subject with no rows anywhere", o: OrphanOptions{OlderThan: -1, Subject: "p-9"},
			want: map[string]bool{"p-1 leftover": true, "p-2 leftover": true, "empty metadata": true}},
		{name: "dry run", o: OrphanOptions{Subject: "p-1", DryRun: true}, want: all},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newOrphanFixture(t)
			paths := map[string]string{"p-1 leftover": f.p1, "p-2 leftover": f.p2, "truncated parquet": f.broken, "empty metadata": f.emptyMeta}
			for _, name := range tc.old {
				age(t, 2*time.Hour, paths[name])
			}
			// Referenced files are old too: age alone must never remove them.
			age(t, 48*time.Hour, f.referenced...)
			rep, err := f.s.RemoveOrphans(ctx, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep) != 1 || rep[0].Orphans != 4 {
				t.Fatalf("report %+v, want one table with 4 unreferenced files", rep)
			}
			f.check(t, tc.want)
			if !tc.o.DryRun {
				if n := 4 - len(rep[0].Removed); n != rep[0].Kept {
					t.Errorf("kept %d, but %d of 4 were not removed", rep[0].Kept, n)
				}
			}
		})
	}
}

func TestParquetHoldsSubject(t *testing.T) {
	f := newOrphanFixture(t)
	fio, err := f.s.FS(context.Background(), "file://"+f.p1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file, subject string
		want          bool
	}{
		{f.p1, "p-1", true}, {f.p1, "p-2", false}, {f.p1, "p-", false}, {f.p2, "p-2", true},
		{f.broken, "p-1", true}, {f.emptyMeta, "p-1", false},
	} {
		got, err := holdsSubject(fio, tc.file, tc.subject)
		if err != nil || got != tc.want {
			t.Errorf("holdsSubject(%s, %q) = %v, %v; want %v", filepath.Base(tc.file), tc.subject, got, err, tc.want)
		}
	}
	// Each day partition of the table holds one subject's rows.
	for _, subj := range []string{"p-1", "p-2", "p-3", "p-4"} {
		n := 0
		for _, p := range f.referenced {
			if ok, err := holdsSubject(fio, p, subj); err != nil {
				t.Fatal(err)
			} else if ok {
				n++
			}
		}
		if want := map[bool]int{true: 1, false: 0}[subj != "p-4"]; n != want {
			t.Errorf("%d committed files hold %s, want %d", n, subj, want)
		}
	}
}

// The sweep waits for a write in flight (the gate held shared) and then sees its commit.
func TestRemoveOrphansWaitsForWritesInFlight(t *testing.T) {
	ctx := context.Background()
	f := newOrphanFixture(t)
	release, err := f.s.gate.hold(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.s.RemoveOrphans(ctx, OrphanOptions{OlderThan: -1, Subject: "p-1"})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the sweep ran while a write was in flight (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	if !exists(f.p1) {
		t.Fatal("a file was deleted while a write was in flight")
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sweep did not run after the write finished")
	}
	if exists(f.p1) {
		t.Error("the subject's leftover survived the sweep")
	}
	// The gate is an flock on a file beside the catalog: a second store on the same catalog
	// (another process) waits for it too.
	other := eraseStore(t, filepath.Dir(filepath.Dir(f.s.cfg.Catalog.URI)))
	if other.gate.path != f.s.gate.path || other.gate.path == "" {
		t.Fatalf("gate files differ: %q and %q", other.gate.path, f.s.gate.path)
	}
	r1, err := other.gate.hold(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		r2, err := f.s.gate.hold(ctx, false)
		if err == nil {
			r2()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a write went ahead while another store held the gate exclusively")
	case <-time.After(200 * time.Millisecond):
	}
	r1()
	<-got
}

// The compaction schedule removes leftovers older than lake.orphan_age and keeps younger
// ones (a write of a machine the gate cannot see may still commit them).
func TestCompactRemovesOldOrphans(t *testing.T) {
	f := newOrphanFixture(t)
	age(t, 3*time.Hour, f.p1, f.broken, f.emptyMeta)
	reg, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.s.cfg
	cfg.OrphanAge = yamlconf.Duration(2 * time.Hour)
	f.s.cfg = cfg
	w, err := New(discard(), nil, Options{Config: cfg, DataDir: t.TempDir(), Conn: testStream(t, t.TempDir()), Registry: reg, Store: f.s})
	if err != nil {
		t.Fatal(err)
	}
	w.Compact(context.Background())
	f.check(t, map[string]bool{"p-2 leftover": true})
}
