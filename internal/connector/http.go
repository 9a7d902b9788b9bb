package connector

import (
	"errors"
	"html"
	"net/http"
	"strings"

	"github.com/pulselake/pulselake/internal/httpapi"
	"github.com/pulselake/pulselake/internal/token"
)

// Callback serves GET /v1/connect/{provider}/callback, the OAuth redirect URI. It needs no
// pulselake token: the single-use state it carries authenticates it. A browser gets a page,
// other clients JSON; errors are the JSON error body.
func (m *Manager) Callback(w http.ResponseWriter, r *http.Request) {
	provider := r.PathValue("provider")
	q := r.URL.Query()
	if e := q.Get("error"); e != "" { // RFC 6749 §4.1.2.1: the person declined, or the server refused
		if m.consumeState(r, q.Get("state")) {
			httpapi.WriteError(w, http.StatusBadRequest, "authorization-denied",
				"the provider did not grant access ("+limit(e, 100)+": "+limit(q.Get("error_description"), 300)+"); start connecting again")
			return
		}
		httpapi.WriteError(w, http.StatusBadRequest, "invalid-state", ErrBadState.Error())
		return
	}
	c, err := m.Complete(r.Context(), provider, q.Get("state"), q.Get("code"))
	switch {
	case errors.Is(err, ErrUnknownProvider):
		httpapi.WriteError(w, http.StatusNotFound, "unknown-provider", err.Error())
		return
	case errors.Is(err, ErrBadState):
		httpapi.WriteError(w, http.StatusBadRequest, "invalid-state", err.Error())
		return
	case err != nil:
		m.log.Warn("completing a connection failed", "provider", provider, "err", err)
		httpapi.WriteError(w, http.StatusBadGateway, "exchange-failed", err.Error()+"; start connecting again")
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><title>pulselake</title><p>Connected " + html.EscapeString(c.Provider) +
			" for " + html.EscapeString(c.Subject) + ". You can close this tab.</p>\n"))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"connection": c})
}

// consumeState drops the state of a declined authorization so it cannot be used later.
func (m *Manager) consumeState(r *http.Request, state string) bool {
	if state == "" || len(state) > 128 {
		return false
	}
	e, err := m.o.States.Get(r.Context(), state)
	if err != nil {
		return false
	}
	_ = m.o.States.Purge(r.Context(), state)
	return e != nil
}

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// ListHandler serves GET /v1/connections: a subject-bound token sees its own connections.
func (m *Manager) ListHandler(w http.ResponseWriter, r *http.Request, tok token.Token) {
	all, err := m.List(r.Context())
	if err != nil {
		httpapi.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	out := make([]Connection, 0, len(all))
	for _, c := range all {
		if tok.Sees(c.Subject) {
			if c.DataTypes == nil {
				c.DataTypes = []string{}
			}
			out = append(out, c)
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"connections": out})
}

// BeginHandler serves POST /v1/connect/{provider}?subject=S: it answers {"url": ...}, the
// authorization URL to open. Allowed for admin tokens and for a token bound to S.
func (m *Manager) BeginHandler(w http.ResponseWriter, r *http.Request, tok token.Token) {
	subject := r.URL.Query().Get("subject")
	if subject == "" && tok.Bound() {
		subject = tok.Subject
	}
	if tok.Scope != token.ScopeAdmin && (!tok.Bound() || tok.Subject != subject) {
		httpapi.WriteError(w, http.StatusForbidden, "forbidden",
			"connecting a subject needs an admin token or a token bound to that subject")
		return
	}
	url, _, err := m.Begin(r.Context(), r.PathValue("provider"), subject)
	switch {
	case errors.Is(err, ErrUnknownProvider):
		httpapi.WriteError(w, http.StatusNotFound, "unknown-provider", err.Error())
	case errors.Is(err, ErrBadSubject):
		httpapi.WriteError(w, http.StatusBadRequest, "invalid-subject", err.Error()+" (?subject=...)")
	case errors.Is(err, ErrTooManyPending):
		w.Header().Set("Retry-After", "60")
		httpapi.WriteError(w, http.StatusTooManyRequests, "too-many-pending", err.Error())
	case err != nil:
		httpapi.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	default:
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"url": url})
	}
}

// DeleteHandler serves DELETE /v1/connections/{id} (admin): revokes the connection.
func (m *Manager) DeleteHandler(w http.ResponseWriter, r *http.Request, _ token.Token) {
	c, err := m.Revoke(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNotFound):
		httpapi.WriteError(w, http.StatusNotFound, "not-found", err.Error())
	case err != nil:
		httpapi.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	default:
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"revoked": c})
	}
}
