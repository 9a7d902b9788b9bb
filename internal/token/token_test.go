package token

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/stream"
)

func openTwo(t *testing.T) (*Store, *Store) {
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
	a, err := Open(context.Background(), log, kv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(context.Background(), log, kv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestCreateVerifyRevokeAcrossStores(t *testing.T) {
	a, b := openTwo(t)
	ctx := context.Background()
	secret, tok, err := a.Create(ctx, ScopeIngest, "patient-1", "cuff")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Verify(secret); err != nil || got.ID != tok.ID || got.Subject != "patient-1" || got.Scope != ScopeIngest {
		t.Fatalf("verify on the creating store: %+v %v", got, err)
	}
	// The other store (another process) learns of it through the watcher.
	waitFor(t, func() bool { _, err := b.Verify(secret); return err == nil })
	if _, err := a.Verify(secret + "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("wrong secret: err = %v", err)
	}
	if _, err := b.Revoke(ctx, tok.ID[:6]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := a.Verify(secret); return errors.Is(err, ErrInvalid) })
	if l := a.List(); len(l) != 1 || l[0].Revoked == nil {
		t.Errorf("list after revoke: %+v", l)
	}
	if _, err := a.Revoke(ctx, "zzz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking an unknown ID: %v", err)
	}
}

func TestScopes(t *testing.T) {
	if !ScopeAdmin.Allows(ScopeIngest) || !ScopeAdmin.Allows(ScopeRead) || ScopeIngest.Allows(ScopeRead) || ScopeRead.Allows(ScopeIngest) {
		t.Error("scope rules broken")
	}
	if _, err := ParseScope("root"); err == nil {
		t.Error("unknown scope accepted")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond) // polling a watcher, bounded by the deadline
	}
}
