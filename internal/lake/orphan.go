package lake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
)

// Orphan files are files under a table's location that no metadata the catalog points to
// refers to: not the current or a previous metadata.json the table keeps, not a manifest
// list, manifest, data or delete file of any retained snapshot. A flush or commit that
// failed (a conflict, a full disk, a crash between writing files and committing them)
// leaves them; they are outside every snapshot, so no query through the catalog reads them,
// but anyone who can read the warehouse can (read_parquet over the folder), and erase must
// not leave a subject's rows in them.
//
// A file is also unreferenced for a short while when it is in flight: written by a commit
// that has not happened yet. Removing such a file would make the coming commit refer to a
// missing file. pulselake's own writers (the lake writer, the ops row buffer, pipelines,
// compaction, erase) therefore hold the write gate in shared mode from the first file they
// write until their commit returns, and the orphan sweep holds it exclusively while it
// lists and deletes: with the gate held nothing of pulselake is in flight, so every
// unreferenced file is a leftover. The gate is an flock on a file beside the SQLite catalog
// (or in a local warehouse), so it covers every pulselake process on the machine that opens
// the same catalog (serve, erase, pipeline run). Writers it cannot see (another machine
// sharing an S3 warehouse through a REST catalog, an external engine committing through
// /iceberg) are protected only by the age threshold (OrphanOptions.OlderThan).

// gateFile is the name of the write gate's lock file.
const gateFile = "lake-write.lock"

// writeGate serialises orphan sweeps against in-flight writes.
type writeGate struct {
	path string       // flock file; "" when the catalog and warehouse are not local
	mu   sync.RWMutex // used when path is ""
}

func newWriteGate(cfg Config) *writeGate {
	g := &writeGate{}
	switch {
	case cfg.Catalog.Type != "rest" && cfg.Catalog.URI != "":
		g.path = filepath.Join(filepath.Dir(cfg.Catalog.URI), gateFile)
	default:
		if u, err := url.Parse(cfg.Warehouse); err == nil && u.Scheme == "file" {
			g.path = filepath.Join(u.Path, gateFile)
		}
	}
	return g
}

// hold takes the gate, shared (a write in flight) or exclusive (an orphan sweep), waiting
// until it is free or ctx ends. release gives it back.
func (g *writeGate) hold(ctx context.Context, exclusive bool) (release func(), err error) {
	if g.path == "" {
		if exclusive {
			g.mu.Lock()
			return g.mu.Unlock, nil
		}
		g.mu.RLock()
		return g.mu.RUnlock, nil
	}
	f, err := os.OpenFile(g.path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the lake write gate %s: %w", g.path, err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking the lake write gate %s: %w", g.path, err)
		}
		if err := sleepCtx(ctx, wait); err != nil {
			f.Close()
			return nil, err
		}
		wait = min(wait*2, 20*time.Millisecond)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// OrphanOptions configures Store.RemoveOrphans.
type OrphanOptions struct {
	// OlderThan: unreferenced files last modified at least this long ago are removed,
	// whatever they hold. Zero removes every unreferenced file; a negative value removes
	// none by age (only those of Subject).
	OlderThan time.Duration
	// Subject, when set, also removes every unreferenced file that holds a row of the
	// subject, whatever its age: Parquet files whose subject column has the value (or that
	// cannot be read, so may), and unreferenced manifests and manifest lists (their column
	// bounds can name it). This is what erase runs.
	Subject string
	// DryRun only finds the files.
	DryRun bool
}

// OrphanReport is what RemoveOrphans found under one table's location.
type OrphanReport struct {
	Zone, Name string
	// Orphans is the number of unreferenced files found.
	Orphans int
	// OfSubject lists the unreferenced files that hold (or may hold) the subject.
	OfSubject []string
	// Removed lists the files deleted (none in a dry run).
	Removed []string
	// Kept is the number of unreferenced files left because they are younger than
	// OlderThan and do not hold the subject.
	Kept int
}

// RemoveOrphans deletes the unreferenced files of every table (see OrphanOptions), each
// table under the exclusive write gate. Like Iceberg's remove_orphan_files, it lists every
// file under the table's location through the table's file IO (file:// and s3://).
func (s *Store) RemoveOrphans(ctx context.Context, o OrphanOptions) ([]OrphanReport, error) {
	var out []OrphanReport
	for _, z := range Zones {
		names, err := s.TableNames(ctx, z)
		if err != nil {
			return out, err
		}
		for _, n := range names {
			r, err := s.removeOrphans(ctx, z, n, o)
			out = append(out, r)
			if err != nil {
				return out, fmt.Errorf("removing unreferenced files of %s.%s: %w", z, n, err)
			}
		}
	}
	return out, nil
}

func (s *Store) removeOrphans(ctx context.Context, zone, name string, o OrphanOptions) (OrphanReport, error) {
	r := OrphanReport{Zone: zone, Name: name}
	release, err := s.gate.hold(ctx, true)
	if err != nil {
		return r, err
	}
	defer release()
	// Loaded under the gate: no commit of pulselake can land between this and the delete.
	t, err := s.Load(ctx, zone, name)
	if err != nil {
		return r, err
	}
	fio, err := t.FS(ctx)
	if err != nil {
		return r, fmt.Errorf("opening the table's storage: %w", err)
	}
	plan, err := t.PlanOrphanFiles(ctx, table.WithFilesOlderThan(0))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return r, nil // nothing written yet
		}
		return r, fmt.Errorf("listing files: %w", err)
	}
	files := plan.Files()
	r.Orphans = len(files)
	if len(files) == 0 {
		return r, nil
	}
	var mtimes map[string]time.Time
	if o.OlderThan > 0 {
		mtimes, err = modTimes(fio, t.Location())
		if err != nil {
			return r, fmt.Errorf("listing files: %w", err)
		}
	}
	now := time.Now()
	var doomed []string
	for _, f := range files {
		ofSubject := false
		if o.Subject != "" {
			if ofSubject, err = holdsSubject(fio, f, o.Subject); err != nil {
				return r, err
			}
			if ofSubject {
				r.OfSubject = append(r.OfSubject, f)
			}
		}
		old := o.OlderThan == 0
		if o.OlderThan > 0 {
			mt, ok := mtimes[f]
			old = ok && now.Sub(mt) >= o.OlderThan
		}
		if ofSubject || old {
			doomed = append(doomed, f)
		} else {
			r.Kept++
		}
	}
	if o.DryRun {
		return r, nil
	}
	for _, f := range doomed {
		if err := fio.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return r, fmt.Errorf("deleting %s: %w", f, err)
		}
		r.Removed = append(r.Removed, f)
	}
	if len(r.Removed) > 0 {
		s.log.Info("removed unreferenced lake files", "table", zone+"."+name, "files", len(r.Removed), "of_subject", len(r.OfSubject) > 0)
	}
	return r, nil
}

// modTimes lists the modification time of every file under loc.
func modTimes(fio iceio.IO, loc string) (map[string]time.Time, error) {
	l, ok := fio.(iceio.ListableIO)
	if !ok {
		return nil, fmt.Errorf("the storage of %s cannot list files (%T)", loc, fio)
	}
	out := map[string]time.Time{}
	err := l.WalkDir(loc, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = info.ModTime()
		return nil
	})
	return out, err
}

// holdsSubject reports whether an unreferenced file holds, or may hold, a row of subject:
// a Parquet file whose "subject" column has the value somewhere (or that cannot be read);
// an Avro file (a manifest's column bounds can be the subject). Other files (table
// metadata JSON, statistics) hold no row values.
func holdsSubject(fio iceio.IO, loc, subject string) (bool, error) {
	switch strings.ToLower(path.Ext(loc)) {
	case ".avro":
		return true, nil
	case ".parquet":
	default:
		return false, nil
	}
	f, err := fio.Open(loc)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("opening %s: %w", loc, err)
	}
	defer f.Close()
	found, err := parquetHolds(f, subject)
	if err != nil {
		return true, nil // unreadable (truncated by a full disk or a crash): it may hold rows
	}
	return found, nil
}

// parquetHolds scans the top-level "subject" column of a Parquet file for value, skipping
// row groups whose statistics exclude it.
func parquetHolds(f parquet.ReaderAtSeeker, value string) (found bool, err error) {
	defer func() {
		if p := recover(); p != nil { // a damaged file can make the reader panic
			err = fmt.Errorf("reading parquet: %v", p)
		}
	}()
	rdr, err := file.NewParquetReader(f)
	if err != nil {
		return false, err
	}
	defer rdr.Close()
	col := rdr.MetaData().Schema.ColumnIndexByName(ColSubject)
	if col < 0 {
		return false, nil
	}
	want := []byte(value)
	vals := make([]parquet.ByteArray, 4096)
	defs := make([]int16, 4096)
	for i := range rdr.NumRowGroups() {
		rg := rdr.RowGroup(i)
		if md, err := rg.MetaData().ColumnChunk(col); err == nil {
			if st, err := md.Statistics(); err == nil && st != nil && st.HasMinMax() {
				if bs, ok := st.(interface {
					Min() parquet.ByteArray
					Max() parquet.ByteArray
				}); ok && (bytes.Compare(want, bs.Min()) < 0 || bytes.Compare(want, bs.Max()) > 0) {
					continue
				}
			}
		}
		cr, err := rg.Column(col)
		if err != nil {
			return false, err
		}
		bcr, ok := cr.(*file.ByteArrayColumnChunkReader)
		if !ok {
			return true, nil // not a string column: cannot tell, assume it may
		}
		for bcr.HasNext() {
			total, n, err := bcr.ReadBatch(int64(len(vals)), vals, defs, nil)
			if err != nil {
				return false, err
			}
			if slices.ContainsFunc(vals[:n], func(v parquet.ByteArray) bool { return bytes.Equal(v, want) }) {
				return true, nil
			}
			if total == 0 {
				break
			}
		}
	}
	return false, nil
}
