// Package postgrestest starts throwaway PostgreSQL servers for tests, in the spirit of
// net/http/httptest: Start makes a new cluster with initdb in a test temporary directory,
// runs postgres on a free loopback port (TCP only, no Unix socket) with password (SCRAM)
// authentication, and stops it at the test's cleanup. The test is skipped, with a message
// naming what is missing, when the PostgreSQL server binaries are not installed.
//
// The server is built for speed, not durability (fsync, synchronous_commit and
// full_page_writes are off): a test must not rely on it surviving a crash of the machine,
// but it keeps its data across Stop and Restart, on the same port.
//
// PostgreSQL refuses to run as root: when the test runs as root, initdb and postgres run as
// the unprivileged user "postgres" (Debian's package creates it) or else "nobody", in a
// directory that user owns.
//
// A Server's methods may be called from any goroutine; Stop and Restart must not run at the
// same time as each other.
package postgrestest

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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Options are the settings of a server; the zero value is usable.
type Options struct {
	// User is the superuser initdb creates (default "postgrestest").
	User string
	// Password is User's password (default "postgrestest-password").
	Password string
	// Database is the database DSN names; Start creates it unless it is "postgres", which
	// initdb makes (default "postgres").
	Database string
}

// Server is a running throwaway PostgreSQL server.
type Server struct {
	opts    Options
	bin     string
	base    string
	data    string
	addr    string
	logPath string
	cred    *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error // receives cmd's Wait result once
}

// startTimeout bounds how long the server may take to accept connections.
const startTimeout = 30 * time.Second

// BinDir returns the directory holding initdb and postgres: PATH first, then the newest of
// Debian's /usr/lib/postgresql/<major>/bin. It is empty when neither has them.
func BinDir() string {
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

// Start initialises a cluster in a temporary directory of t, starts the server and waits
// until it accepts connections, then creates opts.Database. The server stops at t's
// cleanup. It skips t when the server binaries are missing, and fails it when the server
// does not start.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.User == "" {
		opts.User = "postgrestest"
	}
	if opts.Password == "" {
		opts.Password = "postgrestest-password"
	}
	if opts.Database == "" {
		opts.Database = "postgres"
	}
	bin := BinDir()
	if bin == "" {
		t.Skip("PostgreSQL server binaries (initdb, postgres) are not on PATH nor in /usr/lib/postgresql/*/bin; install Debian's postgresql package (see .ci/install)")
	}
	base := t.TempDir()
	s := &Server{opts: opts, bin: bin, base: base, data: filepath.Join(base, "data"),
		logPath: filepath.Join(t.TempDir(), "postgres.log")}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			if u, err = user.Lookup("nobody"); err != nil {
				t.Skip("running as root and neither the user postgres nor nobody exists to run PostgreSQL as")
			}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
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
	pwfile := filepath.Join(base, "pwfile")
	if err := os.WriteFile(pwfile, []byte(opts.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s.cred != nil {
		if err := os.Chown(pwfile, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.data, "-U", opts.User, "--pwfile", pwfile,
		"--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions")
	initdb.Dir = base
	initdb.Env = s.env()
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	os.Remove(pwfile)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	l.Close()
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	if opts.Database != "postgres" {
		db, err := sql.Open("pgx", s.dsn("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		// The name is the test's own, quoted as an identifier.
		q := `"` + strings.ReplaceAll(opts.Database, `"`, `""`) + `"`
		if _, err := db.Exec("CREATE DATABASE " + q); err != nil {
			t.Fatalf("creating database %s: %v", opts.Database, err)
		}
	}
	return s
}

// DSN is the URL of the server's database opts.Database, with the user and password:
// postgres://user:password@127.0.0.1:port/database?sslmode=disable.
func (s *Server) DSN() string { return s.dsn(s.opts.Database) }

func (s *Server) dsn(database string) string {
	return (&url.URL{Scheme: "postgres", User: url.UserPassword(s.opts.User, s.opts.Password), Host: s.addr,
		Path: "/" + database, RawQuery: "sslmode=disable"}).String()
}

// Addr is the server's host:port; it stays the same across Restart.
func (s *Server) Addr() string { return s.addr }

// User is the user DSN logs in as.
func (s *Server) User() string { return s.opts.User }

// Password is User's password.
func (s *Server) Password() string { return s.opts.Password }

// Stop shuts the server down (fast shutdown: open transactions are rolled back) and waits
// for it to exit. It does nothing when the server is stopped.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Restart stops the server when it runs, starts it again on the same port and data, and
// waits until it accepts connections. It returns the error instead of failing the test, so
// that it may be called from a goroutine other than the test's.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

// start runs postgres and waits until it accepts connections.
func (s *Server) start() error {
	host, port, _ := net.SplitHostPort(s.addr)
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// Durability is of no use to a throwaway server; connections are for a few serve
	// processes with their pools.
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data, "-h", host, "-p", port, "-k", "",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "log_min_messages=warning")
	cmd.Dir = s.base
	cmd.Env = s.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	db, err := sql.Open("pgx", s.dsn("postgres")+"&connect_timeout=2")
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		pingErr := db.PingContext(ctx)
		cancel()
		if pingErr == nil {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err // for Stop
			return fmt.Errorf("postgres exited: %v\n%s", err, s.log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections in %s: %v\n%s", startTimeout, pingErr, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// log is the server's log so far, for failure messages.
func (s *Server) log() []byte {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Appendf(nil, "(reading the server's log: %v)", err)
	}
	return bytes.TrimSpace(b)
}

func (s *Server) env() []string {
	return append(os.Environ(), "LC_ALL=C", "LANG=C", "TZ=UTC")
}
