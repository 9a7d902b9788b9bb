package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
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

// pgBinDir returns the directory holding initdb and postgres: PATH first, then the newest
// of Debian's /usr/lib/postgresql/<major>/bin. It is empty when neither has them.
func pgBinDir() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { // newest major first: 16 before 9
		ma, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		mb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return mb - ma
	})
	for _, d := range dirs {
		_, e1 := os.Stat(filepath.Join(d, "initdb"))
		_, e2 := os.Stat(filepath.Join(d, "postgres"))
		if e1 == nil && e2 == nil {
			return d
		}
	}
	return ""
}

// startPostgres starts a throwaway PostgreSQL server: a new cluster made by initdb in a
// test temporary directory, listening on a free loopback port (no Unix socket), with
// password (SCRAM) authentication. It returns the DSN of an empty database owned by the
// user pgUser (postgres://pulselake:…@127.0.0.1:port/pulselake?sslmode=disable) and stops
// the server at the test's cleanup. It skips the test when the PostgreSQL server binaries
// are missing.
//
// PostgreSQL refuses to run as root: when the test runs as root, initdb and postgres run
// as the unprivileged user "postgres" (Debian's package creates it) or else "nobody", in a
// directory that user owns.
func startPostgres(t *testing.T) (dsn string) {
	t.Helper()
	bin := pgBinDir()
	if bin == "" {
		t.Skip("PostgreSQL server binaries (initdb, postgres) are not on PATH nor in /usr/lib/postgresql/*/bin; install Debian's postgresql package (see .ci/install)")
	}
	base := t.TempDir()
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			if u, err = user.Lookup("nobody"); err != nil {
				t.Skip("running as root and neither the user postgres nor nobody exists to run PostgreSQL as")
			}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		// The test's temporary directories are private to root: let the user pass through
		// them to its own directory.
		for _, d := range []string{filepath.Dir(base), base} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(base, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(base, "data")
	pwfile := filepath.Join(base, "pwfile")
	if err := os.WriteFile(pwfile, []byte(pgPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(pwfile, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "LC_ALL=C", "LANG=C", "TZ=UTC")

	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", pgUser, "--pwfile", pwfile,
		"--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions")
	initdb.Dir = base
	initdb.Env = env
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}

	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	logf, err := os.Create(filepath.Join(t.TempDir(), "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	// Durability is of no use to a throwaway server; connections are for a few serve
	// processes with their pools.
	srv := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-h", host, "-p", port, "-k", "",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "log_min_messages=warning")
	srv.Dir = base
	srv.Env = env
	srv.Stdout, srv.Stderr = logf, logf
	srv.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := srv.Start(); err != nil {
		t.Fatalf("starting postgres: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGINT) // fast shutdown: roll back open transactions
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			srv.Process.Kill()
			<-exited
		}
		logf.Close()
	})

	admin := (&url.URL{Scheme: "postgres", User: url.UserPassword(pgUser, pgPassword), Host: addr,
		Path: "/postgres", RawQuery: "sslmode=disable&connect_timeout=2"}).String()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var lastErr error
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		lastErr = db.PingContext(ctx)
		cancel()
		if lastErr == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("postgres exited: %v\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("postgres did not accept connections in 30s: %v\n%s", lastErr, bytes.TrimSpace(log))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := db.Exec("CREATE DATABASE " + pgDatabase); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	return (&url.URL{Scheme: "postgres", User: url.UserPassword(pgUser, pgPassword), Host: addr,
		Path: "/" + pgDatabase, RawQuery: "sslmode=disable"}).String()
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
