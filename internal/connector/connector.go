// Package connector connects pulselake to wearable clouds (Google Health API, Withings) and
// pulls their data on a schedule: the OAuth connections, the sync engine and the HTTP
// transport under every provider call. The provider clients live in subpackages and satisfy
// Provider.
//
// Connections. A connection is one subject's grant at one provider. Connecting runs the OAuth
// 2.0 authorization code flow with PKCE (S256): Begin stores a random, single-use state bound
// to the subject and the PKCE verifier (KV bucket pulselake_connect_states, valid StateTTL)
// and returns the provider's authorization URL; Complete consumes the state (a compare-and-
// delete, so a state works once), exchanges the code, seals the token (access and refresh)
// in the encrypted secret store under connector.<id> and writes the connection's metadata
// (id, provider, subject, status, created, last sync, last error) to the KV bucket
// pulselake_connections. The id is derived from provider and subject: reconnecting replaces
// the token of the same connection.
//
// Sync. Per (connection, data type) a cursor in KV bucket pulselake_connector_cursors holds
// Until, the end of the last window whose readings the stream acknowledged, and Resume, where
// an interrupted pull continues. A pull starts at Resume if set, else at Until − lookback
// (late syncs), else at now − initial window, and walks windows sized to the provider up to
// now; the cursor moves after each window's readings were stored. Readings go through the
// ingest path like any other, and the lake de-duplicates them on their identity, so pulling
// a window twice stores nothing twice.
//
// A refused refresh token (invalid_grant) marks the connection needs-consent: it is not
// pulled again until it is reconnected, and the engine reports it (an alert in serve).
// One connection's or one provider's failure never stops the others.
//
// Manager and Engine are safe for concurrent use. Engine.Run owns one goroutine per provider
// and returns after they stopped.
package connector

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// Provider is a wearable cloud's client.
type Provider interface {
	Name() string // "google-health" | "withings"
	DataTypes() []string
	RequestsPerMinute() (n int, perUser bool)      // Google 300/min per user; Withings 120/min per app
	AuthCodeURL(state, codeVerifier string) string // PKCE S256; verifier from oauth2.GenerateVerifier()
	Exchange(ctx context.Context, code, codeVerifier string) (*oauth2.Token, error)
	// A refused refresh token surfaces as an error wrapping *oauth2.RetrieveError{ErrorCode:"invalid_grant"}.
	TokenSource(ctx context.Context, t *oauth2.Token) oauth2.TokenSource
	// Pull hands each page of points with time in [start,end) to emit as wire-format v1 readings
	// (JSON objects with subject set and a stable "id"); returns pages read.
	Pull(ctx context.Context, hc *http.Client, subject, dataType string, start, end time.Time,
		emit func(readings []json.RawMessage) error) (pages int, err error)
}

// Revoker is a Provider with a token revocation endpoint; revoking a connection calls it.
type Revoker interface {
	Revoke(ctx context.Context, t *oauth2.Token) error
}

// Windower is a Provider that sizes its own pull windows per data type.
type Windower interface {
	Window(dataType string) time.Duration
}

// Connection statuses.
const (
	StatusOK           = "ok"
	StatusNeedsConsent = "needs-consent"
	StatusError        = "error"
)

// AlertNeedsConsent is the alert name of a connection whose grant was revoked.
const AlertNeedsConsent = "connector-needs-consent"

// Errors.
var (
	ErrUnknownProvider = errors.New("unknown or unconfigured provider")
	ErrBadState        = errors.New("the authorization request is unknown, expired or already used; start connecting again")
	ErrNotFound        = errors.New("no such connection")
	ErrNeedsConsent    = errors.New("the provider refused the refresh token (invalid_grant): the grant was revoked or expired; connect again")
	ErrBadSubject      = errors.New("invalid subject")
	ErrTooManyPending  = errors.New("too many authorization requests in progress")
)

// Connection is one subject's grant at one provider (the token is kept apart, sealed).
type Connection struct {
	ID        string    `json:"id"`
	Provider  string    `json:"provider"`
	Subject   string    `json:"subject"`
	Status    string    `json:"status"`
	DataTypes []string  `json:"data_types"`
	Created   time.Time `json:"created"`
	LastSync  time.Time `json:"last_sync,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// StatusSince is when Status last changed.
	StatusSince time.Time `json:"status_since,omitzero"`
}

// MarshalJSON writes every field, last_sync as null before the first pull and last_error as
// "" when there is none, so clients see one shape.
func (c Connection) MarshalJSON() ([]byte, error) {
	type plain Connection
	var last any
	if !c.LastSync.IsZero() {
		last = c.LastSync
	}
	types := c.DataTypes
	if types == nil {
		types = []string{}
	}
	return json.Marshal(struct {
		plain
		DataTypes []string `json:"data_types"`
		LastSync  any      `json:"last_sync"`
		LastError string   `json:"last_error"`
	}{plain(c), types, last, c.LastError})
}

// IsInvalidGrant reports whether err is the authorization server refusing a grant.
func IsInvalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}

// defaultWindows are the pull windows of providers that do not size their own: a day of
// Google heart rate at one point every few seconds is about 20,000 points, two or three
// pages of 10,000; Withings answers a whole month of measures in a few pages.
var defaultWindows = map[string]time.Duration{
	"google-health": 24 * time.Hour,
	"withings":      30 * 24 * time.Hour,
}

// windowOf is the pull window of a provider's data type.
func windowOf(p Provider, dataType string) time.Duration {
	if w, ok := p.(Windower); ok {
		if d := w.Window(dataType); d > 0 {
			return d
		}
	}
	if d, ok := defaultWindows[p.Name()]; ok {
		return d
	}
	return 24 * time.Hour
}
