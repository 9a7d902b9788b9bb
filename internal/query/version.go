package query

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/duckdb/duckdb-go/v2"
)

// EngineVersion is the version of the DuckDB library linked into the binary, as the engine
// reports it (SELECT version()). It opens an in-memory database with no extensions, which
// takes milliseconds, and touches no file.
func EngineVersion(ctx context.Context) (string, error) {
	connector, err := duckdb.NewConnector("", nil)
	if err != nil {
		return "", fmt.Errorf("starting DuckDB: %w", err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	var v string
	if err := db.QueryRowContext(ctx, "SELECT version()").Scan(&v); err != nil {
		return "", fmt.Errorf("asking DuckDB its version: %w", err)
	}
	return v, nil
}
