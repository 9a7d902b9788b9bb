package lake

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
)

// rowsPerWriter is the fewest rows worth a Parquet writer of their own: a table that gets
// more rows in one commit is written as several files at once, one per core.
const rowsPerWriter = 100_000

// commitAttempts bounds how often commitAppend reloads the table and tries its commit again
// when the commit fails (another process committed, or expired the snapshot the cached
// metadata names).
const commitAttempts = 4

// commitAppend appends recs to t in one Iceberg commit, recording seq (when > 0) as the
// table's stream watermark in the same commit. When the commit fails it reloads the table
// from the catalog and commits the same data files again, up to commitAttempts times; when
// it gives up, it deletes what it wrote (data files, manifests, metadata), so that a failed
// flush leaves nothing behind.
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
	start := time.Now()
	writeID := uuid.New()
	files, err := writeFilesID(ctx, t, recs, writeID)
	if err != nil {
		s.forget(key) // the cached handle may name files another process expired
		s.removeWrite(ctx, t, writeID, start, false, nil)
		return nil, fmt.Errorf("appending to %s: %w", key, err)
	}
	anyCommit := false
	for attempt := 1; ; attempt++ {
		nt, committing, err := s.tryAppend(ctx, t, files, seq)
		if err == nil {
			s.remember(key, nt)
			return nt, nil
		}
		s.forget(key)
		err = fmt.Errorf("committing %s: %w", key, err)
		rt, lerr := s.Load(ctx, zone, name)
		if lerr == nil && seq > 0 && streamSeq(rt) >= seq {
			// The commit landed although it reported an error (or another writer took the
			// same messages): the table holds these rows.
			s.remember(key, rt)
			return rt, nil
		}
		if lerr != nil || attempt >= commitAttempts || ctx.Err() != nil {
			// Data files are removed only when no attempt got as far as the catalog:
			// after a failed catalog commit (a full disk under SQLite) it is not certain
			// that it did not land.
			if committing || anyCommit {
				s.removeWrite(context.WithoutCancel(ctx), t, writeID, start, true, nil)
			} else {
				s.removeWrite(context.WithoutCancel(ctx), t, writeID, start, false, files)
			}
			return nil, err
		}
		anyCommit = anyCommit || committing
		s.log.Debug("lake commit failed; reloading the table and trying again", "table", key, "attempt", attempt, "err", err)
		t = rt
	}
}

// tryAppend stages and commits one append of files to t. committing tells whether it got
// to the catalog commit (an error then leaves open whether the commit landed).
func (s *Store) tryAppend(ctx context.Context, t *table.Table, files []iceberg.DataFile, seq uint64) (nt *table.Table, committing bool, err error) {
	tx := t.NewTransaction()
	snapProps := iceberg.Properties{}
	if seq > 0 {
		v := strconv.FormatUint(seq, 10)
		snapProps[PropStreamSeq] = v
		// Tables created before their unique columns were written plain get the properties
		// with their next commit (the files written from then on follow them).
		props := plainColumns(t.Schema(), t.Properties())
		props[PropStreamSeq] = v
		if err := tx.SetProperties(props); err != nil {
			return nil, false, err
		}
	}
	// The files are new (named by fresh UUIDs): no need to read every manifest of the
	// table to look for them.
	if err := tx.AddDataFiles(ctx, files, snapProps, table.WithoutDuplicateCheck(), table.WithoutAutoNameMapping()); err != nil {
		return nil, false, err
	}
	nt, err = tx.Commit(ctx)
	return nt, true, err
}

// writeFiles writes recs as Parquet data files of t (one or more per partition), splitting
// big inputs into parts written at the same time.
func writeFiles(ctx context.Context, t *table.Table, recs []arrow.RecordBatch) ([]iceberg.DataFile, error) {
	return writeFilesID(ctx, t, recs, uuid.New())
}

// writeFilesID is writeFiles with the write UUID that the data file names hold: part k of
// the input is written with writeID's last byte set to k, so every name starts with
// writePrefix(writeID).
func writeFilesID(ctx context.Context, t *table.Table, recs []arrow.RecordBatch, writeID uuid.UUID) ([]iceberg.DataFile, error) {
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
			for df, err := range table.WriteRecords(gctx, t, recs[0].Schema(), it, table.WithWriteUUID(partID(writeID, i))) {
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

// partID is the write UUID of part k of a write.
func partID(id uuid.UUID, k int) uuid.UUID {
	id[15] = byte(k)
	return id
}

// writePrefix is what the names of every data file of a write contain.
func writePrefix(id uuid.UUID) string { return id.String()[:34] }
