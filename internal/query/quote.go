package query

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Ident quotes a SQL identifier (a schema, table or column name) for DuckDB.
func Ident(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Literal quotes a string as a SQL string literal.
func Literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// TimestampLiteral writes t, in UTC to the microsecond, as a SQL TIMESTAMP literal.
func TimestampLiteral(t time.Time) string {
	return "TIMESTAMP " + Literal(t.UTC().Format("2006-01-02 15:04:05.999999"))
}

// CacheDir is the folder where an engine over dataDir keeps local copies of the lake's
// remote (S3) data files.
func CacheDir(dataDir string) string { return filepath.Join(dataDir, "cache", "lake") }

// cacheName is the file name of the local copy of a remote data file in the cache: the first
// 12 bytes of the SHA-256 of its location, in hex. Local files are read in place; ok is false
// for them.
func cacheName(loc string) (name string, ok bool, err error) {
	u, err := url.Parse(loc)
	if err != nil {
		return "", false, fmt.Errorf("parsing data file location %q: %w", loc, err)
	}
	if u.Scheme == "file" || u.Scheme == "" {
		return "", false, nil
	}
	sum := sha256.Sum256([]byte(loc))
	return hex.EncodeToString(sum[:12]) + ".parquet", true, nil
}

// DropCachedCopies deletes the cached copies of the data files at the locations removed
// (erased or expired from the lake) from the cache of dataDir. Copies never made are no error.
func DropCachedCopies(dataDir string, removed []string) error {
	var errs []error
	for _, loc := range removed {
		name, ok, err := cacheName(loc)
		if err != nil || !ok {
			continue // a location the cache never held
		}
		err = os.Remove(filepath.Join(CacheDir(dataDir), name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("deleting the query cache's copy of %s: %w", loc, err))
		}
	}
	return errors.Join(errs...)
}
