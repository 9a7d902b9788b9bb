package query

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/pulselake/pulselake/internal/lake"
)

// Caller says who runs a query and so what it may read.
type Caller struct {
	// Restricted limits the query to the registered tables: no file-reading or catalog
	// table functions, no names other than zone.table (and the CTEs the query defines). SQL
	// over the HTTP API is restricted; the local `pulselake query` (the owner of the data
	// directory) is not.
	Restricted bool
	// Subject, when not empty, filters every table to the rows of that subject; a table
	// without a subject column is refused (ErrForbidden). Only for restricted callers.
	Subject string
}

// subjectVar is the DuckDB variable every view filters on (see viewFilter). It is set on the
// connection of a subject-bound query and reset afterwards; user SQL cannot change it, since
// only a single SELECT runs.
const subjectVar = "pulselake_subject"

// tableFunctions are the table functions restricted callers may use: generators that read
// nothing.
var tableFunctions = []string{"range", "generate_series", "unnest"}

// catalogViews are the information_schema views restricted callers may read: names of
// schemas, tables and columns (no view definitions, no settings).
var catalogViews = []string{"tables", "columns", "schemata"}

// refs is what a parsed statement reads.
type refs struct {
	tables []string // registered tables (zone.table), in order of first use
}

// tableInfo is what the checker knows of a registered table.
type tableInfo struct {
	subject bool  // it has a subject column
	broken  error // its data cannot be read (see BrokenTableError)
}

// parse runs DuckDB's parser over one statement (under an optional leading EXPLAIN) and
// returns its syntax tree as json_serialize_sql gives it: only SELECT statements serialise.
// Parsing reads nothing; binding (prepare) does, so it comes after inspect.
func parse(ctx context.Context, conn *sql.Conn, query string) (map[string]any, error) {
	inner := strings.TrimSpace(query)
	if len(inner) > 8 && strings.EqualFold(inner[:8], "EXPLAIN ") {
		inner = inner[8:]
	}
	var js string
	if err := conn.QueryRowContext(ctx, "SELECT CAST(json_serialize_sql(CAST(? AS VARCHAR)) AS VARCHAR)", inner).Scan(&js); err != nil {
		return nil, fmt.Errorf("parsing query: %w", err)
	}
	var parsed struct {
		Error      bool             `json:"error"`
		Type       string           `json:"error_type"`
		Message    string           `json:"error_message"`
		Statements []map[string]any `json:"statements"`
	}
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&parsed); err != nil {
		return nil, fmt.Errorf("parsing query: %w", err)
	}
	switch {
	case parsed.Error && parsed.Type == "not implemented":
		return nil, ErrNotReadOnly
	case parsed.Error:
		return nil, fmt.Errorf("%w: %s", ErrSyntax, parsed.Message)
	case len(parsed.Statements) != 1:
		return nil, fmt.Errorf("%w: found %d statements", ErrNotReadOnly, len(parsed.Statements))
	}
	return parsed.Statements[0], nil
}

// checkType prepares the statement (binding it, which reads the views' file metadata) and
// checks that DuckDB sees a SELECT or EXPLAIN.
func checkType(ctx context.Context, conn *sql.Conn, query string) error {
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*duckdb.Conn)
		if !ok {
			return fmt.Errorf("unexpected DuckDB connection %T", dc)
		}
		st, err := c.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("preparing query: %w", err)
		}
		defer st.Close()
		typ, err := st.(*duckdb.Stmt).StatementType()
		if err != nil {
			return fmt.Errorf("preparing query: %w", err)
		}
		if typ != duckdb.STATEMENT_TYPE_SELECT && typ != duckdb.STATEMENT_TYPE_EXPLAIN {
			return ErrNotReadOnly
		}
		return nil
	})
}

// inspect walks a statement's syntax tree and returns the registered tables it reads. For a
// restricted caller it refuses everything but registered tables, CTEs in scope, a few
// generator functions and information_schema's name listings; for a subject-bound caller it
// also refuses tables without a subject column. tables maps zone.table to what is known of it.
func inspect(stmt map[string]any, c Caller, tables map[string]tableInfo) (*refs, error) {
	w := &walker{c: c, tables: tables, out: &refs{}, seen: map[string]bool{}}
	if err := w.node(stmt, nil); err != nil {
		return nil, err
	}
	return w.out, nil
}

type walker struct {
	c      Caller
	tables map[string]tableInfo
	out    *refs
	seen   map[string]bool
}

// node walks any value of the tree. scope holds the CTE names visible at this point.
func (w *walker) node(v any, scope []string) error {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := w.node(e, scope); err != nil {
				return err
			}
		}
	case map[string]any:
		return w.object(x, scope)
	}
	return nil
}

func (w *walker) object(x map[string]any, scope []string) error {
	// A query node with a WITH clause: each CTE sees the ones before it (and itself when
	// recursive); the rest of the node sees all of them. This is never wider than DuckDB's
	// own scoping, so a name taken for a CTE is one.
	if cm, ok := x["cte_map"].(map[string]any); ok {
		inner := slices.Clone(scope)
		entries, _ := cm["map"].([]any)
		for _, en := range entries {
			e, _ := en.(map[string]any)
			name, _ := e["key"].(string)
			if strings.ContainsAny(name, `/\:*?.`) {
				return forbidden("a common table expression may not be named %q; use a plain name", name)
			}
			body := e["value"]
			own := inner
			if recursive(body, name) {
				own = append(slices.Clone(inner), name)
			}
			if err := w.node(body, own); err != nil {
				return err
			}
			inner = append(inner, name)
		}
		for k, v := range x {
			if k == "cte_map" {
				continue
			}
			if err := w.node(v, inner); err != nil {
				return err
			}
		}
		return nil
	}
	switch x["type"] {
	case "BASE_TABLE":
		if err := w.table(x, scope); err != nil {
			return err
		}
	case "TABLE_FUNCTION":
		if err := w.tableFunction(x); err != nil {
			return err
		}
	case "SHOW_REF":
		if name, _ := x["table_name"].(string); name != "" {
			if err := w.name(str(x, "catalog_name"), str(x, "schema_name"), name, scope); err != nil {
				return err
			}
		}
	}
	for _, v := range x {
		if err := w.node(v, scope); err != nil {
			return err
		}
	}
	return nil
}

// recursive reports whether a CTE body is a recursive CTE of that name.
func recursive(body any, name string) bool {
	b, _ := body.(map[string]any)
	q, _ := b["query"].(map[string]any)
	n, _ := q["node"].(map[string]any)
	return n["type"] == "RECURSIVE_CTE_NODE" && n["cte_name"] == name
}

func str(x map[string]any, k string) string { s, _ := x[k].(string); return s }

func (w *walker) table(x map[string]any, scope []string) error {
	if w.c.Restricted && x["at_clause"] != nil {
		return forbidden("time travel (AT ...) is not available over the API; tables show their current snapshot")
	}
	return w.name(str(x, "catalog_name"), str(x, "schema_name"), str(x, "table_name"), scope)
}

// name checks one table name of the query.
func (w *walker) name(catalog, schema, name string, scope []string) error {
	if catalog == "" && schema == "" && slices.Contains(scope, name) {
		return nil // a CTE of the query
	}
	zone := schema
	if zone == "" {
		zone = lake.ZoneTrusted // the search path: an unqualified name is a trusted table
	}
	key := zone + "." + name
	info, registered := w.tables[key]
	if catalog == "" && registered {
		if !w.seen[key] {
			w.seen[key] = true
			w.out.tables = append(w.out.tables, key)
		}
		if w.c.Restricted && w.c.Subject != "" && !info.subject {
			return forbidden("table %s has no subject column, so a token bound to a subject cannot read it", key)
		}
		return nil
	}
	if !w.c.Restricted {
		return nil // the owner's query: DuckDB resolves the name (files allowed under the lake)
	}
	full := strings.Trim(strings.Join([]string{catalog, schema, name}, "."), ".")
	switch {
	case catalog == "" && strings.EqualFold(schema, "information_schema") && slices.Contains(catalogViews, strings.ToLower(name)):
		return nil
	case catalog != "":
		return forbidden("%s: catalog-qualified names are not available over the API; name tables as zone.table", full)
	case strings.ContainsAny(name, `/\:*?`) || strings.Contains(name, "."):
		return forbidden("%s: reading files is not available over the API; query the registered tables (zone.table)", full)
	case slices.Contains(lake.Zones, zone):
		return unknownTable(key)
	}
	return forbidden("%s is not a lake table; query the registered tables (zone.table; SELECT table_schema, table_name FROM information_schema.tables lists them)", full)
}

func (w *walker) tableFunction(x map[string]any) error {
	if !w.c.Restricted {
		return nil
	}
	f, _ := x["function"].(map[string]any)
	name := strings.ToLower(str(f, "function_name"))
	if str(f, "catalog") == "" && str(f, "schema") == "" && slices.Contains(tableFunctions, name) {
		return nil
	}
	return forbidden("table function %s is not available over the API (files and engine internals cannot be read); query the registered tables (zone.table)", name)
}
