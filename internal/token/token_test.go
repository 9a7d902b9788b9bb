package token

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
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

func TestSubjectBinding(t *testing.T) {
	a, _ := openTwo(t)
	ctx := context.Background()
	if _, _, err := a.Create(ctx, ScopeAdmin, "patient-1", "bound admin"); !errors.Is(err, ErrBoundAdmin) {
		t.Fatalf("bound admin token: err = %v, want ErrBoundAdmin", err)
	}
	for _, bad := range []string{"patient 1", "-patient", "patient/1", strings.Repeat("p", 200)} {
		if _, _, err := a.Create(ctx, ScopeRead, bad, "typo"); err == nil || !strings.Contains(err.Error(), "subject") {
			t.Fatalf("token bound to %q: err = %v, want an invalid-subject error", bad, err)
		}
	}
	if l := a.List(); len(l) != 0 {
		t.Fatalf("refused token was stored: %+v", l)
	}
	secret, _, err := a.Create(ctx, ScopeRead, "patient-1", "patient app")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := a.Verify(secret)
	if err != nil {
		t.Fatal(err)
	}
	unbound := Token{Scope: ScopeRead}
	for _, c := range []struct {
		tok     Token
		subject string
		sees    bool
	}{
		{tok, "patient-1", true},
		{tok, "patient-2", false},
		{tok, "", false}, // data without a subject is not the bound subject's
		{tok, "patient-10", false},
		{unbound, "patient-2", true},
		{unbound, "", true},
	} {
		if got := c.tok.Sees(c.subject); got != c.sees {
			t.Errorf("token bound to %q sees %q = %v, want %v", c.tok.Subject, c.subject, got, c.sees)
		}
	}
	if !tok.Bound() || unbound.Bound() {
		t.Error("Bound broken")
	}
	// A bound admin token stored by an older version is refused.
	old := "plk_bound-admin-from-an-older-version"
	rec, _ := json.Marshal(Token{ID: hashOf(old)[:12], Scope: ScopeAdmin, Subject: "patient-1"})
	if _, err := a.kv.Put(ctx, hashOf(old), rec); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := a.byHashLocked(hashOf(old)); return ok })
	if _, err := a.Verify(old); !errors.Is(err, ErrInvalid) {
		t.Errorf("stored bound admin token verified: %v", err)
	}
}

func (s *Store) byHashLocked(h string) (Token, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.byHash[h]
	return t, ok
}
