package lake

import (
	"context"
	"time"

	"github.com/apache/iceberg-go/table"
	"github.com/apache/iceberg-go/table/compaction"
)

// Compact rewrites small data files of every table into files near TargetFileSize, and
// expires snapshots older than a day (keeping the current one) so replaced files can go.
// Then it deletes unreferenced files older than OrphanAge (leftovers of failed flushes,
// such as the empty metadata and truncated Parquet files a full disk leaves).
// Errors are logged: compaction is an optimisation, never a reason to stop ingest.
func (w *Writer) Compact(ctx context.Context) {
	n, err := w.store.Compact(ctx)
	w.m.compacted.Add(float64(n))
	if err != nil {
		w.log.Warn("lake compaction", "err", err)
	}
	if age := w.store.cfg.OrphanAge.D(); age > 0 {
		if _, err := w.store.RemoveOrphans(ctx, OrphanOptions{OlderThan: age}); err != nil {
			w.log.Warn("removing unreferenced lake files", "err", err)
		}
	}
}

// Compact rewrites small files of every table; it returns how many files it replaced.
func (s *Store) Compact(ctx context.Context) (int, error) {
	target := s.cfg.TargetFileSize
	cfg := compaction.DefaultConfig()
	cfg.TargetFileSizeBytes = target
	cfg.MinFileSizeBytes = target * 3 / 4
	cfg.MaxFileSizeBytes = target * 9 / 5
	cfg.MinInputFiles = uint(s.cfg.CompactMinFiles)
	replaced := 0
	for _, z := range Zones {
		names, err := s.TableNames(ctx, z)
		if err != nil {
			return replaced, err
		}
		for _, n := range names {
			t, err := s.Load(ctx, z, n)
			if err != nil {
				return replaced, err
			}
			plan, err := compaction.Analyze(ctx, t, cfg)
			if err != nil {
				return replaced, err
			}
			if len(plan.Groups) == 0 {
				continue
			}
			groups := make([]table.CompactionTaskGroup, 0, len(plan.Groups))
			for _, g := range plan.Groups {
				groups = append(groups, table.CompactionTaskGroup{PartitionKey: g.PartitionKey, Tasks: g.Tasks, TotalSizeBytes: g.TotalSizeBytes})
				replaced += len(g.Tasks)
			}
			release, err := s.gate.hold(ctx, false) // the rewritten files are unreferenced until the commit
			if err != nil {
				return replaced, err
			}
			res, err := t.RewriteDataFiles(ctx, groups, table.RewriteDataFilesOptions{})
			release()
			if err != nil {
				s.forget(z + "." + n)
				return replaced, err
			}
			nt := res.Table
			if nt != nil {
				tx := nt.NewTransaction()
				if err := tx.ExpireSnapshots(table.WithOlderThan(24*time.Hour), table.WithRetainLast(1)); err == nil {
					if et, err := tx.Commit(ctx); err == nil {
						nt = et
					}
				}
			}
			s.forget(z + "." + n)
			s.log.Info("compacted lake table", "table", z+"."+n, "groups", len(groups))
		}
	}
	return replaced, nil
}
