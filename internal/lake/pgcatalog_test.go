package lake

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/pulselake/pulselake/internal/postgrestest"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

const testPGPassword = "lake-test-pg-secret-7319"

// startTestPostgres starts a throwaway PostgreSQL server whose user lake logs in with
// testPGPassword; the test is skipped when the server binaries are missing.
func startTestPostgres(t *testing.T) *postgrestest.Server {
	t.Helper()
	return postgrestest.Start(t, postgrestest.Options{User: "lake", Password: testPGPassword})
}

// pgConfig is the lake configuration of a file warehouse in dir with the catalog on dsn.
func pgConfig(dir, dsn string) Config {
	return Config{Catalog: CatalogConfig{Type: "sql", Driver: DriverPostgres, DSN: dsn}}.WithDefaults(dir)
}

func openPG(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var pgCols = []Column{{ColTime, Timestamp}, {ColID, String}, {"n", Int64}}

// pgAppend commits rows [from, to) to ops.shared through s, with watermark seq.
func pgAppend(t *testing.T, s *Store, from, to int, seq uint64) error {
	t.Helper()
	ctx := context.Background()
	tb, err := s.ensure(ctx, ZoneOps, "shared", schemaOf(pgCols), "")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	rows := make([][]any, 0, to-from)
	for k := from; k < to; k++ {
		rows = append(rows, []any{t0.Add(time.Duration(k) * time.Second), "id-" + strconv.Itoa(k), int64(k)})
	}
	rec, err := buildRows(tb, pgCols, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	_, err = s.commitAppend(ctx, ZoneOps, "shared", tb, []arrow.RecordBatch{rec}, seq)
	s.forget(ZoneOps + ".shared")
	return err
}

// pgRows returns how many times each n is in ops.shared as s loads it now.
func pgRows(t *testing.T, s *Store) map[int]int {
	t.Helper()
	ctx := context.Background()
	tb, err := s.Load(ctx, ZoneOps, "shared")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	_, it, err := tb.Scan().ToArrowRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for rec, err := range it {
		if err != nil {
			t.Fatal(err)
		}
		for r := range int(rec.NumRows()) {
			k, _ := strconv.Atoi(rec.Column(2).ValueStr(r))
			seen[k]++
		}
		rec.Release()
	}
	return seen
}

// TestPostgresCatalogSharedByStores opens one PostgreSQL catalog and one warehouse from two
// stores (two serve processes): each commit of one is seen by the other at once, and of two
// commits made from the same stale snapshot, the second is either applied on top of the first
// or refused; never does it replace the first one's rows.
func TestPostgresCatalogSharedByStores(t *testing.T) {
	pg := startTestPostgres(t)
	dir := t.TempDir()
	a, b := openPG(t, pgConfig(dir, pg.DSN())), openPG(t, pgConfig(dir, pg.DSN()))
	ctx := context.Background()

	if err := pgAppend(t, a, 0, 100, 10); err != nil {
		t.Fatal(err)
	}
	if got := pgRows(t, b); len(got) != 100 {
		t.Fatalf("the other store sees %d rows, want 100", len(got))
	}
	if err := pgAppend(t, b, 100, 150, 20); err != nil {
		t.Fatal(err)
	}
	tb, err := a.Load(ctx, ZoneOps, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if got := streamSeq(tb); got != 20 {
		t.Errorf("watermark seen by the first store %d, want 20", got)
	}
	// A load without a commit in between reuses the table loaded before; one after a
	// commit reads the new metadata.
	if again, err := a.Load(ctx, ZoneOps, "shared"); err != nil || again != tb {
		t.Errorf("a second load without a commit read the table again (%v)", err)
	}
	if err := pgAppend(t, b, 150, 150, 25); err != nil { // an empty append: a new snapshot
		t.Fatal(err)
	}
	if again, err := a.Load(ctx, ZoneOps, "shared"); err != nil || again == tb || streamSeq(again) != 25 {
		t.Errorf("a load after a commit returned the table before it (%v)", err)
	}

	// Both commit from the snapshot they loaded before either committed.
	staleA, err := a.ensure(ctx, ZoneOps, "shared", schemaOf(pgCols), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := pgAppend(t, b, 150, 160, 30); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var rows [][]any
	for k := 160; k < 170; k++ {
		rows = append(rows, []any{t0.Add(time.Duration(k) * time.Second), "id-" + strconv.Itoa(k), int64(k)})
	}
	rec, err := buildRows(staleA, pgCols, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	_, staleErr := a.commitAppend(ctx, ZoneOps, "shared", staleA, []arrow.RecordBatch{rec}, 40)
	got := pgRows(t, b)
	for k := range 160 {
		if got[k] != 1 {
			t.Fatalf("row %d is in the table %d times after a stale commit (err %v)", k, got[k], staleErr)
		}
	}
	for k := 160; k < 170; k++ {
		if want := map[bool]int{true: 0, false: 1}[staleErr != nil]; got[k] != want {
			t.Fatalf("row %d of the stale commit is in the table %d times, want %d (err %v)", k, got[k], want, staleErr)
		}
	}
	t.Logf("stale commit: %v", staleErr)
}

// TestPostgresCatalogConcurrentOpen opens several stores at once on an empty database: the
// creation of the catalog's tables and zones races, and every one must open.
func TestPostgresCatalogConcurrentOpen(t *testing.T) {
	pg := startTestPostgres(t)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), pgConfig(dir, pg.DSN()))
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
}

// TestPostgresCatalogRidesOutRestart restarts the server while a store is open: a table load
// issued while the server is down succeeds once it is back, and a load against a server that
// stays down fails naming host:port/database, never the password.
func TestPostgresCatalogRidesOutRestart(t *testing.T) {
	pg := startTestPostgres(t)
	s := openPG(t, pgConfig(t.TempDir(), pg.DSN()))
	if err := pgAppend(t, s, 0, 10, 1); err != nil {
		t.Fatal(err)
	}
	pg.Stop()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(700 * time.Millisecond) // the load below must meet the server down
		restarted <- pg.Restart()
	}()
	if got := pgRows(t, s); len(got) != 10 {
		t.Errorf("%d rows after the restart, want 10", len(got))
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}

	pg.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Load(ctx, ZoneOps, "shared")
	if err == nil {
		t.Fatal("loading with the server down succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, pg.Addr()+"/postgres") || strings.Contains(msg, testPGPassword) {
		t.Errorf("error should name %s/postgres and not the password: %v", pg.Addr(), err)
	}
}

// TestPostgresCatalogConfig checks the catalog's configuration: every problem is reported
// under its YAML path, and no message nor open error shows the password.
func TestPostgresCatalogConfig(t *testing.T) {
	const pw = "s3cr3t-Pa55"
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "dsn")
	os.WriteFile(dsnFile, []byte("postgres://u:"+pw+"@db.example:5432/lake\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, tt := range []struct {
		name string
		cc   CatalogConfig
		want []string // paths with a problem
	}{
		{"url", CatalogConfig{Driver: "postgres", DSN: "postgres://u:" + pw + "@db.example:5432/lake?sslmode=require"}, nil},
		{"key value", CatalogConfig{Driver: "postgres", DSN: "host=db.example port=5432 dbname=lake user=u password=" + pw}, nil},
		{"file", CatalogConfig{Driver: "postgres", DSNFile: dsnFile}, nil},
		{"missing", CatalogConfig{Driver: "postgres"}, []string{"lake.catalog.dsn"}},
		{"both", CatalogConfig{Driver: "postgres", DSN: "postgres://h/db", DSNFile: dsnFile}, []string{"lake.catalog.dsn_file"}},
		{"no file", CatalogConfig{Driver: "postgres", DSNFile: filepath.Join(dir, "absent")}, []string{"lake.catalog.dsn_file"}},
		{"empty file", CatalogConfig{Driver: "postgres", DSNFile: empty}, []string{"lake.catalog.dsn_file"}},
		{"bad port", CatalogConfig{Driver: "postgres", DSN: "postgres://u:" + pw + "@db.example:99x/lake"}, []string{"lake.catalog.dsn"}},
		{"bad sslmode", CatalogConfig{Driver: "postgres", DSN: "host=h password=" + pw + " sslmode=sometimes"}, []string{"lake.catalog.dsn"}},
		{"uri with postgres", CatalogConfig{Driver: "postgres", DSN: "postgres://h/db", URI: "/x.db"}, []string{"lake.catalog.uri"}},
		{"dsn with sqlite", CatalogConfig{DSN: "postgres://h/db"}, []string{"lake.catalog.dsn"}},
		{"bad driver", CatalogConfig{Driver: "mysql"}, []string{"lake.catalog.driver"}},
		{"limits", CatalogConfig{Driver: "postgres", DSN: "postgres://h/db", MaxConns: -1, ConnectTimeout: -1,
			StatementTimeout: yamlconf.Duration(10 * time.Millisecond)},
			[]string{"lake.catalog.connect_timeout", "lake.catalog.max_conns", "lake.catalog.statement_timeout"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Catalog: tt.cc}
			cfg.Catalog.Type = "sql"
			cfg = cfg.WithDefaults(dir)
			var got []string
			for _, p := range cfg.Validate() {
				got = append(got, p.Path)
				if strings.Contains(p.String(), pw) {
					t.Errorf("problem shows the password: %s", p)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems at %v, want %v: %v", got, tt.want, cfg.Validate())
			}
		})
	}

	// Opening a catalog whose server does not answer fails naming it, not the password.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := pgConfig(dir, "postgres://u:"+pw+"@"+addr+"/lake?sslmode=disable")
	cfg.Catalog.ConnectTimeout = yamlconf.Duration(time.Second)
	_, err = Open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), cfg)
	if err == nil || !strings.Contains(err.Error(), addr+"/lake") || strings.Contains(err.Error(), pw) {
		t.Errorf("opening an absent server: %v", err)
	}
}

// FuzzRedactDSN checks that a password put in a DSN, in URL or key=value form, is in
// neither the redacted DSN nor a parse error.
func FuzzRedactDSN(f *testing.F) {
	for _, s := range []string{"s3cr3t-Pa55", "p@ss:word/x", "with space", "quo'te", "%41%42", "pässwörd"} {
		f.Add(s, "db.example:5432")
	}
	f.Fuzz(func(t *testing.T, pw, hostport string) {
		if len(pw) < 4 || strings.ContainsAny(pw, "\x00") || strings.Contains("postgres://u:@/lake?sslmode=disable host= port= dbname=lake user=u password=''xxxxx"+hostport, pw) {
			t.Skip()
		}
		forms := []string{
			"postgres://u:" + url.PathEscape(pw) + "@" + hostport + "/lake?sslmode=disable",
			"postgres://u:" + pw + "@" + hostport + "/lake",
			"host=" + hostport + " user=u password='" + strings.ReplaceAll(strings.ReplaceAll(pw, `\`, `\\`), "'", `\'`) + "' dbname=lake",
		}
		if !strings.ContainsAny(pw, " '\\\t\n\r\v\f") {
			forms = append(forms, "host=h user=u password="+pw+" dbname=lake")
		}
		for _, dsn := range forms {
			if r := redactDSN(dsn); strings.Contains(r, pw) {
				t.Errorf("redactDSN(%q) = %q shows the password", dsn, r)
			}
			if _, err := parsePostgresDSN(dsn); err != nil && strings.Contains(err.Error(), pw) {
				t.Errorf("parse error of %q shows the password: %v", dsn, err)
			}
		}
	})
}

// TestPostgresCatalogCompactAndErase compacts and erases through one store of a shared
// PostgreSQL catalog: the other store reads the same rows from the compacted snapshot, then
// none of the erased subject's, and the files of the replaced snapshots are gone.
func TestPostgresCatalogCompactAndErase(t *testing.T) {
	pg := startTestPostgres(t)
	dir := t.TempDir()
	cfg := pgConfig(dir, pg.DSN())
	cfg.CompactMinFiles = 2
	a, b := openPG(t, cfg), openPG(t, cfg)
	ctx := context.Background()
	var want []string
	for c := range 4 { // four commits: four small files in each day partition
		var rows [][]any
		for i := c * 30; i < (c+1)*30; i++ {
			rows = append(rows, eraseTrustedRow(i, eraseSubject(i)))
		}
		appendWithSeq(t, a, ZoneTrusted, "heart_rate", eraseTrustedCols, rows, uint64(c+1), ColTime)
		a.forget(ZoneTrusted + ".heart_rate")
	}
	before, err := b.Load(ctx, ZoneTrusted, "heart_rate")
	if err != nil {
		t.Fatal(err)
	}
	want = tableRows(t, before)
	if len(want) != 120 {
		t.Fatalf("%d rows before compaction, want 120", len(want))
	}
	n, err := a.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Errorf("compaction replaced %d files, want at least 4", n)
	}
	after, err := b.Load(ctx, ZoneTrusted, "heart_rate")
	if err != nil {
		t.Fatal(err)
	}
	if after.MetadataLocation() == before.MetadataLocation() {
		t.Fatal("the other store still sees the snapshot before compaction")
	}
	if got := tableRows(t, after); !slices.Equal(got, want) {
		t.Fatalf("rows changed by compaction: %d rows, want %d", len(got), len(want))
	}
	if files, was := len(currentFiles(t, after)), len(currentFiles(t, before)); files >= was {
		t.Errorf("%d data files after compaction, %d before", files, was)
	}

	res, err := a.Erase(ctx, "p-2", EraseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Before != 40 || res[0].After != 0 {
		t.Errorf("erase: %+v", res)
	}
	erased, err := b.Load(ctx, ZoneTrusted, "heart_rate")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := CountSubject(ctx, erased, "p-2"); err != nil || n != 0 {
		t.Errorf("the other store counts %d rows of the erased subject (%v)", n, err)
	}
	if got := len(tableRows(t, erased)); got != 80 {
		t.Errorf("%d rows after erase, want 80", got)
	}
	if onDisk, current := parquetOnDisk(t, erased), currentFiles(t, erased); !slices.Equal(onDisk, current) {
		t.Errorf("files on disk %d, in the current snapshot %d", len(onDisk), len(current))
	}
}

// TestPostgresCatalogPasswordOutsideDSN opens the catalog with a DSN without a password: the
// password comes from PGPASSWORD, or from a password file named by PGPASSFILE, as with libpq.
func TestPostgresCatalogPasswordOutsideDSN(t *testing.T) {
	pg := startTestPostgres(t)
	u, err := url.Parse(pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User("lake")
	passfile := filepath.Join(t.TempDir(), "pgpass")
	host, port, _ := net.SplitHostPort(pg.Addr())
	if err := os.WriteFile(passfile, []byte(host+":"+port+":*:lake:"+testPGPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, env, value string }{
		{"PGPASSWORD", "PGPASSWORD", testPGPassword},
		{"PGPASSFILE", "PGPASSFILE", passfile},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.env, tt.value)
			s := openPG(t, pgConfig(t.TempDir(), u.String()))
			if names, err := s.TableNames(context.Background(), ZoneOps); err != nil {
				t.Errorf("listing with the password from %s: %v (%v)", tt.env, err, names)
			}
		})
	}
	// Without it the server refuses, and the error says so.
	cfg := pgConfig(t.TempDir(), u.String())
	start := time.Now()
	_, err = Open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), cfg)
	if err == nil || !strings.Contains(err.Error(), pg.Addr()) {
		t.Errorf("opening without a password: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a refused password was retried: %s to fail (%v)", took, err)
	}
	t.Logf("without a password: %v", err)
}
