// Package restcatalog serves an Iceberg catalog over the Iceberg REST Catalog protocol
// (apache/iceberg open-api/rest-catalog-open-api.yaml), so that engines which speak it —
// Trino, Spark, PyIceberg, DuckDB, iceberg-go, other pulselake instances — can attach to the
// lake's tables.
//
// Handler wraps any iceberg-go catalog.Catalog (pulselake's SQLite SQL catalog in practice):
// the wrapped catalog stays the one source of truth and every write goes through it, so
// commits made over REST and by pulselake itself are serialized by the catalog's own
// optimistic concurrency (a commit whose requirements no longer hold answers 409).
//
// What is served: GET /v1/config; namespaces (list with parent, create, load, HEAD, drop,
// update properties); tables (list, create, load, HEAD, drop with purgeRequested, commit,
// rename, register when the catalog supports it). Not served: the optional {prefix} path
// segment, staged creates (stage-create), multi-table transactions, views, scan planning,
// metrics reports, OAuth token exchange and credential vending. The server never returns
// storage credentials: clients reach the warehouse with their own.
//
// Request bodies are limited (Options.MaxBodyBytes); table and metadata locations must lie in
// Options.Warehouse when it is set. Handler is safe for concurrent use.
package restcatalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
)

// DefaultMaxBodyBytes is the default limit of a request body: table metadata updates of a
// commit are small, but a schema of thousands of columns is not.
const DefaultMaxBodyBytes = 8 << 20

// Options configures Handler. Zero values take the documented defaults.
type Options struct {
	// Log receives server-side failures. Default: discard.
	Log *slog.Logger
	// Warehouse is the warehouse location (file:///dir or s3://bucket/prefix). It is returned
	// as the "warehouse" default of GET /v1/config, and when set, table locations and
	// registered metadata must lie under it.
	Warehouse string
	// MaxBodyBytes limits every request body. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// CanWrite reports whether a request may change the catalog. nil allows every request.
	// Read-only requests (GET, HEAD) never call it. Creating a namespace that already exists
	// changes nothing and answers 409 to any caller, so that read-only clients which ensure
	// their namespaces on start (as pulselake does) work.
	CanWrite func(*http.Request) bool
}

// registrar is implemented by catalogs that can register an existing metadata file.
type registrar interface {
	RegisterTable(ctx context.Context, ident table.Identifier, metadataLocation string) (*table.Table, error)
}

type server struct {
	cat  catalog.Catalog
	opts Options
	log  *slog.Logger
}

// Handler serves cat over the Iceberg REST Catalog protocol. Paths start with /v1/; mount it
// under a prefix with http.StripPrefix.
func Handler(cat catalog.Catalog, opts Options) http.Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{cat: cat, opts: opts, log: log}
	mux := http.NewServeMux()
	// A GET pattern also matches HEAD; the GET handlers answer HEAD as the spec's exists check.
	mux.HandleFunc("GET /v1/config", s.config)
	mux.HandleFunc("GET /v1/namespaces", s.listNamespaces)
	mux.HandleFunc("POST /v1/namespaces", s.createNamespace)
	mux.HandleFunc("GET /v1/namespaces/{namespace}", s.loadNamespace)
	mux.HandleFunc("DELETE /v1/namespaces/{namespace}", s.write(s.dropNamespace))
	mux.HandleFunc("POST /v1/namespaces/{namespace}/properties", s.write(s.updateNamespace))
	mux.HandleFunc("GET /v1/namespaces/{namespace}/tables", s.listTables)
	mux.HandleFunc("POST /v1/namespaces/{namespace}/tables", s.write(s.createTable))
	mux.HandleFunc("GET /v1/namespaces/{namespace}/tables/{table}", s.loadTable)
	mux.HandleFunc("POST /v1/namespaces/{namespace}/tables/{table}", s.write(s.commitTable))
	mux.HandleFunc("DELETE /v1/namespaces/{namespace}/tables/{table}", s.write(s.dropTable))
	mux.HandleFunc("POST /v1/namespaces/{namespace}/register", s.write(s.registerTable))
	mux.HandleFunc("POST /v1/tables/rename", s.write(s.renameTable))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, fmt.Errorf("%w: %s %s is not served here; GET /v1/config lists the endpoints", ErrNoEndpoint, r.Method, r.URL.Path))
	})
	return mux
}

// endpoints lists what GET /v1/config advertises.
func (s *server) endpoints() []string {
	eps := []string{
		"GET /v1/{prefix}/namespaces",
		"POST /v1/{prefix}/namespaces",
		"GET /v1/{prefix}/namespaces/{namespace}",
		"HEAD /v1/{prefix}/namespaces/{namespace}",
		"DELETE /v1/{prefix}/namespaces/{namespace}",
		"POST /v1/{prefix}/namespaces/{namespace}/properties",
		"GET /v1/{prefix}/namespaces/{namespace}/tables",
		"POST /v1/{prefix}/namespaces/{namespace}/tables",
		"GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
		"HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
		"POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
		"DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
		"POST /v1/{prefix}/tables/rename",
	}
	if _, ok := s.cat.(registrar); ok {
		eps = append(eps, "POST /v1/{prefix}/namespaces/{namespace}/register")
	}
	return eps
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	writeError(s.log, w, r, err)
}

// write wraps a handler that changes the catalog: it runs only when the caller may write.
func (s *server) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.canWrite(r) {
			s.fail(w, r, errReadOnly)
			return
		}
		h(w, r)
	}
}

var errReadOnly = fmt.Errorf("%w: changing the catalog needs a token with scope admin; this one may only read", ErrForbidden)

func (s *server) canWrite(r *http.Request) bool { return s.opts.CanWrite == nil || s.opts.CanWrite(r) }

// body reads and size-checks the request body.
func (s *server) body(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return readBody(w, r, s.opts.MaxBodyBytes)
}

func (s *server) config(w http.ResponseWriter, r *http.Request) {
	defaults := iceberg.Properties{}
	if s.opts.Warehouse != "" {
		defaults["warehouse"] = s.opts.Warehouse
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"defaults":  defaults,
		"overrides": iceberg.Properties{},
		"endpoints": s.endpoints(),
	})
}

func (s *server) listNamespaces(w http.ResponseWriter, r *http.Request) {
	var parent table.Identifier
	if p := r.URL.Query().Get("parent"); p != "" {
		var err error
		if parent, err = parseNamespace(p); err != nil {
			s.fail(w, r, fmt.Errorf("parameter parent: %w", err))
			return
		}
	}
	nss, err := s.cat.ListNamespaces(r.Context(), parent)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The spec lists the namespaces one level below parent (top-level ones without parent);
	// the SQL catalog also returns parent itself and deeper levels.
	out := [][]string{}
	for _, ns := range nss {
		if len(ns) <= len(parent) || !slices.Equal(ns[:len(parent)], parent) {
			continue
		}
		child := slices.Clone(ns[:len(parent)+1])
		if !slices.ContainsFunc(out, func(o []string) bool { return slices.Equal(o, child) }) {
			out = append(out, child)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"namespaces": out})
}

func (s *server) createNamespace(w http.ResponseWriter, r *http.Request) {
	data, err := s.body(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := decodeCreateNamespace(data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	if !s.canWrite(r) {
		// Nothing changes when the namespace exists: answer that to anyone who may read.
		exists, err := s.cat.CheckNamespaceExists(ctx, req.Namespace)
		switch {
		case err != nil:
			s.fail(w, r, err)
		case exists:
			s.fail(w, r, fmt.Errorf("%w: %s", catalog.ErrNamespaceAlreadyExists, strings.Join(req.Namespace, ".")))
		default:
			s.fail(w, r, errReadOnly)
		}
		return
	}
	if err := s.cat.CreateNamespace(ctx, req.Namespace, req.Properties); err != nil {
		s.fail(w, r, err)
		return
	}
	props, err := s.cat.LoadNamespaceProperties(ctx, req.Namespace)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"namespace": req.Namespace, "properties": nonNil(props)})
}

func (s *server) namespace(r *http.Request) (table.Identifier, error) {
	ns, err := parseNamespace(r.PathValue("namespace"))
	if err != nil {
		return nil, err
	}
	return ns, nil
}

// answerExists answers the spec's HEAD existence checks: 204 when it exists, otherwise
// notFound (404) naming id, or the catalog's error.
func (s *server) answerExists(w http.ResponseWriter, r *http.Request, exists bool, err error, notFound error, id table.Identifier) {
	if err == nil && !exists {
		err = fmt.Errorf("%w: %s", notFound, strings.Join(id, "."))
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) loadNamespace(w http.ResponseWriter, r *http.Request) {
	ns, err := s.namespace(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if r.Method == http.MethodHead {
		exists, err := s.cat.CheckNamespaceExists(r.Context(), ns)
		s.answerExists(w, r, exists, err, catalog.ErrNoSuchNamespace, ns)
		return
	}
	props, err := s.cat.LoadNamespaceProperties(r.Context(), ns)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"namespace": ns, "properties": nonNil(props)})
}

func (s *server) dropNamespace(w http.ResponseWriter, r *http.Request) {
	ns, err := s.namespace(r)
	if err == nil {
		err = s.cat.DropNamespace(r.Context(), ns)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) updateNamespace(w http.ResponseWriter, r *http.Request) {
	ns, err := s.namespace(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := s.body(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := decodeUpdateNamespaceProperties(data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sum, err := s.cat.UpdateNamespaceProperties(r.Context(), ns, req.Removals, req.Updates)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"updated": nonNilSlice(sum.Updated), "removed": nonNilSlice(sum.Removed), "missing": nonNilSlice(sum.Missing),
	})
}

func (s *server) listTables(w http.ResponseWriter, r *http.Request) {
	ns, err := s.namespace(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []identifier{}
	for id, err := range s.cat.ListTables(r.Context(), ns) {
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out = append(out, identifier{Namespace: catalog.NamespaceFromIdent(id), Name: catalog.TableNameFromIdent(id)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"identifiers": out})
}

// tableIdent is the identifier named by the path.
func (s *server) tableIdent(r *http.Request) (table.Identifier, error) {
	ns, err := s.namespace(r)
	if err != nil {
		return nil, err
	}
	name := r.PathValue("table")
	if err := tableName("the table in the path", name); err != nil {
		return nil, err
	}
	return append(ns, name), nil
}

// loadResult is the spec's LoadTableResult. Its config is empty: no storage credentials are
// vended, and file IO settings (an S3 endpoint) are the client's, since the server's view of
// the store (e.g. a loopback address) may not be the client's.
type loadResult struct {
	MetadataLocation string             `json:"metadata-location"`
	Metadata         table.Metadata     `json:"metadata"`
	Config           iceberg.Properties `json:"config"`
}

func (s *server) loaded(t *table.Table) loadResult {
	return loadResult{MetadataLocation: t.MetadataLocation(), Metadata: t.Metadata(), Config: iceberg.Properties{}}
}

func (s *server) createTable(w http.ResponseWriter, r *http.Request) {
	ns, err := s.namespace(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := s.body(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := decodeCreateTable(data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.StageCreate {
		s.fail(w, r, fmt.Errorf(`%w: "stage-create": true (staged table creation) is not supported; create the table directly and commit to it`, ErrNotImplemented))
		return
	}
	if err := s.inWarehouse(`"location"`, req.Location); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.propsInWarehouse(req.Properties); err != nil {
		s.fail(w, r, err)
		return
	}
	var opts []catalog.CreateTableOpt
	if req.Location != "" {
		opts = append(opts, catalog.WithLocation(req.Location))
	}
	if req.PartitionSpec != nil {
		opts = append(opts, catalog.WithPartitionSpec(req.PartitionSpec))
	}
	if req.WriteOrder != nil {
		opts = append(opts, catalog.WithSortOrder(*req.WriteOrder))
	}
	if len(req.Properties) > 0 {
		opts = append(opts, catalog.WithProperties(req.Properties))
	}
	t, err := s.cat.CreateTable(r.Context(), append(ns, req.Name), req.Schema, opts...)
	if errors.Is(err, table.ErrInvalidMetadata) {
		// The partition spec or sort order names a field the schema lacks.
		err = fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.loaded(t))
}

func (s *server) loadTable(w http.ResponseWriter, r *http.Request) {
	id, err := s.tableIdent(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if r.Method == http.MethodHead {
		exists, err := s.cat.CheckTableExists(r.Context(), id)
		s.answerExists(w, r, exists, err, catalog.ErrNoSuchTable, id)
		return
	}
	t, err := s.cat.LoadTable(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.loaded(t))
}

func (s *server) dropTable(w http.ResponseWriter, r *http.Request) {
	id, err := s.tableIdent(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch p := r.URL.Query().Get("purgeRequested"); p {
	case "", "false":
		err = s.cat.DropTable(r.Context(), id)
	case "true":
		purger, ok := s.cat.(catalog.PurgeableTable)
		if !ok {
			err = fmt.Errorf("%w: this catalog cannot purge table files; drop with purgeRequested=false", ErrNotImplemented)
			break
		}
		err = purger.PurgeTable(r.Context(), id)
	default:
		err = fmt.Errorf("%w: parameter purgeRequested is %q; use true or false", ErrBadRequest, p)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) renameTable(w http.ResponseWriter, r *http.Request) {
	data, err := s.body(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := decodeRenameTable(data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.cat.RenameTable(r.Context(), req.Source.ident(), req.Destination.ident()); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) registerTable(w http.ResponseWriter, r *http.Request) {
	reg, ok := s.cat.(registrar)
	if !ok {
		s.fail(w, r, fmt.Errorf("%w: this catalog cannot register tables", ErrNotImplemented))
		return
	}
	ns, err := s.namespace(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := s.body(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := decodeRegisterTable(data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.inWarehouse(`"metadata-location"`, req.MetadataLocation); err != nil {
		s.fail(w, r, err)
		return
	}
	t, err := reg.RegisterTable(r.Context(), append(ns, req.Name), req.MetadataLocation)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.loaded(t))
}

// commitTable checks the requirements against the table's current metadata (409 when one
// fails), checks the updates apply (400 naming the problem when not), then commits through
// the catalog. When the catalog refuses, the requirements are checked again against a fresh
// load: a commit that raced another answers 409, any other failure 500 (state unknown).
func (s *server) commitTable(w http.ResponseWriter, r *http.Request) {
	id, err := s.tableIdent(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := s.body(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := decodeCommitTable(data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Identifier != nil && !slices.Equal(req.Identifier.ident(), id) {
		s.fail(w, r, fmt.Errorf("%w: \"identifier\" names %s but the path names %s", ErrBadRequest,
			strings.Join(req.Identifier.ident(), "."), strings.Join(id, ".")))
		return
	}
	ctx := r.Context()
	current, err := s.current(ctx, id, req.Requirements)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := check(current, req.Requirements); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.applies(id, current, req.Updates); err != nil {
		s.fail(w, r, err)
		return
	}
	meta, loc, err := s.cat.CommitTable(ctx, id, req.Requirements, req.Updates)
	if err != nil {
		if !errors.Is(err, table.ErrCommitFailed) && !errors.Is(err, catalog.ErrNoSuchTable) && !errors.Is(err, catalog.ErrNoSuchNamespace) {
			if now, lerr := s.current(ctx, id, req.Requirements); lerr == nil {
				if cerr := check(now, req.Requirements); cerr != nil {
					err = cerr // another commit got in first
				} else {
					err = fmt.Errorf("%w: committing %s: %w", errCommitUnknown, strings.Join(id, "."), err)
				}
			}
		}
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"metadata-location": loc, "metadata": meta})
}

// current loads the table's metadata; nil when the table does not exist and the commit
// asserts its creation.
func (s *server) current(ctx context.Context, id table.Identifier, reqs []table.Requirement) (table.Metadata, error) {
	t, err := s.cat.LoadTable(ctx, id)
	if err == nil {
		return t.Metadata(), nil
	}
	if errors.Is(err, catalog.ErrNoSuchTable) && slices.ContainsFunc(reqs, func(q table.Requirement) bool { return q.GetType() == "assert-create" }) {
		return nil, nil
	}
	return nil, err
}

// check validates every requirement against the current metadata (nil: no table).
func check(meta table.Metadata, reqs []table.Requirement) error {
	for _, q := range reqs {
		if err := q.Validate(meta); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCommitFailed, q.GetType(), err)
		}
	}
	return nil
}

// applies checks that the updates apply to the current metadata and keep the table's
// locations in the warehouse.
func (s *server) applies(id table.Identifier, current table.Metadata, updates []table.Update) error {
	base := current
	if base == nil {
		var err error
		if base, err = table.NewMetadata(iceberg.NewSchema(0), nil, table.UnsortedSortOrder, "", nil); err != nil {
			return err
		}
	}
	updated, err := table.UpdateTableMetadata(base, updates, "")
	if err != nil {
		return fmt.Errorf("%w: the updates do not apply to %s: %w", ErrBadRequest, strings.Join(id, "."), err)
	}
	if err := s.inWarehouse("the table location", updated.Location()); err != nil {
		return err
	}
	return s.propsInWarehouse(updated.Properties())
}

// inWarehouse checks that loc (when set) lies under Options.Warehouse (when set): the server
// writes metadata files there with its own file IO.
func (s *server) inWarehouse(field, loc string) error {
	wh := strings.TrimSuffix(s.opts.Warehouse, "/")
	if wh == "" || loc == "" {
		return nil
	}
	if loc == wh || strings.HasPrefix(loc, wh+"/") {
		if !slices.Contains(strings.Split(strings.TrimPrefix(loc, wh), "/"), "..") {
			return nil
		}
	}
	return fmt.Errorf("%w: %s %q is outside the warehouse %s; leave it out to get a location in the warehouse", ErrBadRequest, field, loc, wh)
}

// propsInWarehouse checks the table properties that redirect where files are written.
func (s *server) propsInWarehouse(props iceberg.Properties) error {
	for _, k := range []string{table.WriteDataPathKey, table.WriteMetadataPathKey} {
		if err := s.inWarehouse("property "+k, props[k]); err != nil {
			return err
		}
	}
	return nil
}

func nonNil(p iceberg.Properties) iceberg.Properties {
	if p == nil {
		return iceberg.Properties{}
	}
	return p
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
