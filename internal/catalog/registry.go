// Package catalog registers external files (JSON lines, CSV, Parquet under hive-style
// k=v folders) as tables of the lake, the job of a Glue crawler: Crawl infers a table's
// schema and partitions from samples and records it in the registry, List reads the
// registry, and DDL prints statements that let Athena, Trino or Spark read the same data.
//
// The registry is one JSON file, <data>/catalog/external.json (docs/catalog.md). Every change
// is a read-modify-write under an exclusive lock on <data>/catalog/external.json.lock, and the
// new content replaces the file atomically (temporary file, fsync, rename, fsync of the
// folder), so readers never see a partial file and concurrent crawls never lose each other's
// tables. The query engine turns each entry into a view named zone.table.
//
// A folder inside the data directory is recorded relative to it, so a data directory that is
// moved or copied keeps its crawled tables; a folder elsewhere is recorded as an absolute
// path. Migrate rewrites the absolute paths of registries written before.
package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"github.com/pulselake/pulselake/internal/durable"
)

// Format of an external table's files.
type Format string

// Formats the crawler recognises.
const (
	FormatJSON    Format = "json" // JSON lines, one object per line (optionally gzip-compressed)
	FormatCSV     Format = "csv"  // comma-separated with a header row (optionally gzip-compressed)
	FormatParquet Format = "parquet"
)

// Formats lists the formats in the order they are tried.
var Formats = []Format{FormatJSON, FormatCSV, FormatParquet}

// Portable column types (SPEC: string, bigint, double, boolean, timestamp, date).
const (
	TypeString    = "string"
	TypeBigint    = "bigint"
	TypeDouble    = "double"
	TypeBoolean   = "boolean"
	TypeTimestamp = "timestamp"
	TypeDate      = "date"
)

// SQLType is the SQL type the query engine reads a column of the portable type as: the
// engine reads crawled files with these types, never with its own inference.
func SQLType(portable string) string {
	switch portable {
	case TypeBigint:
		return "BIGINT"
	case TypeDouble:
		return "DOUBLE"
	case TypeBoolean:
		return "BOOLEAN"
	case TypeTimestamp:
		return "TIMESTAMP"
	case TypeDate:
		return "DATE"
	}
	return "VARCHAR" // string, and the JSON text of nested values
}

// Column is one column of an external table.
type Column struct {
	Name string `json:"name"`
	// Type is a portable SQL type: string, bigint, double, boolean, timestamp, date.
	Type string `json:"type"`
	// Nested marks a JSON column whose values are objects or arrays, kept as JSON text.
	Nested bool `json:"nested,omitempty"`
}

// Table is one registered external table.
type Table struct {
	Zone string `json:"zone"`
	Name string `json:"name"`
	// Location is the folder the table's files are under: an absolute local path in memory;
	// in the registry file, relative to the data directory when the folder is inside it.
	Location string `json:"location"`
	Format   Format `json:"format"`
	// Columns are the data columns inferred from samples (partition columns excluded).
	Columns []Column `json:"columns"`
	// Partitions are the hive k=v folder keys, outermost first.
	Partitions []Column `json:"partitions,omitempty"`
	// Quoted is set for CSV files in which some value is enclosed in double quotes.
	Quoted    bool   `json:"quoted,omitempty"`
	Files     int64  `json:"files"`
	Bytes     int64  `json:"bytes"`
	Rows      int64  `json:"rows"`
	CrawledAt string `json:"crawled_at"`
}

// filePattern is the file name pattern of a format (path.Match syntax, also a DuckDB glob).
func filePattern(f Format) string {
	switch f {
	case FormatJSON:
		return "*.*json*" // .json, .jsonl, .ndjson and their .gz forms
	case FormatCSV:
		return "*.csv*" // .csv and .csv.gz
	case FormatParquet:
		return "*.parquet"
	}
	return ""
}

// Glob is the file pattern of the table: every file of its format under Location, at any
// depth. The crawler counts exactly the files this pattern matches.
func (t Table) Glob() string {
	return strings.TrimRight(t.Location, "/") + "/**/" + filePattern(t.Format)
}

// Key is zone.name.
func (t Table) Key() string { return t.Zone + "." + t.Name }

// Zones a crawled table may be registered in; ops and quarantine belong to pulselake.
var Zones = []string{"landing", "trusted", "curated"}

var nameRE = regexp.MustCompile(`^[a-z0-9_]{1,128}$`)

// ValidateName checks a zone and a table name for registration.
func ValidateName(zone, name string) error {
	if !slices.Contains(Zones, zone) {
		return fmt.Errorf("zone %q: crawled tables go in landing, trusted or curated (ops and quarantine are written by pulselake itself)", zone)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("table name %q: use 1 to 128 lower-case letters, digits and underscores", name)
	}
	return nil
}

// RegistryPath is the registry file of a data directory.
func RegistryPath(dataDir string) string { return filepath.Join(dataDir, "catalog", "external.json") }

// List returns the registered external tables of a data directory, sorted by zone and name
// (none when the registry does not exist), with absolute locations.
func List(dataDir string) ([]Table, error) {
	ts, err := readRegistry(dataDir)
	if err != nil {
		return nil, err
	}
	base, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("reading the catalog registry: %w", err)
	}
	for i := range ts {
		ts[i].Location = resolve(base, ts[i].Location)
	}
	return ts, nil
}

// readRegistry returns the entries as the file holds them.
func readRegistry(dataDir string) ([]Table, error) {
	b, err := os.ReadFile(RegistryPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the catalog registry: %w", err)
	}
	var ts []Table
	if err := json.Unmarshal(b, &ts); err != nil {
		return nil, fmt.Errorf("reading the catalog registry %s: %w (fix or delete the file and crawl again)", RegistryPath(dataDir), err)
	}
	return ts, nil
}

// resolve returns the absolute path of a recorded location (base is the absolute data
// directory).
func resolve(base, loc string) string {
	if filepath.IsAbs(loc) {
		return loc
	}
	return filepath.Join(base, filepath.FromSlash(loc))
}

// relative returns loc relative to base (slash-separated) when loc is inside base.
func relative(base, loc string) (string, bool) {
	rel, err := filepath.Rel(base, loc)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// record returns the form of an absolute location the registry file keeps.
func record(base, loc string) string {
	if rel, ok := relative(base, loc); ok {
		return rel
	}
	return loc
}

// Moved maps the absolute locations of ts inside previous, the path the data directory had
// before it was moved or copied ("" when unknown), to the same place inside dataDir: what
// Migrate records, for a registry it could not rewrite (a read-only copy).
func Moved(ts []Table, dataDir, previous string) []Table {
	if previous == "" {
		return ts
	}
	base, err := filepath.Abs(dataDir)
	if err != nil {
		return ts
	}
	for i := range ts {
		if rel, ok := relative(previous, ts[i].Location); ok && filepath.IsAbs(ts[i].Location) {
			ts[i].Location = resolve(base, rel)
		}
	}
	return ts
}

// Migrate rewrites the absolute locations of a registry written before locations were
// recorded relative to the data directory: those inside dataDir, and those inside
// previous, the path dataDir had before it was moved or copied ("" when unknown), become
// relative to the data directory. It returns how many entries it rewrote.
func Migrate(dataDir, previous string) (int, error) {
	ts, err := readRegistry(dataDir)
	if err != nil || len(ts) == 0 {
		return 0, err
	}
	base, err := filepath.Abs(dataDir)
	if err != nil {
		return 0, fmt.Errorf("migrating the catalog registry: %w", err)
	}
	movable := func(loc string) bool {
		if !filepath.IsAbs(loc) {
			return false
		}
		if _, ok := relative(base, loc); ok {
			return true
		}
		_, ok := relative(previous, loc)
		return previous != "" && ok
	}
	if !slices.ContainsFunc(ts, func(t Table) bool { return movable(t.Location) }) {
		return 0, nil
	}
	n := 0
	err = updateRaw(dataDir, func(ts []Table) []Table {
		for i := range ts {
			loc := ts[i].Location
			if !movable(loc) {
				continue
			}
			if rel, ok := relative(base, loc); ok {
				ts[i].Location = rel
			} else if rel, ok := relative(previous, loc); ok {
				ts[i].Location = rel
			}
			n++
		}
		return ts
	})
	return n, err
}

// Get returns the registered table zone.name, or nil when there is none.
func Get(dataDir, zone, name string) (*Table, error) {
	ts, err := List(dataDir)
	if err != nil {
		return nil, err
	}
	for i := range ts {
		if ts[i].Zone == zone && ts[i].Name == name {
			return &ts[i], nil
		}
	}
	return nil, nil
}

// Put adds t to the registry or replaces the entry of the same zone and name, and returns the
// entry it replaced (nil for a new table).
func Put(dataDir string, t Table) (*Table, error) {
	if err := ValidateName(t.Zone, t.Name); err != nil {
		return nil, err
	}
	var prev *Table
	err := update(dataDir, func(ts []Table) []Table {
		for i := range ts {
			if ts[i].Zone == t.Zone && ts[i].Name == t.Name {
				old := ts[i]
				prev = &old
				ts[i] = t
				return ts
			}
		}
		return append(ts, t)
	})
	return prev, err
}

// ErrNoTable is returned by Remove for a table that is not registered.
var ErrNoTable = errors.New("no such crawled table")

// Remove deletes zone.name from the registry; the files stay where they are.
func Remove(dataDir, zone, name string) error {
	found := false
	err := update(dataDir, func(ts []Table) []Table {
		return slices.DeleteFunc(ts, func(t Table) bool {
			if t.Zone == zone && t.Name == name {
				found = true
				return true
			}
			return false
		})
	})
	if err == nil && !found {
		return fmt.Errorf("%w: %s.%s", ErrNoTable, zone, name)
	}
	return err
}

// update applies f to the registry (absolute locations) under the registry lock and writes
// the result atomically, with locations inside the data directory made relative.
func update(dataDir string, f func([]Table) []Table) error {
	base, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("updating the catalog registry: %w", err)
	}
	return updateRaw(dataDir, func(ts []Table) []Table {
		for i := range ts {
			ts[i].Location = resolve(base, ts[i].Location)
		}
		ts = f(ts)
		for i := range ts {
			ts[i].Location = record(base, ts[i].Location)
		}
		return ts
	})
}

// updateRaw applies f to the entries as the file holds them, under the registry lock, and
// writes the result atomically.
func updateRaw(dataDir string, f func([]Table) []Table) error {
	path := RegistryPath(dataDir)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the catalog folder: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("opening the catalog lock: %w", err)
	}
	defer lock.Close()
	// Blocks while another crawl updates the registry; the kernel drops the lock if that
	// process dies.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking the catalog registry: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
	ts, err := readRegistry(dataDir)
	if err != nil {
		return err
	}
	ts = f(ts)
	slices.SortFunc(ts, func(a, b Table) int { return strings.Compare(a.Key(), b.Key()) })
	if ts == nil {
		ts = []Table{}
	}
	b, err := json.MarshalIndent(ts, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the catalog registry: %w", err)
	}
	if err := durable.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing the catalog registry: %w", err)
	}
	return nil
}
