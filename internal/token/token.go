// Package token manages API tokens: bearer secrets with a scope (ingest, read, admin) and an
// optional subject they are bound to. Only the SHA-256 of a token is stored (in a NATS KV
// bucket, keyed by that hash), so a copy of the store reveals no usable token.
//
// A Store keeps every token in memory, kept current by a KV watcher, so Verify costs a hash
// and a map lookup. Store is safe for concurrent use; Close stops its watcher.
package token

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulselake/pulselake/internal/reading"
)

// Scope is what a token may do. Admin may do everything.
type Scope string

const (
	ScopeIngest Scope = "ingest" // send readings
	ScopeRead   Scope = "read"   // query, alerts, events
	ScopeAdmin  Scope = "admin"  // everything, including tokens and silences
)

// ParseScope checks a scope name.
func ParseScope(s string) (Scope, error) {
	switch Scope(s) {
	case ScopeIngest, ScopeRead, ScopeAdmin:
		return Scope(s), nil
	}
	return "", fmt.Errorf("unknown scope %q; want ingest, read or admin", s)
}

// Allows reports whether a token of scope s may act with scope need.
func (s Scope) Allows(need Scope) bool { return s == ScopeAdmin || s == need }

// Sees reports whether the token may read or write the data of subject: every subject for an
// unbound token, only its own for a subject-bound one (never data without a subject). This is
// the one rule every path (HTTP, SQL, server-sent events, alerts, MQTT, NATS, the REST catalog)
// applies; a path that cannot filter by subject refuses bound tokens (see Bound). Admin tokens
// are never bound (ErrBoundAdmin).
func (t Token) Sees(subject string) bool { return t.Subject == "" || t.Subject == subject }

// Bound reports whether the token is bound to one subject.
func (t Token) Bound() bool { return t.Subject != "" }

// Token is the stored description of a token (never the token itself).
type Token struct {
	ID      string     `json:"id"` // first 12 hex digits of the hash; shown and used to revoke
	Name    string     `json:"name,omitempty"`
	Scope   Scope      `json:"scope"`
	Subject string     `json:"subject,omitempty"` // when set, the token may only touch this subject
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
	hash    string
}

// Errors.
var (
	ErrInvalid  = errors.New("invalid or revoked token")
	ErrNotFound = errors.New("no such token")
	// ErrBoundAdmin refuses an admin token bound to a subject: admin creates tokens and
	// silences and reads every path, so a binding could not hold (it could mint itself an
	// unbound token).
	ErrBoundAdmin = errors.New("an admin token cannot be bound to a subject (admin can create unbound tokens); bind a read or ingest token instead")
)

// Bucket is the KV bucket of tokens.
const Bucket = "pulselake_tokens"

// Prefix starts every generated token, so secret scanners can recognise them.
const Prefix = "plk_"

// Store is the token store.
type Store struct {
	kv     jetstream.KeyValue
	log    *slog.Logger
	mu     sync.RWMutex
	byHash map[string]Token
	ready  chan struct{}
	// onRevoke, when set, is called (by the watcher) for each token revoked or deleted
	// anywhere, so long-lived connections opened with it can be closed.
	onRevoke func(Token)
	cancel   context.CancelFunc
	done     chan struct{}
}

// Open loads every token and starts watching the bucket for changes made elsewhere (other
// serve nodes, the CLI).
func Open(ctx context.Context, log *slog.Logger, kv jetstream.KeyValue) (*Store, error) {
	wctx, cancel := context.WithCancel(context.Background())
	w, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watching tokens: %w", err)
	}
	s := &Store{kv: kv, log: log, byHash: map[string]Token{}, ready: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go s.watch(w)
	select {
	case <-s.ready:
		return s, nil
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("loading tokens: %w", ctx.Err())
	}
}

func (s *Store) watch(w jetstream.KeyWatcher) {
	defer close(s.done)
	defer w.Stop()
	readyOnce := sync.OnceFunc(func() { close(s.ready) })
	for e := range w.Updates() {
		if e == nil { // initial values delivered
			readyOnce()
			continue
		}
		var gone *Token
		s.mu.Lock()
		if e.Operation() != jetstream.KeyValuePut {
			if t, ok := s.byHash[e.Key()]; ok {
				gone = &t
			}
			delete(s.byHash, e.Key())
		} else {
			var t Token
			if err := json.Unmarshal(e.Value(), &t); err != nil {
				s.log.Error("ignoring unreadable token record", "key", e.Key()[:12], "err", err)
			} else {
				t.hash = e.Key()
				s.byHash[e.Key()] = t
				if t.Revoked != nil {
					gone = &t
				}
				if t.Scope == ScopeAdmin && t.Bound() && t.Revoked == nil {
					s.log.Warn("refusing a subject-bound admin token; revoke it and create a read or ingest token bound to the subject", "id", t.ID)
				}
			}
		}
		onRevoke := s.onRevoke
		s.mu.Unlock()
		if gone != nil && onRevoke != nil {
			onRevoke(*gone)
		}
	}
}

// OnRevoke makes the store call f for every token revoked or deleted from now on, in this
// process or any other (the CLI, another node). f runs on the watcher's goroutine: keep it short.
func (s *Store) OnRevoke(f func(Token)) {
	s.mu.Lock()
	s.onRevoke = f
	s.mu.Unlock()
}

// Close stops the watcher and waits for it.
func (s *Store) Close() {
	s.cancel()
	<-s.done
}

func hashOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Generate returns a new random token string.
func Generate() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// Create stores a new token and returns its secret, which is shown once and never stored.
func (s *Store) Create(ctx context.Context, scope Scope, subject, name string) (string, Token, error) {
	secret := Generate()
	t, err := s.Import(ctx, secret, scope, subject, name)
	return secret, t, err
}

// Import stores a given secret as a token (used for PULSELAKE_ADMIN_TOKEN).
func (s *Store) Import(ctx context.Context, secret string, scope Scope, subject, name string) (Token, error) {
	if len(secret) < 16 {
		return Token{}, errors.New("a token must be at least 16 characters")
	}
	if scope == ScopeAdmin && subject != "" {
		return Token{}, ErrBoundAdmin
	}
	if subject != "" {
		// A binding no reading can match would be a token that silently sees nothing.
		if err := reading.CheckIdent("subject", subject); err != nil {
			return Token{}, err
		}
	}
	h := hashOf(secret)
	t := Token{ID: h[:12], Name: name, Scope: scope, Subject: subject, Created: time.Now().UTC().Truncate(time.Second), hash: h}
	data, _ := json.Marshal(t)
	if _, err := s.kv.Put(ctx, h, data); err != nil {
		return Token{}, fmt.Errorf("storing token: %w", err)
	}
	s.mu.Lock()
	s.byHash[h] = t
	s.mu.Unlock()
	return t, nil
}

// Verify returns the token for a secret, or ErrInvalid.
func (s *Store) Verify(secret string) (Token, error) {
	s.mu.RLock()
	t, ok := s.byHash[hashOf(secret)]
	s.mu.RUnlock()
	if !ok || t.Revoked != nil {
		return Token{}, ErrInvalid
	}
	if t.Scope == ScopeAdmin && t.Bound() {
		return Token{}, ErrInvalid // stored by an older version; see ErrBoundAdmin
	}
	return t, nil
}

// List returns every token, oldest first.
func (s *Store) List() []Token {
	s.mu.RLock()
	out := make([]Token, 0, len(s.byHash))
	for _, t := range s.byHash {
		out = append(out, t)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Revoke marks the token with this ID (or unique ID prefix) revoked. It stays listed.
func (s *Store) Revoke(ctx context.Context, id string) (Token, error) {
	var match []Token
	for _, t := range s.List() {
		if strings.HasPrefix(t.ID, id) && id != "" {
			match = append(match, t)
		}
	}
	switch len(match) {
	case 0:
		return Token{}, fmt.Errorf("%w %q; see pulselake token list", ErrNotFound, id)
	case 1:
	default:
		return Token{}, fmt.Errorf("token ID %q is ambiguous; give more digits", id)
	}
	t := match[0]
	now := time.Now().UTC().Truncate(time.Second)
	t.Revoked = &now
	data, _ := json.Marshal(t)
	if _, err := s.kv.Put(ctx, t.hash, data); err != nil {
		return Token{}, fmt.Errorf("revoking token: %w", err)
	}
	s.mu.Lock()
	s.byHash[t.hash] = t
	s.mu.Unlock()
	return t, nil
}
