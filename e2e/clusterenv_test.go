package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/pulselake/pulselake/internal/postgrestest"
)

// The shared environment of the multi-node tests: an S3-compatible store for the warehouse
// and a PostgreSQL server for the Iceberg SQL catalog, both real servers started per test.

const (
	s3Access = "pulselake-test-access"
	s3Secret = "pulselake-test-secret-0123456789"
	s3Bucket = "pulselake"

	pgUser     = "pulselake"
	pgPassword = "pulselake-test-pg-password-42"
	pgDatabase = "pulselake"
)

// startVersitygw starts the versitygw S3 gateway on a free loopback port with an empty
// bucket and returns its endpoint (http://127.0.0.1:port) and the bucket's name; the
// credentials are s3Access and s3Secret. The gateway stops at the test's cleanup.
func startVersitygw(t *testing.T) (endpoint, bucket string) {
	t.Helper()
	endpoint, _ = startVersitygwRoot(t)
	return endpoint, s3Bucket
}

// startVersitygwRoot is startVersitygw that also returns the POSIX directory the gateway
// serves: each bucket is a subdirectory of root, each object a file under it.
func startVersitygwRoot(t *testing.T) (endpoint, root string) {
	t.Helper()
	bin, err := exec.LookPath("versitygw")
	if err != nil {
		t.Skip("versitygw is not on PATH; install it with `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0` (see .ci/install)")
	}
	root = t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--access", s3Access, "--secret", s3Secret, "--port", addr, "--quiet", "posix", root)
	logf, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	waitUntil(t, 20*time.Second, "versitygw to accept connections", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	endpoint = "http://" + addr
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s3Access, s3Secret, ""),
	})
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(s3Bucket)}); err != nil {
		t.Fatalf("creating bucket: %v", err)
	}
	return endpoint, root
}

// startPostgres starts a throwaway PostgreSQL server (package postgrestest) with an empty
// database owned by the user pgUser, and returns its DSN
// (postgres://pulselake:…@127.0.0.1:port/pulselake?sslmode=disable). The server stops at
// the test's cleanup; the test is skipped when the PostgreSQL server binaries are missing.
func startPostgres(t *testing.T) (dsn string) {
	t.Helper()
	return postgrestest.Start(t, postgrestest.Options{User: pgUser, Password: pgPassword, Database: pgDatabase}).DSN()
}

// pgExec runs statements on the database of dsn (for tests that look at or break the
// catalog behind serve's back).
func pgExec(t testing.TB, dsn string, stmt string, args ...any) {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// pgCount runs a query returning one number on the database of dsn.
func pgCount(t *testing.T, dsn, query string, args ...any) int {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// clusterLakeYAML is the `lake:` section of a configuration that shares the lake between
// serve processes: the warehouse in bucket on the S3 gateway at endpoint (startVersitygw)
// and the catalog on PostgreSQL at dsn (startPostgres), flushed every second.
func clusterLakeYAML(endpoint, bucket, dsn string) string {
	return lakeYAML(endpoint, bucket, fmt.Sprintf("dsn: %q", dsn))
}

// lakeYAML is clusterLakeYAML with the catalog's DSN setting given as a line of YAML
// (dsn: "…" or dsn_file: path).
func lakeYAML(endpoint, bucket, dsnSetting string) string {
	return fmt.Sprintf(`lake:
  warehouse: s3://%s/warehouse
  flush_interval: 1s
  catalog:
    type: sql
    driver: postgres
    %s
    max_conns: 3
  s3:
    endpoint: %s
    region: us-east-1
    access_key_id: %s
    secret_access_key: %s
`, bucket, dsnSetting, endpoint, s3Access, s3Secret)
}
