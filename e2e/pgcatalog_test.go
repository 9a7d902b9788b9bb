package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// pgLakeConfig writes a serve configuration whose lake is on the S3 gateway at endpoint
// with its catalog on PostgreSQL: the DSN is given inline, or in a file when dsnFile is set.
func pgLakeConfig(t *testing.T, endpoint, dsn string, dsnFile bool) string {
	t.Helper()
	dir := t.TempDir()
	catalog := fmt.Sprintf("dsn: %q", dsn)
	if dsnFile {
		f := filepath.Join(dir, "catalog.dsn")
		if err := os.WriteFile(f, []byte(dsn+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		catalog = fmt.Sprintf("dsn_file: %s", f)
	}
	yaml := lakeYAML(endpoint, s3Bucket, catalog) + "log:\n  level: info\n"
	p := filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// apiCount is the one number a query returns through POST /v1/query; -1 while it fails.
func apiCount(t *testing.T, addr, sql string) int64 {
	t.Helper()
	rows := apiQuery(t, "http://"+addr, sql)
	if len(rows) != 1 || len(rows[0]) != 1 {
		return -1
	}
	switch v := rows[0][0].(type) {
	case float64:
		return int64(v)
	case json.Number:
		n, _ := v.Int64()
		return n
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}

// pgTables is the number of tables the PostgreSQL catalog records in a namespace.
func pgTables(t *testing.T, dsn, namespace string) int {
	t.Helper()
	return pgCount(t, dsn, "SELECT count(*) FROM iceberg_tables WHERE table_namespace = $1", namespace)
}

// TestPostgresCatalogServe runs serve with its warehouse on S3 and its catalog on
// PostgreSQL: posted readings are queryable, the tables are recorded in PostgreSQL and the
// data is in the bucket (nothing in the data directory); after a restart, and from a new
// data directory (another machine), the rows are still there; `pulselake erase` works on
// that lake while serve runs, and a pipeline run from another data directory writes a table
// serve reads; the password of the DSN is in no log line.
func TestPostgresCatalogServe(t *testing.T) {
	endpoint, root := startVersitygwRoot(t)
	dsn := startPostgres(t)
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	conf := pgLakeConfig(t, endpoint, dsn, true)
	dir, addr := t.TempDir(), freeAddr(t)
	srv := lfServe(t, bin, dir, addr, conf)
	logs := []string{srv.Stdout.(*os.File).Name()}

	start := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	posted := time.Now()
	lfPost(t, "http://"+addr, lfReadings("heart_rate", "p-1", start, 200, 0))
	lfPost(t, "http://"+addr, lfReadings("heart_rate", "p-2", start, 50, 0))
	lfPost(t, "http://"+addr, lfReadings("blood_pressure", "p-1", start, 100, 0))
	waitUntil(t, 60*time.Second, "the posted readings to be queryable", func() bool {
		return apiCount(t, addr, "SELECT count(*) FROM heart_rate") == 250 &&
			apiCount(t, addr, "SELECT count(*) FROM blood_pressure") == 100
	})
	t.Logf("queryable after %s", time.Since(posted).Round(time.Millisecond))
	if n := pgTables(t, dsn, "trusted"); n < 2 {
		t.Errorf("PostgreSQL records %d trusted tables, want heart_rate and blood_pressure", n)
	}
	if files := parquetUnder(t, filepath.Join(root, s3Bucket, "warehouse")); len(files) == 0 {
		t.Error("no data file in the bucket")
	}
	if files := parquetUnder(t, filepath.Join(dir, "lake")); len(files) != 0 {
		t.Errorf("data files in the data directory: %v", files)
	}
	if _, err := os.Stat(filepath.Join(dir, "lake", "catalog.db")); err == nil {
		t.Error("a SQLite catalog was created in the data directory")
	}

	// Erase through the shared catalog while serve runs (no --stream: the lake only).
	out, code := runBin(t, "erase", "--data", dir, "--config", conf, "--subject", "p-2")
	if code != 0 {
		t.Fatalf("erase exited %d:\n%s", code, out)
	}
	waitUntil(t, 30*time.Second, "serve to answer without the erased subject", func() bool {
		return apiCount(t, addr, "SELECT count(*) FROM heart_rate") == 200
	})

	// A pipeline run from another data directory (another machine) writes a curated table
	// through the catalog; serve answers from it.
	models := t.TempDir()
	model := "-- description: readings per subject\nSELECT subject, count(*) AS readings FROM heart_rate GROUP BY subject\n"
	if err := os.WriteFile(filepath.Join(models, "curated.hr_per_subject.sql"), []byte(model), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := runBin(t, "pipeline", "run", "--data", t.TempDir(), "--config", conf, "--dir", models); code != 0 {
		t.Fatalf("pipeline run exited %d:\n%s", code, out)
	}
	waitUntil(t, 30*time.Second, "serve to answer from the pipeline's table", func() bool {
		return apiCount(t, addr, "SELECT sum(readings) FROM curated.hr_per_subject") == 200
	})
	lfStop(t, srv)

	// Restarted, and on a fresh data directory with the same configuration.
	for _, d := range []string{dir, t.TempDir()} {
		addr := freeAddr(t)
		srv := lfServe(t, bin, d, addr, conf)
		logs = append(logs, srv.Stdout.(*os.File).Name())
		waitUntil(t, 60*time.Second, "the rows to be queryable after the restart", func() bool {
			return apiCount(t, addr, "SELECT count(*) FROM heart_rate") == 200 &&
				apiCount(t, addr, "SELECT count(*) FROM blood_pressure") == 100
		})
		lfStop(t, srv)
	}
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if strings.Contains(string(b), pgPassword) {
			t.Errorf("%s shows the catalog's password", l)
		}
		if !strings.Contains(string(b), "lake catalog on PostgreSQL") {
			t.Errorf("%s does not say that the catalog is on PostgreSQL:\n%s", l, b)
		}
	}
}

// startNATS starts a NATS server with JetStream in-process on a free loopback port (the
// external cluster of `serve --nats-url`) and returns its URL.
func startNATS(t *testing.T) string {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready in 10s")
	}
	return ns.ClientURL()
}

// TestPostgresCatalogTwoServes runs two serve processes on one stream, one S3 warehouse and
// one PostgreSQL catalog: one holds the lake writer lease and commits, and both answer
// queries with every posted row, exactly once, whichever node took the readings.
func TestPostgresCatalogTwoServes(t *testing.T) {
	endpoint, _ := startVersitygwRoot(t)
	dsn := startPostgres(t)
	natsURL := startNATS(t)
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	conf := pgLakeConfig(t, endpoint, dsn, false)
	var addrs, logs []string
	for range 2 {
		addr := freeAddr(t)
		cmd := startServeWith(t, bin, t.TempDir(), addr, "--config", conf, "--nats-url", natsURL)
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		addrs = append(addrs, addr)
		logs = append(logs, cmd.Stdout.(*os.File).Name())
	}
	start := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	want := 0
	for round := range 3 {
		for i, addr := range addrs {
			n := 40 + 20*i
			lfPost(t, "http://"+addr, lfReadings("heart_rate", fmt.Sprintf("p-%d", i), start, n, want))
			want += n
		}
		for _, addr := range addrs {
			waitUntil(t, 60*time.Second, fmt.Sprintf("round %d: %d rows on %s", round, want, addr), func() bool {
				return apiCount(t, addr, "SELECT count(*) FROM heart_rate") == int64(want)
			})
		}
	}
	// One process commits, the other stands by.
	active, standby := 0, 0
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if strings.Contains(string(b), "this process is the active lake writer") {
			active++
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "another process holds the lease; standing by") && strings.Contains(line, "lake-writer") {
				standby++
				break
			}
		}
	}
	if active != 1 || standby != 1 {
		t.Errorf("%d active lake writers and %d standing by, want 1 and 1", active, standby)
	}
	for _, addr := range addrs {
		if n := apiCount(t, addr, "SELECT count(DISTINCT subject || '/' || CAST(\"time\" AS VARCHAR)) FROM heart_rate"); n != int64(want) {
			t.Errorf("%s: %d distinct readings, want %d", addr, n, want)
		}
	}
}
