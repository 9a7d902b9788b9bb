package lake

import (
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

// Defaults of Config (SPEC §5).
const (
	DefaultFlushInterval   = 5 * time.Second
	DefaultFlushBytes      = 8 << 20
	DefaultCompactInterval = time.Hour
	DefaultCompactMinFiles = 8
	DefaultTargetFileSize  = 128 << 20
	// DefaultOrphanAge is how old an unreferenced file must be before the compaction
	// schedule deletes it. pulselake's own writers are covered by the write gate
	// (orphan.go); the age protects writers it cannot see (another machine, an external
	// engine), as Iceberg's remove_orphan_files does with its 3 days. A day is also the
	// shortest interval Spark's procedure accepts without an override, and long enough for
	// any commit to finish while failed flushes' leftovers go the next day.
	DefaultOrphanAge  = 24 * time.Hour
	DefaultDedupDays  = 3
	DefaultFetchBatch = 32
	DefaultFetchBytes = 8 << 20
)

// Config is the `lake:` section of the configuration file. Zero values take the documented
// defaults (WithDefaults).
type Config struct {
	// Warehouse is where table data and metadata live: file:///abs/dir or s3://bucket/prefix.
	// Default file://<data>/lake.
	Warehouse string `yaml:"warehouse"`
	// Catalog is the Iceberg catalog that records each table's current metadata.
	Catalog CatalogConfig `yaml:"catalog"`
	// S3 configures access to an s3:// warehouse (any S3-compatible store).
	S3 S3Config `yaml:"s3"`
	// FlushInterval bounds how long an accepted reading waits before it is committed and
	// queryable. Default 5s.
	FlushInterval yamlconf.Duration `yaml:"flush_interval"`
	// FlushBytes flushes earlier when this many bytes of envelopes (decompressed) are
	// buffered. Default 8 MiB: a flush's Arrow and Parquet buffers are about three times
	// its envelopes, and larger flushes save no CPU (docs/benchmarks.md, Imports).
	FlushBytes int64 `yaml:"flush_bytes"`
	// CompactInterval is how often small files are rewritten into larger ones; negative
	// disables compaction. Default 1h.
	CompactInterval yamlconf.Duration `yaml:"compact_interval"`
	// CompactMinFiles is the number of small files in one partition that triggers compaction.
	// Default 8.
	CompactMinFiles int `yaml:"compact_min_files"`
	// OrphanAge: the compaction schedule also deletes files under a table's location that
	// no retained metadata refers to (leftovers of failed flushes and commits) once they
	// are this old; negative disables that. Erase deletes those holding the subject at any
	// age. Default 24h.
	OrphanAge yamlconf.Duration `yaml:"orphan_age"`
	// TargetFileSize is the size compaction aims for. Default 128 MiB.
	TargetFileSize int64 `yaml:"target_file_size"`
	// DedupDays is how many day partitions per kind keep their identity index in memory.
	// Readings of older days load that day's index on demand. Default 3.
	DedupDays int `yaml:"dedup_days"`
}

// CatalogConfig selects the Iceberg catalog.
type CatalogConfig struct {
	// Type is "sql" (the default) or "rest".
	Type string `yaml:"type"`
	// Driver is the database of a sql catalog: "sqlite" (the default, a file beside the
	// lake) or "postgres" (a server several serve processes share).
	Driver string `yaml:"driver"`
	// URI is the SQLite file for type sql (default <data>/lake/catalog.db) or the REST
	// catalog's base URL for type rest.
	URI string `yaml:"uri"`
	// DSN is the PostgreSQL connection string of driver postgres, as a URL
	// (postgres://user@host:5432/db?sslmode=verify-full) or in key=value form. It may hold
	// the password; DSNFile keeps it out of the configuration file, and the libpq
	// conventions (PGPASSWORD, ~/.pgpass) fill in a password the DSN leaves out.
	DSN string `yaml:"dsn"`
	// DSNFile is a file holding the DSN (read at start, trailing newline ignored); the
	// alternative to DSN.
	DSNFile string `yaml:"dsn_file"`
	// MaxConns bounds the connections of this process to the catalog database. Default 4.
	MaxConns int `yaml:"max_conns"`
	// ConnectTimeout bounds establishing one connection. Default 10s.
	ConnectTimeout yamlconf.Duration `yaml:"connect_timeout"`
	// StatementTimeout bounds one statement on the server (PostgreSQL's statement_timeout);
	// a transaction left idle as long is ended too. Default 30s.
	StatementTimeout yamlconf.Duration `yaml:"statement_timeout"`
	// Token is a bearer token for the REST catalog.
	Token string `yaml:"token"`
	// Credential is an OAuth2 client credential "id:secret" for the REST catalog.
	Credential string `yaml:"credential"`
	// Name names the catalog in Iceberg metadata. Default "pulselake".
	Name string `yaml:"name"`
}

// Catalog drivers of a sql catalog.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Defaults of the PostgreSQL catalog's connections.
const (
	DefaultCatalogMaxConns         = 4
	DefaultCatalogConnectTimeout   = 10 * time.Second
	DefaultCatalogStatementTimeout = 30 * time.Second
)

// S3Config configures the S3 client for an s3:// warehouse.
type S3Config struct {
	// Endpoint of an S3-compatible store, e.g. http://127.0.0.1:7070; empty means AWS.
	Endpoint string `yaml:"endpoint"`
	Region   string `yaml:"region"`
	// AccessKeyID and SecretAccessKey; empty uses the AWS default credential chain.
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	SessionToken    string `yaml:"session_token"`
	// VirtualHosted forces virtual-hosted-style addressing; the default is path style for
	// custom endpoints and virtual-hosted style for AWS.
	VirtualHosted bool `yaml:"virtual_hosted"`
}

// WithDefaults returns c with its unset fields filled in: the lake of the data directory
// dataDir (the --data flag) as configured. It is the one way a command or serve resolves the
// `lake:` section before opening the lake.
func (c Config) WithDefaults(dataDir string) Config {
	if c.Warehouse == "" {
		abs, err := filepath.Abs(filepath.Join(dataDir, "lake"))
		if err != nil {
			abs = filepath.Join(dataDir, "lake")
		}
		c.Warehouse = "file://" + filepath.ToSlash(abs)
	}
	if c.Catalog.Type == "" {
		c.Catalog.Type = "sql"
	}
	if c.Catalog.Name == "" {
		c.Catalog.Name = "pulselake"
	}
	if c.Catalog.Type == "sql" && c.Catalog.Driver == "" {
		c.Catalog.Driver = DriverSQLite
	}
	if c.Catalog.Type == "sql" && c.Catalog.Driver == DriverSQLite && c.Catalog.URI == "" {
		c.Catalog.URI = filepath.Join(dataDir, "lake", "catalog.db")
	}
	if c.Catalog.Type == "sql" && c.Catalog.Driver == DriverPostgres {
		setDefault(&c.Catalog.MaxConns, DefaultCatalogMaxConns)
		setDefault(&c.Catalog.ConnectTimeout, yamlconf.Duration(DefaultCatalogConnectTimeout))
		setDefault(&c.Catalog.StatementTimeout, yamlconf.Duration(DefaultCatalogStatementTimeout))
	}
	setDefault(&c.FlushInterval, yamlconf.Duration(DefaultFlushInterval))
	setDefault(&c.FlushBytes, DefaultFlushBytes)
	setDefault(&c.CompactInterval, yamlconf.Duration(DefaultCompactInterval))
	setDefault(&c.CompactMinFiles, DefaultCompactMinFiles)
	setDefault(&c.TargetFileSize, DefaultTargetFileSize)
	setDefault(&c.OrphanAge, yamlconf.Duration(DefaultOrphanAge))
	setDefault(&c.DedupDays, DefaultDedupDays)
	return c
}

// setDefault sets *v to def when it is the zero value.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate returns every problem of c; each message starts with the YAML path of the field.
// Call it on WithDefaults' result.
func (c *Config) Validate() yamlconf.Problems {
	var errs yamlconf.Problems
	bad := func(path, format string, args ...any) { errs.Add("lake."+path, format, args...) }
	if c.Warehouse != "" {
		u, err := url.Parse(c.Warehouse)
		switch {
		case err != nil:
			bad("warehouse", "not a URL: %v", err)
		case u.Scheme != "file" && u.Scheme != "s3" && u.Scheme != "s3a":
			bad("warehouse", "scheme %q is not supported; use file:///abs/dir or s3://bucket/prefix", u.Scheme)
		case u.Scheme == "file" && !strings.HasPrefix(u.Path, "/"):
			bad("warehouse", "file warehouse %q must be an absolute path (file:///abs/dir)", c.Warehouse)
		case u.Scheme != "file" && u.Host == "":
			bad("warehouse", "%q names no bucket (s3://bucket/prefix)", c.Warehouse)
		}
	}
	switch c.Catalog.Type {
	case "", "sql":
		c.validateSQLCatalog(&errs)
	case "rest":
		if c.Catalog.URI == "" {
			bad("catalog.uri", "required for a rest catalog (e.g. http://127.0.0.1:8181)")
		} else if u, err := url.Parse(c.Catalog.URI); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			bad("catalog.uri", "%q is not an http(s) URL", c.Catalog.URI)
		}
	default:
		bad("catalog.type", "%q is not one of sql, rest", c.Catalog.Type)
	}
	if c.FlushInterval.D() <= 0 {
		bad("flush_interval", "must be > 0")
	}
	if c.FlushBytes <= 0 {
		bad("flush_bytes", "must be > 0")
	}
	if c.CompactMinFiles < 2 {
		bad("compact_min_files", "must be >= 2")
	}
	if c.TargetFileSize < 1<<20 {
		bad("target_file_size", "must be >= 1 MiB")
	}
	if c.OrphanAge > 0 && c.OrphanAge.D() < time.Minute {
		bad("orphan_age", "%s is too short: a file being written may be taken for a leftover; use at least 1m (default 24h), or a negative value to disable", c.OrphanAge.D())
	}
	if c.DedupDays < 1 {
		bad("dedup_days", "must be >= 1")
	}
	if (c.S3.AccessKeyID == "") != (c.S3.SecretAccessKey == "") {
		bad("s3.access_key_id", "access_key_id and secret_access_key go together")
	}
	if c.S3.Endpoint != "" {
		if u, err := url.Parse(c.S3.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			bad("s3.endpoint", "%q is not an http(s) URL", c.S3.Endpoint)
		}
	}
	return errs
}

// ErrNoTable is returned when a table does not exist.
var ErrNoTable = errors.New("no such table")
