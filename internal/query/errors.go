package query

import (
	"errors"
	"fmt"
)

// ErrNotReadOnly is returned for statements other than a single SELECT or EXPLAIN.
var ErrNotReadOnly = errors.New("only a single read-only SELECT statement is allowed")

// ErrSyntax is returned for a query the SQL parser rejects.
var ErrSyntax = errors.New("syntax error")

// ErrForbidden is returned for a query that reads what its caller may not: files, engine
// internals, or (for a subject-bound caller) a table without a subject column.
var ErrForbidden = errors.New("forbidden")

// ErrUnknownTable is returned for a zone.table name that is not in the catalog.
var ErrUnknownTable = errors.New("unknown table")

// ErrUnavailable is returned when the catalog cannot be read to prepare a query.
var ErrUnavailable = errors.New("the lake catalog is unavailable")

// ErrMemoryLimit is returned for a query that needs more memory than the engine's limit
// (query.memory_limit) and its spill space (query.temp_dir_max_bytes) allow.
var ErrMemoryLimit = errors.New("the query needs more memory than the SQL engine may use")

// ErrSchemaDrift is returned for a query of a crawled table whose files hold values that do
// not fit the types the crawler recorded: files changed since the crawl.
var ErrSchemaDrift = errors.New("the files of a crawled table no longer fit its recorded schema")

func forbidden(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrForbidden, fmt.Sprintf(format, args...))
}

func unknownTable(key string) error {
	return fmt.Errorf("%w %s; SELECT table_schema, table_name FROM information_schema.tables lists the tables", ErrUnknownTable, key)
}

// BrokenTableError is returned for a query that reads a table whose data cannot be read
// (a damaged or missing data file, unreadable metadata). Queries of other tables go on.
type BrokenTableError struct {
	Table string // zone.table
	Err   error
}

func (e *BrokenTableError) Error() string {
	return fmt.Sprintf("table %s cannot be read: %v; queries of other tables still work. "+
		"Restore the damaged file from a backup, or ask the operator to check the server log (docs/lake.md, \"Damaged files\")", e.Table, e.Err)
}

func (e *BrokenTableError) Unwrap() error { return e.Err }
