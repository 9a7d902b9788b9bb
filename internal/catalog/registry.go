// Package catalog registers external files (JSON lines, CSV, Parquet under hive-style
// k=v folders) as tables of the lake, the job of a Glue crawler: Crawl infers a table's
// schema and partitions from samples and records it in the registry, List reads the
// registry, and DDL prints statements that let Athena, Trino or Spark read the same data.
//
// The registry is one JSON file, <data>/catalog/external.json, replaced atomically on every
// change; the query engine turns each entry into a view named zone.table.
package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Format of an external table's files.
type Format string

// Formats the crawler recognises.
const (
	FormatJSON    Format = "json" // JSON lines, one object per line
	FormatCSV     Format = "csv"  // comma-separated with a header row
	FormatParquet Format = "parquet"
)

// Column is one column of an external table.
type Column struct {
	Name string `json:"name"`
	// Type is a portable SQL type: string, bigint, double, boolean, timestamp, date.
	Type string `json:"type"`
}

// Table is one registered external table.
type Table struct {
	Zone string `json:"zone"`
	Name string `json:"name"`
	// Location is the folder the table's files are under (absolute path or URL).
	Location string `json:"location"`
	Format   Format `json:"format"`
	// Columns are the data columns inferred from samples (partition columns excluded).
	Columns []Column `json:"columns"`
	// Partitions are the hive k=v folder keys, outermost first.
	Partitions []Column `json:"partitions,omitempty"`
	Files      int64    `json:"files"`
	Bytes      int64    `json:"bytes"`
	Rows       int64    `json:"rows"`
	CrawledAt  string   `json:"crawled_at"`
}

// Glob is the file pattern of the table: every file of its format under Location.
func (t Table) Glob() string {
	ext := map[Format]string{FormatJSON: "*.json*", FormatCSV: "*.csv", FormatParquet: "*.parquet"}[t.Format]
	return strings.TrimRight(t.Location, "/") + "/**/" + ext
}

// RegistryPath is the registry file of a data directory.
func RegistryPath(dataDir string) string { return filepath.Join(dataDir, "catalog", "external.json") }

// List returns the registered external tables of a data directory (none when the registry
// does not exist).
func List(dataDir string) ([]Table, error) {
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
