package restcatalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/catalog/catalogtest"
	"github.com/apache/iceberg-go/catalog/rest"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	"github.com/apache/iceberg-go/table"
	_ "modernc.org/sqlite"
)

// sqlCatalog opens a fresh SQLite SQL catalog with a file warehouse in a temporary directory,
// as internal/lake opens the lake's catalog.
func sqlCatalog(t *testing.T) (*sqlcat.Catalog, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "catalog.db")+"?_pragma=busy_timeout(15000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	warehouse := "file://" + filepath.Join(dir, "warehouse")
	cat, err := sqlcat.NewCatalog("pulselake", db, sqlcat.SQLite, iceberg.Properties{"warehouse": warehouse})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return cat, warehouse
}

// serve starts an HTTP server with Handler over a fresh SQL catalog; it returns the server's
// URL, the catalog behind it and the warehouse.
func serve(t *testing.T, opts Options) (string, *sqlcat.Catalog, string) {
	t.Helper()
	cat, warehouse := sqlCatalog(t)
	if opts.Warehouse == "" {
		opts.Warehouse = warehouse
	}
	srv := httptest.NewServer(Handler(cat, opts))
	t.Cleanup(srv.Close)
	return srv.URL, cat, warehouse
}

// client opens iceberg-go's REST catalog client against uri.
func client(t *testing.T, uri string, opts ...rest.Option) *rest.Catalog {
	t.Helper()
	c, err := rest.NewCatalog(context.Background(), "rest", uri, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConformance runs iceberg-go's catalog conformance suite through its own REST client
// against Handler over a SQL catalog.
func TestConformance(t *testing.T) {
	catalogtest.RunCatalogTests(t, catalogtest.Config{
		SupportsNamespaceProperties: true,
		NewCatalog: func(t *testing.T) catalog.Catalog {
			uri, _, _ := serve(t, Options{})
			return client(t, uri)
		},
	})
}

var rowSchema = iceberg.NewSchema(0,
	iceberg.NestedField{ID: 1, Name: "id", Type: iceberg.PrimitiveTypes.Int64, Required: true},
	iceberg.NestedField{ID: 2, Name: "name", Type: iceberg.PrimitiveTypes.String},
)

// appendRows appends ids [from, from+n) to t in one transaction with snapshot property
// "batch" and returns the committed table.
func appendRows(t *testing.T, tb *table.Table, from, n int, batch string) *table.Table {
	t.Helper()
	nt, err := tryAppend(tb, from, n, batch)
	if err != nil {
		t.Fatal(err)
	}
	return nt
}

func tryAppend(tb *table.Table, from, n int, batch string) (*table.Table, error) {
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for i := from; i < from+n; i++ {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		b.Field(1).(*array.StringBuilder).Append("row-" + batch)
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	rdr, err := array.NewRecordReader(sc, []arrow.RecordBatch{rec})
	if err != nil {
		return nil, err
	}
	defer rdr.Release()
	tx := tb.NewTransaction()
	if err := tx.SetProperties(iceberg.Properties{"last-batch": batch}); err != nil {
		return nil, err
	}
	if err := tx.Append(context.Background(), rdr, iceberg.Properties{"batch": batch}); err != nil {
		return nil, err
	}
	nt, err := tx.Commit(context.Background())
	if err != nil {
		return nil, fmt.Errorf("committing batch %s: %w", batch, err)
	}
	return nt, nil
}

// ids scans a table and returns its id column, sorted.
func ids(t *testing.T, tb *table.Table) []int64 {
	t.Helper()
	at, err := tb.Scan().ToArrowTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	var out []int64
	tr := array.NewTableReader(at, 1<<16)
	defer tr.Release()
	for tr.Next() {
		col := tr.RecordBatch().Column(0).(*array.Int64)
		out = append(out, col.Int64Values()...)
	}
	slices.Sort(out)
	return out
}

// TestWriteThroughREST appends Arrow data through the REST client with iceberg-go's
// transaction API, twice, then loads the table with a second client and with the SQL catalog
// behind the server: both see both snapshots, their summary properties and every row.
func TestWriteThroughREST(t *testing.T) {
	ctx := context.Background()
	uri, sqlCat, warehouse := serve(t, Options{})
	c := client(t, uri)
	if err := c.CreateNamespace(ctx, table.Identifier{"trusted"}, nil); err != nil {
		t.Fatal(err)
	}
	tb, err := c.CreateTable(ctx, table.Identifier{"trusted", "events"}, rowSchema)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tb.Location(), warehouse+"/") {
		t.Errorf("table location %s is not in the warehouse %s", tb.Location(), warehouse)
	}
	tb = appendRows(t, tb, 0, 100, "1")
	appendRows(t, tb, 100, 50, "2")

	for name, cat := range map[string]catalog.Catalog{"second REST client": client(t, uri), "SQL catalog": sqlCat} {
		got, err := cat.LoadTable(ctx, table.Identifier{"trusted", "events"})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := len(got.Metadata().Snapshots()); n != 2 {
			t.Errorf("%s: %d snapshots, want 2", name, n)
		}
		snap := got.CurrentSnapshot()
		if snap == nil || snap.Summary == nil || snap.Summary.Properties["batch"] != "2" || snap.Summary.Properties["total-records"] != "150" {
			t.Errorf("%s: current snapshot summary %+v, want batch 2 and 150 records", name, snap)
		}
		if got.Properties()["last-batch"] != "2" {
			t.Errorf("%s: property last-batch = %q, want 2", name, got.Properties()["last-batch"])
		}
		rows := ids(t, got)
		if len(rows) != 150 || rows[0] != 0 || rows[149] != 149 {
			t.Errorf("%s: scanned %d rows (%v…), want ids 0..149", name, len(rows), rows[:min(3, len(rows))])
		}
	}
}

// TestConcurrentAppendsRetry has two clients append to the same table from the same base:
// the second commit's requirement fails with 409, iceberg-go refreshes and retries, and no
// rows are lost.
func TestConcurrentAppendsRetry(t *testing.T) {
	ctx := context.Background()
	uri, _, _ := serve(t, Options{})
	a, b := client(t, uri), client(t, uri)
	if err := a.CreateNamespace(ctx, table.Identifier{"ns"}, nil); err != nil {
		t.Fatal(err)
	}
	// iceberg-go refreshes and retries a failed commit only when the table allows it.
	retries := catalog.WithProperties(iceberg.Properties{table.CommitNumRetriesKey: "3", table.CommitMinRetryWaitMsKey: "1"})
	if _, err := a.CreateTable(ctx, table.Identifier{"ns", "t"}, rowSchema, retries); err != nil {
		t.Fatal(err)
	}
	ta, err := a.LoadTable(ctx, table.Identifier{"ns", "t"})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.LoadTable(ctx, table.Identifier{"ns", "t"})
	if err != nil {
		t.Fatal(err)
	}
	ta = appendRows(t, ta, 0, 10, "a")
	appendRows(t, tb, 10, 10, "b") // based on the table before a's commit
	got, err := a.LoadTable(ctx, table.Identifier{"ns", "t"})
	if err != nil {
		t.Fatal(err)
	}
	if rows := ids(t, got); len(rows) != 20 {
		t.Errorf("%d rows after two concurrent appends, want 20", len(rows))
	}

	// A stale requirement sent directly is refused as a failed commit.
	stale := ta.CurrentSnapshot().SnapshotID
	_, _, err = a.CommitTable(ctx, table.Identifier{"ns", "t"},
		[]table.Requirement{table.AssertRefSnapshotID("main", &stale)},
		[]table.Update{table.NewSetPropertiesUpdate(iceberg.Properties{"x": "y"})})
	if !errors.Is(err, table.ErrCommitFailed) {
		t.Errorf("commit with a stale snapshot requirement: %v, want a failed commit", err)
	}
}

// do sends a request to the handler and returns the status and the decoded body.
func do(t *testing.T, uri, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rdr io.Reader
	if body != "" {
		rdr = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, uri+path, rdr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: answer %d is not JSON: %s", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, out
}

// errOf returns the type and message of an ErrorModel body, checking its code field.
func errOf(t *testing.T, code int, body map[string]any) (string, string) {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	if !ok {
		t.Fatalf("answer %d has no error object: %v", code, body)
	}
	if int(e["code"].(float64)) != code {
		t.Errorf("error code %v, status %d", e["code"], code)
	}
	return e["type"].(string), e["message"].(string)
}

const createBody = `{"name":"t","schema":{"type":"struct","schema-id":0,"fields":[{"id":1,"name":"id","type":"long","required":true}]}}`

// TestErrors checks status codes, error types and messages of bad and refused requests.
func TestErrors(t *testing.T) {
	uri, _, warehouse := serve(t, Options{})
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/namespaces", `{"namespace":["ns"]}`},
		{"POST", "/v1/namespaces", `{"namespace":["ns","sub"]}`},
		{"POST", "/v1/namespaces/ns/tables", createBody},
	} {
		if code, body := do(t, uri, r.method, r.path, r.body); code != http.StatusOK {
			t.Fatalf("%s %s: %d %v", r.method, r.path, code, body)
		}
	}
	stale := `{"requirements":[{"type":"assert-ref-snapshot-id","ref":"main","snapshot-id":42}],"updates":[]}`
	for _, c := range []struct {
		method, path, body string
		code               int
		typ, mention       string
	}{
		{"GET", "/v1/namespaces/nope", "", 404, typeNoSuchNamespace, "nope"},
		{"GET", "/v1/namespaces/ns/tables/nope", "", 404, typeNoSuchTable, "nope"},
		{"GET", "/v1/namespaces/nope/tables", "", 404, typeNoSuchNamespace, "nope"},
		{"GET", "/v1/namespaces/ns%1F%1Fsub", "", 400, typeBadRequest, "empty"},
		{"GET", "/v1/namespaces?parent=%1F", "", 400, typeBadRequest, "parent"},
		{"POST", "/v1/namespaces", `{"namespace":["ns"]}`, 409, typeAlreadyExists, "ns"},
		{"POST", "/v1/namespaces", `{}`, 400, typeBadRequest, `"namespace"`},
		{"POST", "/v1/namespaces", `{"namespace":"ns"}`, 400, typeBadRequest, `"namespace"`},
		{"POST", "/v1/namespaces", `not json`, 400, typeBadRequest, "CreateNamespaceRequest"},
		{"POST", "/v1/namespaces", ``, 400, typeBadRequest, "empty"},
		{"POST", "/v1/namespaces", `{"namespace":["x"]}{}`, 400, typeBadRequest, "more than one"},
		{"POST", "/v1/namespaces/ns/properties", `{"removals":["a"],"updates":{"a":"1"}}`, 422, typeUnprocessable, `"a"`},
		{"POST", "/v1/namespaces/nope/properties", `{"updates":{"a":"1"}}`, 404, typeNoSuchNamespace, "nope"},
		{"DELETE", "/v1/namespaces/ns", "", 409, typeNamespaceNotEmpty, "ns"},
		{"DELETE", "/v1/namespaces/nope", "", 404, typeNoSuchNamespace, "nope"},
		{"POST", "/v1/namespaces/ns/tables", `{"name":"u"}`, 400, typeBadRequest, `"schema"`},
		{"POST", "/v1/namespaces/ns/tables", `{"schema":{"type":"struct","fields":[]}}`, 400, typeBadRequest, `"name"`},
		{"POST", "/v1/namespaces/ns/tables", createBody, 409, typeAlreadyExists, "t"},
		{"POST", "/v1/namespaces/nope/tables", createBody, 404, typeNoSuchNamespace, "nope"},
		{"POST", "/v1/namespaces/ns/tables", strings.Replace(createBody, `"name":"t"`, `"name":"u","stage-create":true`, 1), 501, typeNotImplemented, "stage-create"},
		{"POST", "/v1/namespaces/ns/tables", strings.Replace(createBody, `"name":"t"`, `"name":"u","partition-spec":{"fields":[{"source-id":9,"field-id":1000,"name":"b","transform":"identity"}]}`, 1), 400, typeBadRequest, "source field 9"},
		{"POST", "/v1/namespaces/ns/tables", strings.Replace(createBody, `"name":"t"`, `"name":"u","write-order":{"order-id":1,"fields":[{"source-id":7,"transform":"identity","direction":"asc","null-order":"nulls-first"}]}`, 1), 400, typeBadRequest, "source column id 7"},
		{"POST", "/v1/namespaces/ns/tables", strings.Replace(createBody, `"name":"t"`, `"name":"u","location":"file:///etc/u"`, 1), 400, typeBadRequest, "outside the warehouse"},
		{"POST", "/v1/namespaces/ns/tables", strings.Replace(createBody, `"name":"t"`, `"name":"u","location":"`+warehouse+`/../u"`, 1), 400, typeBadRequest, "outside the warehouse"},
		{"POST", "/v1/namespaces/ns/tables", strings.Replace(createBody, `"name":"t"`, `"name":"u","properties":{"write.metadata.path":"/tmp/x"}`, 1), 400, typeBadRequest, "write.metadata.path"},
		{"POST", "/v1/namespaces/ns/tables/t", stale, 409, typeCommitFailed, "assert-ref-snapshot-id"},
		{"POST", "/v1/namespaces/ns/tables/nope", `{"requirements":[],"updates":[]}`, 404, typeNoSuchTable, "nope"},
		{"POST", "/v1/namespaces/ns/tables/t", `{"identifier":{"namespace":["ns"],"name":"other"},"requirements":[],"updates":[]}`, 400, typeBadRequest, "identifier"},
		{"POST", "/v1/namespaces/ns/tables/t", `{"requirements":[],"updates":[{"action":"no-such-action"}]}`, 400, typeBadRequest, "no-such-action"},
		{"POST", "/v1/namespaces/ns/tables/t", `{"requirements":[{"type":"assert-nothing"}],"updates":[]}`, 400, typeBadRequest, "assert-nothing"},
		{"POST", "/v1/namespaces/ns/tables/t", `{"requirements":[],"updates":[{"action":"set-current-schema","schema-id":7}]}`, 400, typeBadRequest, "do not apply"},
		{"POST", "/v1/namespaces/ns/tables/t", `{"requirements":[],"updates":[{"action":"set-location","location":"file:///tmp/elsewhere"}]}`, 400, typeBadRequest, "outside the warehouse"},
		{"DELETE", "/v1/namespaces/ns/tables/t?purgeRequested=maybe", "", 400, typeBadRequest, "purgeRequested"},
		{"DELETE", "/v1/namespaces/ns/tables/nope", "", 404, typeNoSuchTable, "nope"},
		{"POST", "/v1/tables/rename", `{"source":{"namespace":["ns"],"name":"nope"},"destination":{"namespace":["ns"],"name":"x"}}`, 404, typeNoSuchTable, "nope"},
		{"POST", "/v1/tables/rename", `{"source":{"namespace":["ns"],"name":"t"},"destination":{"namespace":["nope"],"name":"x"}}`, 404, typeNoSuchNamespace, "nope"},
		{"POST", "/v1/tables/rename", `{"source":{"namespace":["ns"],"name":"t"}}`, 400, typeBadRequest, `"destination"`},
		{"POST", "/v1/namespaces/ns/register", `{"name":"r","metadata-location":"file:///x.json"}`, 501, typeNotImplemented, "register"},
		{"GET", "/v1/oauth/tokens", "", 404, typeNotFound, "/v1/oauth/tokens"},
		{"PUT", "/v1/config", "", 404, typeNotFound, "PUT"},
	} {
		code, body := do(t, uri, c.method, c.path, c.body)
		if code != c.code {
			t.Errorf("%s %s %s: status %d, want %d (%v)", c.method, c.path, c.body, code, c.code, body)
			continue
		}
		typ, msg := errOf(t, code, body)
		if typ != c.typ || !strings.Contains(msg, c.mention) {
			t.Errorf("%s %s %s: %s %q, want %s mentioning %s", c.method, c.path, c.body, typ, msg, c.typ, c.mention)
		}
	}
}

// TestExistsAndListing checks HEAD answers, multi-level namespaces (%1F in paths, parent),
// GET /v1/config and table listing.
func TestExistsAndListing(t *testing.T) {
	uri, _, warehouse := serve(t, Options{})
	do(t, uri, "POST", "/v1/namespaces", `{"namespace":["a"]}`)
	do(t, uri, "POST", "/v1/namespaces", `{"namespace":["a","b c"],"properties":{"owner":"x"}}`)
	do(t, uri, "POST", "/v1/namespaces/a%1Fb%20c/tables", createBody)
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"HEAD", "/v1/namespaces/a", 204},
		{"HEAD", "/v1/namespaces/a%1Fb%20c", 204},
		{"HEAD", "/v1/namespaces/z", 404},
		{"HEAD", "/v1/namespaces/a%1Fb%20c/tables/t", 204},
		{"HEAD", "/v1/namespaces/a/tables/t", 404},
	} {
		if code, body := do(t, uri, c.method, c.path, ""); code != c.code || body != nil {
			t.Errorf("%s %s: %d %v, want %d without a body", c.method, c.path, code, body, c.code)
		}
	}
	_, body := do(t, uri, "GET", "/v1/namespaces?parent=a", "")
	if got, _ := json.Marshal(body["namespaces"]); string(got) != `[["a","b c"]]` {
		t.Errorf("namespaces under a: %s", got)
	}
	_, body = do(t, uri, "GET", "/v1/namespaces/a%1Fb%20c", "")
	if got, _ := json.Marshal(body); !strings.Contains(string(got), `"namespace":["a","b c"]`) || !strings.Contains(string(got), `"owner":"x"`) {
		t.Errorf("namespace a.b c: %s", got)
	}
	_, body = do(t, uri, "GET", "/v1/namespaces/a%1Fb%20c/tables", "")
	if got, _ := json.Marshal(body["identifiers"]); string(got) != `[{"name":"t","namespace":["a","b c"]}]` {
		t.Errorf("tables of a.b c: %s", got)
	}
	_, body = do(t, uri, "GET", "/v1/namespaces/a/tables", "")
	if got, _ := json.Marshal(body["identifiers"]); string(got) != `[]` {
		t.Errorf("tables of a: %s", got)
	}
	_, body = do(t, uri, "GET", "/v1/namespaces/a%1Fb%20c/tables/t", "")
	if !strings.HasPrefix(body["metadata-location"].(string), warehouse+"/") || body["metadata"].(map[string]any)["format-version"] == nil {
		t.Errorf("loaded table: %v", body)
	}
	_, body = do(t, uri, "GET", "/v1/config", "")
	if body["defaults"].(map[string]any)["warehouse"] != warehouse {
		t.Errorf("config defaults: %v", body["defaults"])
	}
	eps, _ := json.Marshal(body["endpoints"])
	for _, e := range []string{"POST /v1/{prefix}/namespaces/{namespace}/tables/{table}", "HEAD /v1/{prefix}/namespaces/{namespace}", "POST /v1/{prefix}/tables/rename"} {
		if !strings.Contains(string(eps), e) {
			t.Errorf("endpoints lack %s: %s", e, eps)
		}
	}
	// Rename, then drop with purge: the files go too.
	if code, body := do(t, uri, "POST", "/v1/tables/rename", `{"source":{"namespace":["a","b c"],"name":"t"},"destination":{"namespace":["a"],"name":"t2"}}`); code != 204 {
		t.Fatalf("rename: %d %v", code, body)
	}
	if code, _ := do(t, uri, "HEAD", "/v1/namespaces/a/tables/t2", ""); code != 204 {
		t.Errorf("renamed table: HEAD %d", code)
	}
	if code, body := do(t, uri, "DELETE", "/v1/namespaces/a/tables/t2?purgeRequested=true", ""); code != 204 {
		t.Errorf("purge: %d %v", code, body)
	}
	if code, _ := do(t, uri, "HEAD", "/v1/namespaces/a/tables/t2", ""); code != 404 {
		t.Errorf("purged table: HEAD %d, want 404", code)
	}
}

// TestLimitsAndReadOnly checks the body limit (with and without a Content-Length) and that a
// caller who may not write can read, can learn that a namespace exists, and changes nothing.
func TestLimitsAndReadOnly(t *testing.T) {
	writable := false
	uri, cat, _ := serve(t, Options{MaxBodyBytes: 1024, CanWrite: func(r *http.Request) bool { return writable }})
	if err := cat.CreateNamespace(context.Background(), table.Identifier{"ns"}, nil); err != nil {
		t.Fatal(err)
	}
	big := `{"namespace":["x"],"properties":{"p":"` + strings.Repeat("v", 2000) + `"}}`
	writable = true
	code, body := do(t, uri, "POST", "/v1/namespaces", big)
	if typ, msg := errOf(t, code, body); code != 413 || typ != typeTooLarge || !strings.Contains(msg, "1024") {
		t.Errorf("oversized body: %d %s %s", code, typ, msg)
	}
	// Chunked: no Content-Length, the limit still holds.
	req, _ := http.NewRequest("POST", uri+"/v1/namespaces", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("oversized chunked body: %d, want 413", resp.StatusCode)
	}

	writable = false
	for _, c := range []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/v1/namespaces/ns", "", 200},
		{"POST", "/v1/namespaces", `{"namespace":["ns"]}`, 409},
		{"POST", "/v1/namespaces", `{"namespace":["new"]}`, 403},
		{"DELETE", "/v1/namespaces/ns", "", 403},
		{"POST", "/v1/namespaces/ns/properties", `{"updates":{"a":"b"}}`, 403},
		{"POST", "/v1/namespaces/ns/tables", createBody, 403},
		{"POST", "/v1/tables/rename", `{}`, 403},
	} {
		code, body := do(t, uri, c.method, c.path, c.body)
		if code != c.code {
			t.Errorf("read-only %s %s: %d %v, want %d", c.method, c.path, code, body, c.code)
		}
		if code == 403 {
			if typ, msg := errOf(t, code, body); typ != typeForbidden || !strings.Contains(msg, "admin") {
				t.Errorf("read-only %s %s: %s %q", c.method, c.path, typ, msg)
			}
		}
	}
	if exists, _ := cat.CheckNamespaceExists(context.Background(), table.Identifier{"new"}); exists {
		t.Error("a read-only caller created a namespace")
	}
}

// TestParallelCommits has several clients append to one table at the same time: commits that
// lose a race are answered 409 (whether the requirement check or the catalog's own
// compare-and-swap caught them), iceberg-go retries them, and every row arrives once.
func TestParallelCommits(t *testing.T) {
	ctx := context.Background()
	uri, _, _ := serve(t, Options{})
	c := client(t, uri)
	if err := c.CreateNamespace(ctx, table.Identifier{"ns"}, nil); err != nil {
		t.Fatal(err)
	}
	retries := catalog.WithProperties(iceberg.Properties{table.CommitNumRetriesKey: "20", table.CommitMinRetryWaitMsKey: "1", table.CommitMaxRetryWaitMsKey: "50"})
	if _, err := c.CreateTable(ctx, table.Identifier{"ns", "t"}, rowSchema, retries); err != nil {
		t.Fatal(err)
	}
	const writers, rows = 4, 25
	var wg sync.WaitGroup
	for w := range writers {
		cw := client(t, uri)
		tb, err := cw.LoadTable(ctx, table.Identifier{"ns", "t"})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if _, err := tryAppend(tb, w*rows, rows, strconv.Itoa(w)); err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		})
	}
	wg.Wait()
	got, err := c.LoadTable(ctx, table.Identifier{"ns", "t"})
	if err != nil {
		t.Fatal(err)
	}
	all := ids(t, got)
	if len(all) != writers*rows || all[0] != 0 || all[len(all)-1] != writers*rows-1 {
		t.Errorf("%d rows after %d parallel appends of %d, want ids 0..%d", len(all), writers, rows, writers*rows-1)
	}
	if n := len(got.Metadata().Snapshots()); n != writers {
		t.Errorf("%d snapshots, want %d", n, writers)
	}
}
