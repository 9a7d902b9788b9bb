package postgrestest

import (
	"database/sql"
	"net/url"
	"testing"
)

// TestStartRestart starts a server with a database of its own: the DSN logs in with the
// password and a wrong password is refused; a row written before Restart is read after it,
// on the same address; after Stop the server refuses connections.
func TestStartRestart(t *testing.T) {
	s := Start(t, Options{User: "tester", Password: "pw-0123", Database: "things"})
	query := func(dsn, q string) (int, error) {
		db, err := sql.Open("pgx", dsn+"&connect_timeout=2")
		if err != nil {
			return 0, err
		}
		defer db.Close()
		var n int
		return n, db.QueryRow(q).Scan(&n)
	}
	if n, err := query(s.DSN(), "WITH c AS (SELECT 7 AS n) SELECT n FROM c"); err != nil || n != 7 {
		t.Fatalf("query: %d, %v", n, err)
	}
	db, err := sql.Open("pgx", s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec("CREATE TABLE t AS SELECT 7 AS n")
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(s.DSN())
	if u.Path != "/things" || u.User.Username() != "tester" {
		t.Errorf("DSN %s: want user tester and database things", u.Redacted())
	}
	u.User = url.UserPassword("tester", "wrong")
	if _, err := query(u.String(), "SELECT 1"); err == nil {
		t.Error("a wrong password was accepted")
	}

	addr := s.Addr()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Errorf("address %s after the restart, was %s", s.Addr(), addr)
	}
	if n, err := query(s.DSN(), "SELECT n FROM t"); err != nil || n != 7 {
		t.Errorf("after the restart: %d, %v; want 7", n, err)
	}
	s.Stop()
	if _, err := query(s.DSN(), "SELECT 1"); err == nil {
		t.Error("the stopped server answered")
	}
}
