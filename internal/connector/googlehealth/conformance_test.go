package googlehealth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/pulselake/pulselake/internal/connector/googlehealth"
)

// provider is the interface the sync engine declares; the Provider must satisfy it exactly,
// with the optional revocation and window sizing.
type provider interface {
	Name() string
	DataTypes() []string
	RequestsPerMinute() (n int, perUser bool)
	AuthCodeURL(state, codeVerifier string) string
	Exchange(ctx context.Context, code, codeVerifier string) (*oauth2.Token, error)
	TokenSource(ctx context.Context, t *oauth2.Token) oauth2.TokenSource
	Pull(ctx context.Context, hc *http.Client, subject, dataType string, start, end time.Time,
		emit func(readings []json.RawMessage) error) (pages int, err error)
	Revoke(ctx context.Context, t *oauth2.Token) error
	Window(dataType string) time.Duration
}

var _ provider = (*googlehealth.Provider)(nil)
