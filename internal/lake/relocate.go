package lake

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	iceio "github.com/apache/iceberg-go/io"
)

// A moved or copied data directory. Iceberg metadata holds absolute locations (the catalog
// holds each table's metadata file, metadata files name manifest lists, manifests name data
// files), so a local warehouse that was moved or copied names files at its old place: after
// a move they are gone, after a copy they are the original's. Rewriting every metadata,
// manifest list and manifest file would be a migration of its own; instead, like engines
// that relocate tables on read, the store maps locations: it records where the warehouse
// was created (markerFile in the warehouse folder; for a warehouse made before the marker,
// the catalog's table locations tell), and when that is not where it is now, every file of
// the warehouse is opened, written and removed through a file IO that replaces the old
// prefix with the new one. The metadata keeps naming the old place (new commits too, so
// that it stays consistent); DataFiles returns the files' present locations.
const (
	markerFile = ".pulselake-warehouse"
	// propRelocateFrom and propRelocateTo are file IO properties: locations under From are
	// read and written under To.
	propRelocateFrom = "pulselake.relocate-from"
	propRelocateTo   = "pulselake.relocate-to"
)

var registerReloc sync.Once

// useRelocatingFS makes file:// locations use relocFS when the IO properties ask for it
// (and the plain local file system otherwise, as before).
func useRelocatingFS() {
	registerReloc.Do(func() {
		factory := func(_ context.Context, _ *url.URL, props map[string]string) (iceio.IO, error) {
			from, to := props[propRelocateFrom], props[propRelocateTo]
			if from == "" || to == "" {
				return iceio.LocalFS{}, nil
			}
			return relocFS{from: from, to: to}, nil
		}
		iceio.Unregister("file")
		iceio.Register("file", factory)
		iceio.Unregister("")
		iceio.Register("", factory)
	})
}

// warehouseOrigin returns the local path where the warehouse at dir was created, recording
// dir as the origin when nothing is known yet. db is the SQL catalog (nil for others).
func warehouseOrigin(dir string, db *sql.DB) (string, error) {
	marker := filepath.Join(dir, markerFile)
	data, err := os.ReadFile(marker)
	if err == nil {
		if p := strings.TrimSpace(string(data)); p != "" {
			return p, nil
		}
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("reading %s: %w", marker, err)
	}
	origin := dir
	if db != nil {
		// A warehouse made before the marker existed: a table's metadata location is
		// <warehouse>/<zone>/<table>/metadata/<file>.
		var ns, name, loc string
		row := db.QueryRow(`SELECT table_namespace, table_name, metadata_location FROM iceberg_tables WHERE metadata_location IS NOT NULL LIMIT 1`)
		if row.Scan(&ns, &name, &loc) == nil {
			if p, ok := localPath(loc); ok {
				if i := strings.LastIndex(p, "/"+ns+"/"+name+"/metadata/"); i > 0 {
					origin = p[:i]
				}
			}
		}
	}
	// Best effort: a read-only copy is still read correctly (the catalog tells again).
	_ = os.WriteFile(marker, []byte(origin+"\n"), 0o644)
	return origin, nil
}

// relocFS is the local file system with locations under from mapped to to (both local
// paths, no trailing slash).
type relocFS struct{ from, to string }

// Resolve returns the present local path of a location.
func (r relocFS) Resolve(name string) string {
	p, ok := localPath(name)
	if !ok {
		return name
	}
	if p == r.from || strings.HasPrefix(p, r.from+"/") {
		return r.to + p[len(r.from):]
	}
	return p
}

// back maps a present path to the location the metadata uses.
func (r relocFS) back(p string) string {
	if p == r.to || strings.HasPrefix(p, r.to+"/") {
		return r.from + p[len(r.to):]
	}
	return p
}

var local iceio.LocalFS

func (r relocFS) Open(name string) (iceio.File, error)  { return local.Open(r.Resolve(name)) }
func (r relocFS) ReadFile(name string) ([]byte, error)  { return local.ReadFile(r.Resolve(name)) }
func (r relocFS) Remove(name string) error              { return local.Remove(r.Resolve(name)) }
func (r relocFS) RemoveAll(name string) error           { return local.RemoveAll(r.Resolve(name)) }
func (r relocFS) MkdirAll(name string) error            { return local.MkdirAll(r.Resolve(name)) }
func (r relocFS) Mkdir(name string) error               { return local.Mkdir(r.Resolve(name)) }
func (r relocFS) Stat(name string) (fs.FileInfo, error) { return local.Stat(r.Resolve(name)) }
func (r relocFS) ReadDir(name string) ([]fs.DirEntry, error) {
	return local.ReadDir(r.Resolve(name))
}
func (r relocFS) Create(name string) (iceio.FileWriter, error) {
	return local.Create(r.Resolve(name))
}
func (r relocFS) WriteFile(name string, p []byte) error { return local.WriteFile(r.Resolve(name), p) }
func (r relocFS) Rename(oldpath, newpath string) error {
	return local.Rename(r.Resolve(oldpath), r.Resolve(newpath))
}
func (r relocFS) RenameNoReplace(oldpath, newpath string) error {
	return local.RenameNoReplace(r.Resolve(oldpath), r.Resolve(newpath))
}

// WalkDir walks the present folder and hands fn the locations the metadata uses, so that
// callers comparing them with metadata (orphan-file removal) see one naming.
func (r relocFS) WalkDir(root string, fn fs.WalkDirFunc) error {
	return local.WalkDir(r.Resolve(root), func(p string, d fs.DirEntry, err error) error {
		return fn(r.back(p), d, err)
	})
}

// resolveLocation returns the present location of a file of t's warehouse.
func resolveLocation(fsys iceio.IO, loc string) string {
	r, ok := fsys.(relocFS)
	if !ok {
		return loc
	}
	p := r.Resolve(loc)
	if strings.HasPrefix(loc, "file://") {
		return "file://" + filepath.ToSlash(p)
	}
	return p
}
