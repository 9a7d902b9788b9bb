package lake

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/google/uuid"
)

// removeWrite deletes what a failed append wrote to t: its data files (named by writeID;
// files lists the complete ones), the manifest lists staged for it (lists) and their
// manifests, and — in a local warehouse — the files of the table's metadata folder created
// since start that are empty or not valid JSON metadata (a write the disk cut short) or that
// name one of lists. Iceberg files are never changed once written and a failed commit
// leaves them unreferenced, so nothing another writer needs is removed; orphan-file removal
// on the compaction schedule is the backstop for what a crash leaves. Errors are logged.
func (s *Store) removeWrite(ctx context.Context, t *table.Table, writeID uuid.UUID, start time.Time, files []iceberg.DataFile, lists ...string) {
	fsys, err := s.FS(ctx, t.Location())
	if err != nil {
		s.log.Warn("cleaning up after a failed lake write", "table", t.Identifier(), "err", err)
		return
	}
	removed := 0
	rm := func(loc string) {
		if err := fsys.Remove(loc); err == nil {
			removed++
		} else if !os.IsNotExist(err) && !strings.Contains(err.Error(), "not exist") && !strings.Contains(err.Error(), "NoSuchKey") {
			s.log.Warn("removing a file of a failed lake write", "file", loc, "err", err)
		}
	}
	for _, f := range files {
		rm(f.FilePath())
	}
	var commits []string // commit UUIDs of the staged manifest lists
	for _, l := range lists {
		rm(l)
		// snap-<snapshot id>-<attempt>-<commit uuid>.avro
		base := strings.TrimSuffix(path.Base(l), ".avro")
		if i := strings.LastIndexByte(base, '-'); i > 0 && len(base) > 36 {
			commits = append(commits, base[len(base)-36:])
		}
	}
	if root, ok := localPath(t.Location()); ok {
		id := writePrefix(writeID)
		_ = filepath.WalkDir(filepath.Join(root, "data"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(d.Name(), id) {
				if os.Remove(p) == nil {
					removed++
				}
			}
			return nil
		})
		meta := filepath.Join(root, "metadata")
		entries, _ := os.ReadDir(meta)
		current, _ := localPath(t.MetadataLocation())
		for _, e := range entries {
			info, err := e.Info()
			if err != nil || info.IsDir() || info.ModTime().Before(start.Add(-time.Second)) {
				continue
			}
			p := filepath.Join(meta, e.Name())
			if p == current {
				continue
			}
			if garbage(p, info, commits, lists) && os.Remove(p) == nil {
				removed++
			}
		}
	}
	if removed > 0 {
		s.log.Info("removed the files of a failed lake write", "table", t.Identifier(), "files", removed)
	}
}

// garbage reports whether a file of the metadata folder, created during a failed write,
// belongs to it or was cut short.
func garbage(p string, info fs.FileInfo, commits, lists []string) bool {
	if info.Size() == 0 {
		return true
	}
	name := info.Name()
	for _, c := range commits {
		if strings.HasPrefix(name, c+"-m") {
			return true
		}
	}
	if !strings.HasSuffix(name, ".metadata.json") {
		return false
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	if !json.Valid(data) {
		return true
	}
	for _, l := range lists {
		if strings.Contains(string(data), l) {
			return true
		}
	}
	return false
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
