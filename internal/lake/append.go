package lake

import (
	"context"
	"fmt"
	"runtime"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
)

// rowsPerWriter is the fewest rows worth a Parquet writer of their own: a table that gets
// more rows in one commit is written as several files at once, one per core.
const rowsPerWriter = 100_000

// commitAppend appends recs to t in one Iceberg commit, recording seq (when > 0) as the
// table's stream watermark in the same commit.
func (s *Store) commitAppend(ctx context.Context, zone, name string, t *table.Table, recs []arrow.RecordBatch, seq uint64) (*table.Table, error) {
	key := zone + "." + name
	if len(recs) == 0 {
		return t, nil
	}
	release, err := s.gate.hold(ctx, false) // the files are unreferenced until the commit
	if err != nil {
		return nil, fmt.Errorf("appending to %s: %w", key, err)
	}
	defer release()
	files, err := writeFiles(ctx, t, recs)
	if err != nil {
		s.forget(key) // the cached handle may name files another process expired
		return nil, fmt.Errorf("appending to %s: %w", key, err)
	}
	tx := t.NewTransaction()
	snapProps := iceberg.Properties{}
	if seq > 0 {
		v := strconv.FormatUint(seq, 10)
		snapProps[PropStreamSeq] = v
		if err := tx.SetProperties(iceberg.Properties{PropStreamSeq: v}); err != nil {
			return nil, fmt.Errorf("appending to %s: %w", key, err)
		}
	}
	// The files are new (named by fresh UUIDs): no need to read every manifest of the
	// table to look for them.
	if err := tx.AddDataFiles(ctx, files, snapProps, table.WithoutDuplicateCheck(), table.WithoutAutoNameMapping()); err != nil {
		s.forget(key)
		return nil, fmt.Errorf("appending to %s: %w", key, err)
	}
	nt, err := tx.Commit(ctx)
	if err != nil {
		s.forget(key) // reload on next use: another process may have committed
		return nil, fmt.Errorf("committing %s: %w", key, err)
	}
	s.remember(key, nt)
	return nt, nil
}

// writeFiles writes recs as Parquet data files of t (one or more per partition), splitting
// big inputs into parts written at the same time.
func writeFiles(ctx context.Context, t *table.Table, recs []arrow.RecordBatch) ([]iceberg.DataFile, error) {
	var rows int64
	for _, r := range recs {
		rows += r.NumRows()
	}
	parts := int(min(max(rows/rowsPerWriter, 1), int64(runtime.GOMAXPROCS(0))))
	// Part k holds the rows [k·rows/parts, (k+1)·rows/parts) of the input, as slices of
	// its records (no copy).
	chunks := make([][]arrow.RecordBatch, parts)
	bound := func(k int) int64 { return rows * int64(k) / int64(parts) }
	var at int64 // input row of r's first row
	for _, r := range recs {
		for k := range parts {
			lo, hi := max(bound(k), at), min(bound(k+1), at+r.NumRows())
			if lo < hi {
				chunks[k] = append(chunks[k], r.NewSlice(lo-at, hi-at))
			}
		}
		at += r.NumRows()
	}
	defer func() {
		for _, c := range chunks {
			for _, r := range c {
				r.Release()
			}
		}
	}()
	files := make([][]iceberg.DataFile, parts)
	g, gctx := errgroup.WithContext(ctx)
	for i, c := range chunks {
		g.Go(func() error {
			it := func(yield func(arrow.RecordBatch, error) bool) {
				for _, r := range c {
					if !yield(r, nil) {
						return
					}
				}
			}
			for df, err := range table.WriteRecords(gctx, t, recs[0].Schema(), it, table.WithWriteUUID(uuid.New())) {
				if err != nil {
					return err
				}
				files[i] = append(files[i], df)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var all []iceberg.DataFile
	for _, f := range files {
		all = append(all, f...)
	}
	return all, nil
}
