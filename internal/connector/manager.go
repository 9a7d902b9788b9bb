package connector

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/secret"
)

// KV buckets of the connectors.
const (
	ConnectionsBucket = "pulselake_connections"
	CursorsBucket     = "pulselake_connector_cursors"
	StatesBucket      = "pulselake_connect_states"
)

// DefaultStateTTL is how long an authorization request may take (a person consenting).
const DefaultStateTTL = 10 * time.Minute

// Secrets is the encrypted secret store (internal/secret) the tokens are sealed in.
type Secrets interface {
	Get(ctx context.Context, name string) ([]byte, error)
	Put(ctx context.Context, name string, value []byte) error
	Delete(ctx context.Context, name string) error
}

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	// Providers by name: the configured ones.
	Providers map[string]Provider
	// DataTypes per provider pulled for new connections (default: all the provider offers).
	DataTypes map[string][]string
	// Connections, Cursors and States are the KV buckets (ConnectionsBucket, ...).
	Connections, Cursors, States jetstream.KeyValue
	// Secrets seals the tokens. Required for connecting and pulling.
	Secrets Secrets
	// StateTTL is how long an authorization request stays valid (default DefaultStateTTL).
	StateTTL time.Duration
	// OnStatus is called after a connection's status changed (nil: nothing).
	OnStatus func(ctx context.Context, before, after Connection)
	Now      func() time.Time
}

// Manager keeps the connections: their metadata, tokens, cursors and authorization requests.
type Manager struct {
	log *slog.Logger
	o   ManagerOptions

	mu    sync.Mutex
	begun map[string]time.Time // state → when this process began it, for Wait
}

// NewManager returns a Manager over the buckets of o.
func NewManager(log *slog.Logger, o ManagerOptions) *Manager {
	if o.StateTTL == 0 {
		o.StateTTL = DefaultStateTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Manager{log: log, o: o}
}

// Provider returns a configured provider.
func (m *Manager) Provider(name string) (Provider, error) {
	p, ok := m.o.Providers[name]
	if !ok {
		return nil, fmt.Errorf("%w %q: configure connectors.%s in the config file (docs/sources.md)", ErrUnknownProvider, name, strings.ReplaceAll(name, "-", "_"))
	}
	return p, nil
}

// Providers lists the configured providers' names, sorted.
func (m *Manager) Providers() []string {
	out := make([]string, 0, len(m.o.Providers))
	for n := range m.o.Providers {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// dataTypes is what a provider's connections pull.
func (m *Manager) dataTypes(p Provider) []string {
	if dt := m.o.DataTypes[p.Name()]; len(dt) > 0 {
		return dt
	}
	return p.DataTypes()
}

// ConnectionID is the id of provider's connection of subject.
func ConnectionID(provider, subject string) string {
	h := sha256.Sum256([]byte(provider + "\x00" + subject))
	return hex.EncodeToString(h[:6])
}

func tokenName(id string) string { return "connector." + id }

// authRequest is an authorization request in progress, stored under its state.
type authRequest struct {
	Provider string    `json:"provider"`
	Subject  string    `json:"subject"`
	Verifier string    `json:"verifier"`
	Expires  time.Time `json:"expires"`
}

// CheckSubject validates a subject name.
func CheckSubject(s string) error {
	if err := reading.CheckIdent("subject", s); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSubject, err)
	}
	return nil
}

// Begin starts connecting subject at provider: it stores a single-use state bound to the
// subject with a fresh PKCE verifier and returns the authorization URL to open.
func (m *Manager) Begin(ctx context.Context, provider, subject string) (authURL, state string, err error) {
	p, err := m.Provider(provider)
	if err != nil {
		return "", "", err
	}
	if err := CheckSubject(subject); err != nil {
		return "", "", err
	}
	if n := m.dropExpiredStates(ctx); n >= MaxPendingStates {
		return "", "", fmt.Errorf("%w: %d authorization requests are pending; wait until some complete or expire (%s)", ErrTooManyPending, n, m.o.StateTTL)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generating state: %w", err)
	}
	state = hex.EncodeToString(b)
	verifier := oauth2.GenerateVerifier()
	req, _ := json.Marshal(authRequest{Provider: provider, Subject: subject, Verifier: verifier, Expires: m.o.Now().Add(m.o.StateTTL)})
	if _, err := m.o.States.Create(ctx, state, req); err != nil {
		return "", "", fmt.Errorf("storing authorization state: %w", err)
	}
	m.mu.Lock()
	if m.begun == nil {
		m.begun = map[string]time.Time{}
	}
	m.begun[state] = m.o.Now()
	m.mu.Unlock()
	return p.AuthCodeURL(state, verifier), state, nil
}

// MaxPendingStates bounds the authorization requests in progress at once.
const MaxPendingStates = 1000

// dropExpiredStates removes authorization requests nobody completed and returns how many
// are still pending.
func (m *Manager) dropExpiredStates(ctx context.Context) int {
	keys, err := listKeys(ctx, m.o.States)
	if err != nil {
		return 0
	}
	now, pending := m.o.Now(), 0
	for _, k := range keys {
		e, err := m.o.States.Get(ctx, k)
		if err != nil {
			continue
		}
		var r authRequest
		if json.Unmarshal(e.Value(), &r) != nil || now.After(r.Expires) {
			_ = m.o.States.Purge(ctx, k, jetstream.LastRevision(e.Revision()))
			continue
		}
		pending++
	}
	return pending
}

// Complete finishes connecting: it consumes state (once), exchanges code for a token, seals
// the token and marks the connection ok.
func (m *Manager) Complete(ctx context.Context, provider, state, code string) (Connection, error) {
	p, err := m.Provider(provider)
	if err != nil {
		return Connection{}, err
	}
	if state == "" || len(state) > 128 || code == "" {
		return Connection{}, ErrBadState
	}
	e, err := m.o.States.Get(ctx, state)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return Connection{}, ErrBadState
	}
	if err != nil {
		return Connection{}, fmt.Errorf("reading authorization state: %w", err)
	}
	// Compare-and-delete: of two callbacks with one state, one wins.
	if err := m.o.States.Delete(ctx, state, jetstream.LastRevision(e.Revision())); err != nil {
		return Connection{}, ErrBadState
	}
	var req authRequest
	if err := json.Unmarshal(e.Value(), &req); err != nil || req.Provider != provider || m.o.Now().After(req.Expires) {
		return Connection{}, ErrBadState
	}
	tok, err := p.Exchange(ctx, code, req.Verifier)
	if err != nil {
		return Connection{}, fmt.Errorf("exchanging the authorization code with %s: %w", provider, err)
	}
	id := ConnectionID(provider, req.Subject)
	if err := m.saveToken(ctx, id, tok); err != nil {
		return Connection{}, err
	}
	before, err := m.Get(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Connection{}, err
	}
	c := Connection{ID: id, Provider: provider, Subject: req.Subject, Status: StatusOK, DataTypes: m.dataTypes(p),
		Created: m.o.Now().UTC(), LastSync: before.LastSync, StatusSince: m.o.Now().UTC()}
	if before.ID != "" {
		c.Created = before.Created
	}
	if err := m.put(ctx, c); err != nil {
		return Connection{}, err
	}
	m.log.Info("connection ready", "id", id, "provider", provider, "subject", req.Subject)
	if before.ID != "" && before.Status != c.Status && m.o.OnStatus != nil {
		m.o.OnStatus(ctx, before, c)
	}
	return c, nil
}

// Wait waits until the authorization request of state was used (by serve's callback or the
// CLI's loopback listener) and returns the connection it completed, or an error when it was
// declined, failed or expired.
func (m *Manager) Wait(ctx context.Context, provider, subject, state string) (Connection, error) {
	m.mu.Lock()
	begun, ours := m.begun[state]
	delete(m.begun, state)
	m.mu.Unlock()
	e, err := m.o.States.Get(ctx, state)
	switch {
	case err != nil && ours && errors.Is(err, jetstream.ErrKeyNotFound):
		// This process began it and the redirect already used it (a browser can be quicker
		// than this call): wait for the exchange below.
	case err != nil:
		return Connection{}, ErrBadState
	default:
		var req authRequest
		if err := json.Unmarshal(e.Value(), &req); err != nil {
			return Connection{}, ErrBadState
		}
		begun = req.Expires.Add(-m.o.StateTTL)
		if err := m.waitStateUsed(ctx, state); err != nil {
			return Connection{}, err
		}
	}
	// The state is used up before the code is exchanged: give the exchange time to finish.
	deadline := time.Now().Add(exchangeWait)
	for {
		c, err := m.Get(ctx, ConnectionID(provider, subject))
		if err == nil && c.Status == StatusOK && !c.StatusSince.Before(begun.Add(-time.Second)) {
			return c, nil
		}
		if time.Now().After(deadline) {
			return Connection{}, errors.New("the authorization was not completed (declined, or the code exchange failed: see the message in the browser)")
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return Connection{}, err
		}
	}
}

// waitStateUsed returns when the authorization request state is deleted (used or expired).
func (m *Manager) waitStateUsed(ctx context.Context, state string) error {
	w, err := m.o.States.Watch(ctx, state)
	if err != nil {
		return fmt.Errorf("watching the authorization request: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u := <-w.Updates():
			if u != nil && u.Operation() != jetstream.KeyValuePut {
				return nil
			}
		}
	}
}

// exchangeWait bounds the wait for a code exchange after its state was used.
const exchangeWait = 30 * time.Second

func (m *Manager) saveToken(ctx context.Context, id string, t *oauth2.Token) error {
	if m.o.Secrets == nil {
		return errors.New("storing the token: no secret store")
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding token: %w", err)
	}
	return m.o.Secrets.Put(ctx, tokenName(id), b)
}

// token returns the sealed token of a connection.
func (m *Manager) token(ctx context.Context, id string) (*oauth2.Token, error) {
	if m.o.Secrets == nil {
		return nil, errors.New("reading the token: no secret store")
	}
	b, err := m.o.Secrets.Get(ctx, tokenName(id))
	if err != nil {
		return nil, fmt.Errorf("reading the token of connection %s: %w", id, err)
	}
	var t oauth2.Token
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("decoding the token of connection %s: %w", id, err)
	}
	return &t, nil
}

func connKey(id string) string { return "c." + id }

func (m *Manager) put(ctx context.Context, c Connection) error {
	b, _ := json.Marshal(c)
	if _, err := m.o.Connections.Put(ctx, connKey(c.ID), b); err != nil {
		return fmt.Errorf("storing connection %s: %w", c.ID, err)
	}
	return nil
}

// Get returns a connection by id.
func (m *Manager) Get(ctx context.Context, id string) (Connection, error) {
	if id == "" || strings.ContainsAny(id, ".*> ") {
		return Connection{}, fmt.Errorf("%w %q", ErrNotFound, id)
	}
	e, err := m.o.Connections.Get(ctx, connKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Connection{}, fmt.Errorf("%w %q; list them with pulselake connect list", ErrNotFound, id)
	}
	if err != nil {
		return Connection{}, fmt.Errorf("reading connection %s: %w", id, err)
	}
	var c Connection
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Connection{}, fmt.Errorf("decoding connection %s: %w", id, err)
	}
	return c, nil
}

// List returns every connection, by provider then subject.
func (m *Manager) List(ctx context.Context) ([]Connection, error) {
	keys, err := listKeys(ctx, m.o.Connections)
	if err != nil {
		return nil, fmt.Errorf("listing connections: %w", err)
	}
	out := make([]Connection, 0, len(keys))
	for _, k := range keys {
		c, err := m.Get(ctx, strings.TrimPrefix(k, "c."))
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Connection) int {
		if c := strings.Compare(a.Provider, b.Provider); c != 0 {
			return c
		}
		return strings.Compare(a.Subject, b.Subject)
	})
	return out, nil
}

// setStatus records the outcome of a pull: status, last error and, when ok, the sync time.
func (m *Manager) setStatus(ctx context.Context, id, status string, syncErr error) (Connection, error) {
	before, err := m.Get(ctx, id)
	if err != nil {
		return Connection{}, err
	}
	c := before
	c.Status, c.LastError = status, ""
	if syncErr != nil {
		c.LastError = syncErr.Error()
	} else {
		c.LastSync = m.o.Now().UTC()
	}
	if c.Status != before.Status {
		c.StatusSince = m.o.Now().UTC()
	}
	if err := m.put(ctx, c); err != nil {
		return c, err
	}
	if before.Status != c.Status && m.o.OnStatus != nil {
		m.o.OnStatus(ctx, before, c)
	}
	return c, nil
}

// Revoke removes a connection: it calls the provider's revocation endpoint when it has
// one (a failure there is logged, the local removal goes on), then deletes the token, the
// cursors and the metadata.
func (m *Manager) Revoke(ctx context.Context, id string) (Connection, error) {
	c, err := m.Get(ctx, id)
	if err != nil {
		return Connection{}, err
	}
	if p, ok := m.o.Providers[c.Provider]; ok {
		if r, ok := p.(Revoker); ok {
			if t, err := m.token(ctx, id); err == nil {
				if err := r.Revoke(ctx, t); err != nil {
					m.log.Warn("the provider did not revoke the grant; removing the connection here anyway", "id", id, "provider", c.Provider, "err", err)
				}
			}
		}
	}
	if _, err := m.remove(ctx, c, false); err != nil {
		return c, err
	}
	if m.o.OnStatus != nil && c.Status != "" {
		after := c
		after.Status = "revoked"
		m.o.OnStatus(ctx, c, after)
	}
	m.log.Info("connection revoked", "id", id, "provider", c.Provider, "subject", c.Subject)
	return c, nil
}

// Counts is what a subject holds in the connectors.
type Counts struct {
	Connections, Tokens, Cursors int
}

// remove deletes (or only counts, with dryRun) a connection's token, cursors and metadata.
func (m *Manager) remove(ctx context.Context, c Connection, dryRun bool) (Counts, error) {
	var n Counts
	if m.o.Secrets != nil {
		if _, err := m.o.Secrets.Get(ctx, tokenName(c.ID)); err == nil || !isNotFound(err) {
			n.Tokens++ // present (or unreadable: it is still there)
		}
		if !dryRun {
			if err := m.o.Secrets.Delete(ctx, tokenName(c.ID)); err != nil {
				return n, fmt.Errorf("deleting the token of connection %s: %w", c.ID, err)
			}
		}
	}
	keys, err := listKeys(ctx, m.o.Cursors)
	if err != nil {
		return n, fmt.Errorf("listing cursors: %w", err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, c.ID+".") {
			continue
		}
		n.Cursors++
		if !dryRun {
			if err := m.o.Cursors.Purge(ctx, k); err != nil {
				return n, fmt.Errorf("deleting cursor %s: %w", k, err)
			}
		}
	}
	n.Connections++
	if !dryRun {
		if err := m.o.Connections.Purge(ctx, connKey(c.ID)); err != nil {
			return n, fmt.Errorf("deleting connection %s: %w", c.ID, err)
		}
	}
	return n, nil
}

func isNotFound(err error) bool { return errors.Is(err, secret.ErrNotFound) }

// EraseSubject deletes (or counts, with dryRun) every connection of subject with its
// tokens and cursors, and returns what was there.
func (m *Manager) EraseSubject(ctx context.Context, subject string, dryRun bool) (Counts, error) {
	var n Counts
	all, err := m.List(ctx)
	if err != nil {
		return n, err
	}
	for _, c := range all {
		if c.Subject != subject {
			continue
		}
		cn, err := m.remove(ctx, c, dryRun)
		n.Connections += cn.Connections
		n.Tokens += cn.Tokens
		n.Cursors += cn.Cursors
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Cursor is the sync position of one connection's data type.
type Cursor struct {
	// Until: every window before it was pulled and its readings stored.
	Until time.Time `json:"until,omitzero"`
	// Resume is where an interrupted pull continues (zero when the last pull finished).
	Resume time.Time `json:"resume,omitzero"`
}

func cursorKey(id, dataType string) string { return id + "." + dataType }

// Cursor returns the cursor of a connection's data type (zero before the first pull).
func (m *Manager) Cursor(ctx context.Context, id, dataType string) (Cursor, error) {
	e, err := m.o.Cursors.Get(ctx, cursorKey(id, dataType))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Cursor{}, nil
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("reading cursor %s %s: %w", id, dataType, err)
	}
	var c Cursor
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Cursor{}, fmt.Errorf("decoding cursor %s %s: %w", id, dataType, err)
	}
	return c, nil
}

func (m *Manager) setCursor(ctx context.Context, id, dataType string, c Cursor) error {
	if _, err := m.Get(ctx, id); err != nil {
		return err // removed (revoked, erased) during the pull: keep nothing of it
	}
	b, _ := json.Marshal(c)
	if _, err := m.o.Cursors.Put(ctx, cursorKey(id, dataType), b); err != nil {
		return fmt.Errorf("storing cursor %s %s: %w", id, dataType, err)
	}
	return nil
}

// listKeys lists a bucket's keys; an empty bucket has none.
func listKeys(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	l, err := kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	defer l.Stop()
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	return out, nil
}

// KVOpener opens a KV bucket, creating it if needed (stream.Conn.KV).
type KVOpener func(ctx context.Context, bucket, description string) (jetstream.KeyValue, error)

// OpenBuckets opens the connectors' buckets into o.
func OpenBuckets(ctx context.Context, open KVOpener, o *ManagerOptions) error {
	var err error
	if o.Connections, err = open(ctx, ConnectionsBucket, "pulselake wearable connections (metadata; tokens are in the secret store)"); err != nil {
		return err
	}
	if o.Cursors, err = open(ctx, CursorsBucket, "pulselake wearable sync cursors"); err != nil {
		return err
	}
	o.States, err = open(ctx, StatesBucket, "pulselake OAuth authorization requests in progress (single use)")
	return err
}
