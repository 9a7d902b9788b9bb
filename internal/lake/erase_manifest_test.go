package lake

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
)

// manifestFiles lists, for every manifest of every snapshot of t, the data files it names
// (live or deleted).
func manifestFiles(t *testing.T, tb *table.Table) map[string]iceberg.ManifestEntryStatus {
	t.Helper()
	fio, err := tb.FS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]iceberg.ManifestEntryStatus{}
	for _, snap := range tb.Metadata().Snapshots() {
		mans, err := snap.Manifests(fio)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mans {
			for e, err := range m.Entries(fio, false) {
				if err != nil {
					t.Fatal(err)
				}
				out[strings.TrimPrefix(e.DataFile().FilePath(), "file://")] = e.Status()
			}
		}
	}
	return out
}

// TestEraseSingleManifest: a table written in one commit has one manifest; after erasing a
// subject no manifest may still name the removed file (whose column bounds are the subject).
func TestEraseSingleManifest(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files [][]string // subjects of the rows of each data file, all in one commit
	}{
		{"the subject's file and another", [][]string{{"p-1", "p-1"}, {"p-2"}}},
		{"one file of two subjects", [][]string{{"p-1", "p-2"}}},
		{"only the subject", [][]string{{"p-1"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := eraseStore(t, t.TempDir())
			cols := []Column{{ColSubject, String}, {"at", Timestamp}}
			tb, err := s.ensure(ctx, ZoneOps, "single", schemaOf(cols), "")
			if err != nil {
				t.Fatal(err)
			}
			// One data file per entry of tt.files, all added in one commit: one manifest.
			var files []iceberg.DataFile
			var removed []string // files holding the subject: erase drops or rewrites them
			for _, subjects := range tt.files {
				var rows [][]any
				for i, sub := range subjects {
					rows = append(rows, []any{sub, eraseT0.Add(time.Duration(i) * time.Second)})
				}
				rec, err := buildRows(tb, cols, rows)
				if err != nil {
					t.Fatal(err)
				}
				fs, err := writeFiles(ctx, tb, []arrow.RecordBatch{rec})
				rec.Release()
				if err != nil || len(fs) != 1 {
					t.Fatalf("writing %v: %d files, %v", subjects, len(fs), err)
				}
				files = append(files, fs[0])
				if slices.Contains(subjects, "p-1") {
					removed = append(removed, strings.TrimPrefix(fs[0].FilePath(), "file://"))
				}
			}
			tx := tb.NewTransaction()
			if err := tx.AddDataFiles(ctx, files, nil, table.WithoutDuplicateCheck()); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Erase(ctx, "p-1", EraseOptions{}); err != nil {
				t.Fatal(err)
			}
			tb, err = s.Load(ctx, ZoneOps, "single")
			if err != nil {
				t.Fatal(err)
			}
			if rows := tableRows(t, tb); strings.Contains(strings.Join(rows, ","), "p-1") {
				t.Fatalf("rows after erase: %v", rows)
			}
			for f, st := range manifestFiles(t, tb) {
				if slices.Contains(removed, f) {
					t.Errorf("a manifest still names the removed file %s (status %v)", f, st)
				}
			}
			// The table takes new rows afterwards, with its watermark.
			rec, err := buildRows(tb, cols, [][]any{{"p-3", eraseT0}})
			if err != nil {
				t.Fatal(err)
			}
			defer rec.Release()
			nt, err := s.commitAppend(ctx, ZoneOps, "single", tb, []arrow.RecordBatch{rec}, 7)
			if err != nil {
				t.Fatal(err)
			}
			if rows := tableRows(t, nt); len(rows) != len(tableRows(t, tb))+1 || streamSeq(nt) != 7 {
				t.Errorf("after an append: rows %v, watermark %d", rows, streamSeq(nt))
			}
		})
	}
}
