package lake

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/catalog/rest"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	iceio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // s3:// warehouses
	"github.com/apache/iceberg-go/table"
	_ "modernc.org/sqlite" // SQLite catalog
)

// Zones (SPEC §5).
const (
	ZoneLanding    = "landing"
	ZoneTrusted    = "trusted"
	ZoneCurated    = "curated"
	ZoneQuarantine = "quarantine"
	ZoneOps        = "ops"
)

// Zones lists every zone in the order they are shown.
var Zones = []string{ZoneLanding, ZoneTrusted, ZoneCurated, ZoneQuarantine, ZoneOps}

// Table properties pulselake keeps.
const (
	// PropStreamSeq is the highest ingest stream sequence whose rows the table holds.
	PropStreamSeq = "pulselake.stream-seq"
)

// Store is an open Iceberg catalog plus warehouse. It is safe for concurrent use.
type Store struct {
	log   *slog.Logger
	cfg   Config
	cat   catalog.Catalog
	db    *sql.DB
	props iceberg.Properties // file IO properties (S3 endpoint, credentials)
	gate  *writeGate         // in-flight writes against orphan sweeps (orphan.go)

	mu     sync.Mutex
	tables map[string]*table.Table // cache of loaded tables by zone.name
}

// Open opens (creating if needed) the catalog and warehouse of cfg. WithDefaults must have
// been called. The zones are created as namespaces.
func Open(ctx context.Context, log *slog.Logger, cfg Config) (*Store, error) {
	if ps := cfg.Validate(); len(ps) > 0 {
		return nil, ps
	}
	s := &Store{log: log, cfg: cfg, props: ioProps(cfg), gate: newWriteGate(cfg), tables: map[string]*table.Table{}}
	if u, _ := url.Parse(cfg.Warehouse); u.Scheme == "file" {
		if err := os.MkdirAll(u.Path, 0o755); err != nil {
			return nil, fmt.Errorf("creating warehouse directory: %w", err)
		}
	}
	switch cfg.Catalog.Type {
	case "rest":
		opts := []rest.Option{rest.WithWarehouseLocation(cfg.Warehouse), rest.WithAdditionalProps(s.props)}
		if cfg.Catalog.Token != "" {
			opts = append(opts, rest.WithOAuthToken(cfg.Catalog.Token))
		}
		if cfg.Catalog.Credential != "" {
			opts = append(opts, rest.WithCredential(cfg.Catalog.Credential))
		}
		cat, err := rest.NewCatalog(ctx, cfg.Catalog.Name, cfg.Catalog.URI, opts...)
		if err != nil {
			return nil, fmt.Errorf("opening REST catalog %s: %w", cfg.Catalog.URI, err)
		}
		s.cat = cat
	default: // sql
		if cfg.Catalog.Driver != DriverPostgres {
			if err := s.openSQLite(ctx, log, cfg); err != nil {
				return nil, err
			}
			break
		}
		props := iceberg.Properties{"warehouse": cfg.Warehouse}
		for k, v := range s.props {
			props[k] = v
		}
		cat, db, err := openPostgresCatalog(ctx, log, cfg, props)
		if err != nil {
			return nil, err
		}
		s.cat, s.db = cat, db
	}
	for _, z := range Zones {
		err := s.cat.CreateNamespace(ctx, table.Identifier{z}, nil)
		if err != nil && !errors.Is(err, catalog.ErrNamespaceAlreadyExists) {
			s.Close()
			return nil, fmt.Errorf("creating zone %s: %w", z, err)
		}
	}
	return s, nil
}

// openSQLite opens the SQLite catalog of cfg.
func (s *Store) openSQLite(ctx context.Context, log *slog.Logger, cfg Config) error {
	if err := os.MkdirAll(filepath.Dir(cfg.Catalog.URI), 0o755); err != nil {
		return fmt.Errorf("creating catalog directory: %w", err)
	}
	// WAL lets `pulselake query` read while serve commits; the busy timeout makes
	// concurrent writers (erase while serve runs) wait instead of failing.
	dsn := "file:" + cfg.Catalog.URI + "?_pragma=busy_timeout(15000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("opening catalog %s: %w", cfg.Catalog.URI, err)
	}
	db.SetMaxOpenConns(1)
	if u, _ := url.Parse(cfg.Warehouse); u.Scheme == "file" {
		here := filepath.Clean(u.Path)
		origin, err := warehouseOrigin(here, db)
		if err != nil {
			db.Close()
			return err
		}
		if origin != here {
			useRelocatingFS()
			s.props[propRelocateFrom], s.props[propRelocateTo] = origin, here
			log.Info("the lake warehouse was moved or copied; reading its files at the new place", "from", origin, "to", here)
		}
	}
	props := iceberg.Properties{"warehouse": cfg.Warehouse}
	for k, v := range s.props {
		props[k] = v
	}
	cat, err := sqlcat.NewCatalog(cfg.Catalog.Name, db, sqlcat.SQLite, props)
	if err != nil {
		db.Close()
		return fmt.Errorf("opening catalog %s: %w", cfg.Catalog.URI, err)
	}
	s.cat, s.db = cat, db
	return nil
}

func ioProps(cfg Config) iceberg.Properties {
	p := iceberg.Properties{}
	if cfg.S3.Endpoint != "" {
		p[iceio.S3EndpointURL] = cfg.S3.Endpoint
	}
	if cfg.S3.Region != "" {
		p[iceio.S3Region] = cfg.S3.Region
	}
	if cfg.S3.AccessKeyID != "" {
		p[iceio.S3AccessKeyID] = cfg.S3.AccessKeyID
		p[iceio.S3SecretAccessKey] = cfg.S3.SecretAccessKey
	}
	if cfg.S3.SessionToken != "" {
		p[iceio.S3SessionToken] = cfg.S3.SessionToken
	}
	if cfg.S3.VirtualHosted {
		p[iceio.S3ForceVirtualAddressing] = "true"
	}
	return p
}

// Close releases the catalog.
func (s *Store) Close() error {
	if c, ok := s.cat.(interface{ Close() error }); ok {
		c.Close()
	}
	if s.db != nil {
		return s.db.Close()
	}
	return nil
}

// Config returns the configuration the store was opened with.
func (s *Store) Config() Config { return s.cfg }

// Catalog returns the Iceberg catalog the store commits through (serve offers it over the
// Iceberg REST protocol).
func (s *Store) Catalog() catalog.Catalog { return s.cat }

// IOProperties returns the file IO properties (S3 endpoint and credentials) of the warehouse.
func (s *Store) IOProperties() iceberg.Properties { return s.props }

// FS opens the file IO for a location in the warehouse.
func (s *Store) FS(ctx context.Context, location string) (iceio.IO, error) {
	return iceio.LoadFS(ctx, s.props, location)
}

// Load loads zone.name, bypassing the cache.
func (s *Store) Load(ctx context.Context, zone, name string) (*table.Table, error) {
	t, err := s.cat.LoadTable(ctx, table.Identifier{zone, name})
	if err != nil {
		if errors.Is(err, catalog.ErrNoSuchTable) {
			return nil, fmt.Errorf("loading table %s.%s: %w", zone, name, ErrNoTable)
		}
		return nil, fmt.Errorf("loading table %s.%s: %w", zone, name, err)
	}
	return t, nil
}

// TableNames lists the tables of a zone, sorted.
func (s *Store) TableNames(ctx context.Context, zone string) ([]string, error) {
	var names []string
	for id, err := range s.cat.ListTables(ctx, table.Identifier{zone}) {
		if err != nil {
			if errors.Is(err, catalog.ErrNoSuchNamespace) {
				return nil, nil
			}
			return nil, fmt.Errorf("listing zone %s: %w", zone, err)
		}
		names = append(names, id[len(id)-1])
	}
	slices.Sort(names)
	return names, nil
}

// ensure returns zone.name, creating it with schema sc when it does not exist. When
// partitionBy names a timestamp column, the table is partitioned by day of it.
func (s *Store) ensure(ctx context.Context, zone, name string, sc *iceberg.Schema, partitionBy string) (*table.Table, error) {
	key := zone + "." + name
	s.mu.Lock()
	t := s.tables[key]
	s.mu.Unlock()
	if t != nil {
		return t, nil
	}
	t, err := s.Load(ctx, zone, name)
	if errors.Is(err, ErrNoTable) {
		props := iceberg.Properties{
			"write.parquet.compression-codec": "zstd",
			"write.parquet.compression-level": "1",
			"format-version":                  "2",
		}
		maps.Copy(props, plainColumns(sc, nil))
		opts := []catalog.CreateTableOpt{catalog.WithProperties(props)}
		if partitionBy != "" {
			spec, serr := iceberg.NewPartitionSpecOpts(iceberg.AddPartitionFieldByName(partitionBy, partitionBy+"_day", iceberg.DayTransform{}, sc, nil))
			if serr != nil {
				return nil, fmt.Errorf("partitioning table %s: %w", key, serr)
			}
			opts = append(opts, catalog.WithPartitionSpec(&spec))
		}
		t, err = s.cat.CreateTable(ctx, table.Identifier{zone, name}, sc, opts...)
		if errors.Is(err, catalog.ErrTableAlreadyExists) {
			t, err = s.Load(ctx, zone, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("creating table %s: %w", key, err)
	}
	s.remember(key, t)
	return t, nil
}

func (s *Store) remember(key string, t *table.Table) {
	s.mu.Lock()
	s.tables[key] = t
	s.mu.Unlock()
}

func (s *Store) forget(key string) {
	s.mu.Lock()
	delete(s.tables, key)
	s.mu.Unlock()
}

// uniqueColumns hold a different value in every row (a reading's identity, a record as
// received). Parquet's writer would build a dictionary of each for every column chunk and
// then drop it for plain encoding when it grew too large: a sixth of the lake writer's
// allocations and about 8 % of serve's CPU during an import. They are written plain from
// the start; the files hold the same encoding as before.
var uniqueColumns = []string{ColID, "raw"}

// plainColumns returns the table properties that turn dictionary encoding off for the
// unique columns sc has, leaving out those props already holds.
func plainColumns(sc *iceberg.Schema, props iceberg.Properties) iceberg.Properties {
	out := iceberg.Properties{}
	for _, c := range uniqueColumns {
		key := dictColumnKey + c
		if _, ok := sc.FindFieldByName(c); ok && props[key] == "" {
			out[key] = "false"
		}
	}
	return out
}

// dictColumnKey prefixes a column's dictionary-encoding table property (read by the
// Iceberg writers of every language).
const dictColumnKey = "write.parquet.dict-encoding-enabled.column."

// streamSeq is the stream watermark of a table (0 when none).
func streamSeq(t *table.Table) uint64 {
	v, _ := strconv.ParseUint(t.Properties()[PropStreamSeq], 10, 64)
	return v
}

// TableInfo describes one table of the lake.
type TableInfo struct {
	Zone, Name       string
	Location         string
	MetadataLocation string
	SnapshotID       int64 // 0 when the table has no snapshot
	Rows             int64
	Files            int64
	Bytes            int64
	Schema           *iceberg.Schema
	PartitionSpec    string
}

// Describe returns a table's current snapshot statistics.
func Describe(zone, name string, t *table.Table) TableInfo {
	ti := TableInfo{Zone: zone, Name: name, Location: t.Location(), MetadataLocation: t.MetadataLocation(),
		Schema: t.Schema(), PartitionSpec: t.Spec().String()}
	if snap := t.CurrentSnapshot(); snap != nil {
		ti.SnapshotID = snap.SnapshotID
		if snap.Summary != nil {
			p := snap.Summary.Properties
			ti.Rows, _ = strconv.ParseInt(p["total-records"], 10, 64)
			ti.Files, _ = strconv.ParseInt(p["total-data-files"], 10, 64)
			ti.Bytes, _ = strconv.ParseInt(p["total-files-size"], 10, 64)
		}
	}
	return ti
}

// Tables describes every table of every zone, with the locations where the files are now.
func (s *Store) Tables(ctx context.Context) ([]TableInfo, error) {
	var out []TableInfo
	for _, z := range Zones {
		names, err := s.TableNames(ctx, z)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			t, err := s.Load(ctx, z, n)
			if err != nil {
				return nil, err
			}
			ti := Describe(z, n, t)
			ti.Location, ti.MetadataLocation = s.present(ti.Location), s.present(ti.MetadataLocation)
			out = append(out, ti)
		}
	}
	return out, nil
}

// DataFiles lists the data files of t's current snapshot (absolute locations, where the
// files are now: in a moved or copied warehouse, at the new place).
func DataFiles(ctx context.Context, t *table.Table) ([]string, error) {
	if t.CurrentSnapshot() == nil {
		return nil, nil
	}
	tasks, err := t.Scan().PlanFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("planning files of %s: %w", strings.Join(t.Identifier(), "."), err)
	}
	fsys, err := t.FS(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening the files of %s: %w", strings.Join(t.Identifier(), "."), err)
	}
	files := make([]string, 0, len(tasks))
	for _, task := range tasks {
		if len(task.DeleteFiles)+len(task.EqualityDeleteFiles)+len(task.DeletionVectorFiles) > 0 {
			return nil, fmt.Errorf("table %s has delete files (merge-on-read); pulselake writes copy-on-write only", strings.Join(t.Identifier(), "."))
		}
		files = append(files, resolveLocation(fsys, task.File.FilePath()))
	}
	return files, nil
}

// evolve adds to t the columns of cols it lacks (a kind gained a value in configuration).
func (s *Store) evolve(ctx context.Context, zone, name string, t *table.Table, cols []Column) (*table.Table, error) {
	var missing []Column
	for _, c := range cols {
		if _, ok := t.Schema().FindFieldByName(c.Name); !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return t, nil
	}
	key := zone + "." + name
	tx := t.NewTransaction()
	us := tx.UpdateSchema(true, false)
	id := 0
	for _, c := range missing {
		us = us.AddColumn([]string{c.Name}, c.Type.iceberg(&id), "", false, nil)
	}
	if err := us.Commit(); err != nil {
		return nil, fmt.Errorf("adding columns to %s: %w", key, err)
	}
	nt, err := tx.Commit(ctx)
	if err != nil {
		s.forget(key)
		return nil, fmt.Errorf("adding columns to %s: %w", key, err)
	}
	s.log.Info("lake table gained columns", "table", key, "columns", len(missing))
	s.remember(key, nt)
	return nt, nil
}
