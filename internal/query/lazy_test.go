package query

import (
	"context"
	"testing"
)

// TestDuckDBStartsOnFirstQuery: opening the engine does not start DuckDB (an idle serve
// holds none of its memory); the first query starts it, and later ones reuse it.
func TestDuckDBStartsOnFirstQuery(t *testing.T) {
	e := testEngine(t)
	if e.db != nil {
		t.Fatal("DuckDB started by Open")
	}
	if got := rowsOf(t, e, "SELECT 1 AS one"); got != "one\n1\n" {
		t.Fatalf("first query: %q", got)
	}
	db := e.db
	if db == nil {
		t.Fatal("no DuckDB after a query")
	}
	if _, err := e.Query(context.Background(), "SELECT 2", Limits{}); err != nil {
		t.Fatal(err)
	}
	if e.db != db {
		t.Fatal("a second query started another DuckDB")
	}
}

// TestSessionStartsDuckDB: a pipeline session on a fresh engine starts DuckDB too.
func TestSessionStartsDuckDB(t *testing.T) {
	e := testEngine(t)
	s := testSession(t, e)
	if e.db == nil || s.conn == nil {
		t.Fatal("no DuckDB connection for the session")
	}
}
