package secret

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/stream"
)

func testKV(t *testing.T) KV {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := stream.Connect(context.Background(), log, stream.ConnOptions{Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); srv.Shutdown(context.Background()) })
	kv, err := conn.KV(context.Background(), Bucket, "test")
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func open(t *testing.T, kv KV, k []byte, logTo io.Writer) (*Store, error) {
	t.Helper()
	return Open(context.Background(), slog.New(slog.NewTextHandler(logTo, nil)), prometheus.NewRegistry(), kv, Options{MasterKey: k})
}

func TestPutGetDeleteList(t *testing.T) {
	kv := testKV(t)
	var logs bytes.Buffer
	s, err := open(t, kv, key(1), &logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "pseudonymize.key", []byte("hunter2-value")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "fitbit.refresh-token", []byte("r1")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "pseudonymize.key"); err != nil || string(got) != "hunter2-value" {
		t.Fatalf("get = %q, %v", got, err)
	}
	names, err := s.List(ctx)
	if err != nil || strings.Join(names, ",") != "fitbit.refresh-token,pseudonymize.key" {
		t.Fatalf("list = %v, %v", names, err)
	}
	// Stored bytes are not the value, and sealing twice gives different bytes (random nonce).
	e1, _ := kv.Get(ctx, "pseudonymize.key")
	if bytes.Contains(e1.Value(), []byte("hunter2")) {
		t.Fatal("value stored in clear")
	}
	_ = s.Put(ctx, "pseudonymize.key", []byte("hunter2-value"))
	e2, _ := kv.Get(ctx, "pseudonymize.key")
	if bytes.Equal(e1.Value(), e2.Value()) {
		t.Fatal("same ciphertext twice: nonce reused")
	}
	if err := s.Delete(ctx, "fitbit.refresh-token"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "fitbit.refresh-token"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if err := s.Delete(ctx, "never-there"); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
	// Create keeps the first value.
	v, created, err := s.Create(ctx, "k", []byte("first"))
	if err != nil || !created || string(v) != "first" {
		t.Fatalf("create = %q %v %v", v, created, err)
	}
	v, created, err = s.Create(ctx, "k", []byte("second"))
	if err != nil || created || string(v) != "first" {
		t.Fatalf("second create = %q %v %v", v, created, err)
	}
	for _, bad := range []string{"", "_x", "a b", "a/b", "a..b", "x.", strings.Repeat("a", 300)} {
		if err := s.Put(ctx, bad, nil); !errors.Is(err, ErrBadName) {
			t.Errorf("name %q: err = %v", bad, err)
		}
	}
	if strings.Contains(logs.String(), "hunter2") {
		t.Fatal("value logged")
	}
}

func TestTamperDetection(t *testing.T) {
	kv := testKV(t)
	var logs bytes.Buffer
	s, err := open(t, kv, key(1), &logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_ = s.Put(ctx, "a", []byte("secret-a"))
	_ = s.Put(ctx, "b", []byte("secret-b"))
	ea, _ := kv.Get(ctx, "a")
	// Every single flipped bit is detected.
	for i := range len(ea.Value()) * 8 {
		mod := bytes.Clone(ea.Value())
		mod[i/8] ^= 1 << (i % 8)
		_, _ = kv.Put(ctx, "a", mod)
		if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrTampered) {
			t.Fatalf("bit %d flipped: err = %v", i, err)
		}
	}
	// A value moved to another name fails (the name is authenticated).
	eb, _ := kv.Get(ctx, "b")
	_, _ = kv.Put(ctx, "a", eb.Value())
	if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrTampered) {
		t.Fatalf("moved value: err = %v", err)
	}
	// Truncated.
	_, _ = kv.Put(ctx, "a", eb.Value()[:10])
	if _, err := s.Get(ctx, "a"); !errors.Is(err, ErrTampered) {
		t.Fatalf("truncated value: err = %v", err)
	}
	if strings.Contains(logs.String(), "secret-") {
		t.Fatal("value logged")
	}
}

func TestWrongMasterKey(t *testing.T) {
	kv := testKV(t)
	s, err := open(t, kv, key(1), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Put(context.Background(), "x", []byte("v"))
	if _, err := open(t, kv, key(2), io.Discard); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("open with another key: err = %v", err)
	}
	if _, err := open(t, kv, key(1)[:16], io.Discard); !errors.Is(err, ErrBadMasterKey) {
		t.Fatalf("short key: err = %v", err)
	}
	// The right key still opens.
	s2, err := open(t, kv, key(1), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s2.Get(context.Background(), "x"); err != nil || string(v) != "v" {
		t.Fatalf("reopen: %q %v", v, err)
	}
}

func TestLoadMasterKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	noEnv := func(string) string { return "" }
	k1, created, err := LoadMasterKey(dir, noEnv)
	if err != nil || !created || len(k1) != KeySize {
		t.Fatalf("first load: %d bytes, created=%v, %v", len(k1), created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	k2, created, err := LoadMasterKey(dir, noEnv)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second load differs: created=%v %v", created, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
	hexKey := strings.Repeat("ab", 32)
	env := func(v string) func(string) string {
		return func(n string) string {
			if n == EnvMasterKey {
				return v
			}
			return ""
		}
	}
	k, _, err := LoadMasterKey(dir, env(hexKey))
	if err != nil || !bytes.Equal(k, bytes.Repeat([]byte{0xab}, 32)) {
		t.Fatalf("hex env key: %x %v", k, err)
	}
	k, _, err = LoadMasterKey(dir, env("q83vq83vq83vq83vq83vq83vq83vq83vq83vq83vq80="))
	if err != nil || len(k) != 32 {
		t.Fatalf("base64 env key: %x %v", k, err)
	}
	for _, bad := range []string{"short", strings.Repeat("ab", 16), "!!!!"} {
		if _, _, err := LoadMasterKey(dir, env(bad)); !errors.Is(err, ErrBadMasterKey) {
			t.Errorf("env %q: err = %v", bad, err)
		}
	}
}
