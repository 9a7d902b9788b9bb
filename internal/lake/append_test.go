package lake

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
)

// TestCommitAppendSplitsBigInputs writes inputs above rowsPerWriter as several files at once
// and checks that one commit holds every row exactly once, whatever the record boundaries.
func TestCommitAppendSplitsBigInputs(t *testing.T) {
	cols := []Column{{ColTime, Timestamp}, {ColID, String}, {"n", Int64}}
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		procs   int
		records []int // rows per input record
		files   int   // data files expected in the commit
	}{
		{procs: 2, records: []int{50_000}, files: 1},                      // small: one writer
		{procs: 2, records: []int{70_000, 90_000, 50_000}, files: 2},      // parts cross record boundaries
		{procs: 4, records: []int{1, 250_000, 49_999, 100_001}, files: 4}, // uneven, a one-row record
		{procs: 3, records: []int{100_000, 100_000, 100_000}, files: 3},   // boundaries on records
		{procs: 8, records: []int{150_000}, files: 1},                     // fewer rows than parts need
	} {
		t.Run(fmt.Sprint(tt.procs, tt.records), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(tt.procs))
			s := eraseStore(t, t.TempDir())
			ctx := context.Background()
			tb, err := s.ensure(ctx, ZoneOps, "split", schemaOf(cols), "")
			if err != nil {
				t.Fatal(err)
			}
			var recs []arrow.RecordBatch
			total := 0
			for _, n := range tt.records {
				rows := make([][]any, n)
				for i := range rows {
					k := total + i
					rows[i] = []any{t0.Add(time.Duration(k) * time.Second), "id-" + strconv.Itoa(k), int64(k)}
				}
				rec, err := buildRows(tb, cols, rows)
				if err != nil {
					t.Fatal(err)
				}
				defer rec.Release()
				recs = append(recs, rec)
				total += n
			}
			nt, err := s.commitAppend(ctx, ZoneOps, "split", tb, recs, 42)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(currentFiles(t, nt)); got != tt.files {
				t.Errorf("%d data files, want %d", got, tt.files)
			}
			if got := streamSeq(nt); got != 42 {
				t.Errorf("watermark %d, want 42", got)
			}
			if n := len(nt.Metadata().Snapshots()); n != 1 {
				t.Errorf("%d snapshots, want 1", n)
			}
			seen := make([]int, total)
			_, it, err := nt.Scan().ToArrowRecords(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for rec, err := range it {
				if err != nil {
					t.Fatal(err)
				}
				ns := rec.Column(2)
				ids := rec.Column(1)
				for r := range int(rec.NumRows()) {
					k, _ := strconv.Atoi(ns.ValueStr(r))
					if ids.ValueStr(r) != "id-"+strconv.Itoa(k) {
						t.Fatalf("row %d: id %s", k, ids.ValueStr(r))
					}
					seen[k]++
				}
				rec.Release()
			}
			for k, c := range seen {
				if c != 1 {
					t.Fatalf("row %d is in the table %d times", k, c)
				}
			}
		})
	}
}
