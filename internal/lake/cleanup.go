package lake

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/google/uuid"
)

// removeWrite deletes what a failed append to t wrote: its data files (files lists the
// complete ones; in a local warehouse, every file whose name holds writeID's prefix, which
// includes files a full disk cut short) and the empty files of the table's metadata folder
// created since start (a metadata, manifest or manifest list write the disk cut short).
// With metaOnly (a catalog commit that failed, which under a full disk may yet have landed)
// the data files stay. Complete metadata files of a failed commit are left to orphan-file
// removal, which knows what the table references. Errors are logged.
func (s *Store) removeWrite(ctx context.Context, t *table.Table, writeID uuid.UUID, start time.Time, metaOnly bool, files []iceberg.DataFile) {
	fsys, err := s.FS(ctx, t.Location())
	if err != nil {
		s.log.Warn("cleaning up after a failed lake write", "table", t.Identifier(), "err", err)
		return
	}
	removed := 0
	if !metaOnly {
		for _, f := range files {
			if err := fsys.Remove(f.FilePath()); err == nil {
				removed++
			} else if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("removing a file of a failed lake write", "file", f.FilePath(), "err", err)
			}
		}
	}
	if root, ok := localPath(t.Location()); ok {
		if r, ok := fsys.(relocFS); ok {
			root = r.Resolve(root)
		}
		id := writePrefix(writeID)
		_ = filepath.WalkDir(filepath.Join(root, "data"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.Contains(d.Name(), id) {
				return nil
			}
			// Even when a commit may have landed, a data file the disk cut short (no Parquet
			// footer) can never be read: removing it loses nothing.
			if (!metaOnly || !wholeParquet(p)) && os.Remove(p) == nil {
				removed++
			}
			return nil
		})
		meta := filepath.Join(root, "metadata")
		entries, _ := os.ReadDir(meta)
		for _, e := range entries {
			info, err := e.Info()
			if err != nil || info.IsDir() || info.Size() != 0 || info.ModTime().Before(start.Add(-time.Second)) {
				continue
			}
			if os.Remove(filepath.Join(meta, e.Name())) == nil {
				removed++
			}
		}
	}
	if removed > 0 {
		s.log.Info("removed the files of a failed lake write", "table", t.Identifier(), "files", removed)
	}
}

// wholeParquet reports whether the file at p ends with the Parquet magic (its footer was
// written).
func wholeParquet(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return true // leave what cannot be checked
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || info.Size() < 12 {
		return err != nil
	}
	tail := make([]byte, 4)
	if _, err := f.ReadAt(tail, info.Size()-4); err != nil {
		return true
	}
	return string(tail) == "PAR1"
}

// localPath turns a file:// location (or a plain absolute path) into a local path.
func localPath(loc string) (string, bool) {
	if p, ok := strings.CutPrefix(loc, "file://"); ok {
		return filepath.FromSlash(p), true
	}
	if strings.HasPrefix(loc, "/") {
		return loc, true
	}
	return "", false
}
