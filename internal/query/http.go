package query

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/pulselake/pulselake/internal/httpapi"
	"github.com/pulselake/pulselake/internal/token"
)

// MaxRequestBytes bounds the body of POST /v1/query.
const MaxRequestBytes = 1 << 20

// Request is the body of POST /v1/query.
type Request struct {
	SQL string `json:"sql"`
}

// CallerOf is what a token may read over the API: registered tables only, and, for a token
// bound to a subject, only that subject's rows.
func CallerOf(tok token.Token) Caller {
	c := Caller{Restricted: true}
	if tok.Bound() {
		c.Subject = tok.Subject
	}
	return c
}

// Handler serves POST /v1/query for an authenticated token of scope read (the caller checks
// the scope): body {"sql": "..."}; response 200 with
// {"columns":[...],"types":[...],"rows":[[...]],"truncated":bool,"elapsed_seconds":s}.
// Errors are httpapi error bodies with the status and code of statusOf.
func (e *Engine) Handler(lim Limits) func(w http.ResponseWriter, r *http.Request, tok token.Token) {
	return func(w http.ResponseWriter, r *http.Request, tok token.Token) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			httpapi.WriteError(w, http.StatusMethodNotAllowed, "method-not-allowed", "use POST with a JSON body {\"sql\": \"...\"}")
			return
		}
		var req Request
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.SQL == "" {
			httpapi.WriteError(w, http.StatusBadRequest, "bad-request", "body must be JSON {\"sql\": \"SELECT ...\"}")
			return
		}
		res, err := e.QueryAs(r.Context(), req.SQL, lim, CallerOf(tok))
		if err != nil {
			code, name := statusOf(err)
			httpapi.WriteError(w, code, name, err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, JSONResult(res))
	}
}

// statusOf maps an error of QueryAs to an HTTP status and error code.
func statusOf(err error) (int, string) {
	var broken *BrokenTableError
	switch {
	case errors.Is(err, ErrNotReadOnly):
		return http.StatusBadRequest, "not-read-only"
	case errors.Is(err, ErrSyntax):
		return http.StatusBadRequest, "syntax-error"
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, ErrUnknownTable):
		return http.StatusUnprocessableEntity, "unknown-table"
	case errors.As(err, &broken):
		return http.StatusServiceUnavailable, "table-unavailable"
	case errors.Is(err, ErrSchemaDrift):
		return http.StatusUnprocessableEntity, "schema-drift"
	case errors.Is(err, ErrMemoryLimit):
		// The query as written does not fit the engine's limits: a client error that a retry
		// of the same query does not fix (like BigQuery's resourcesExceeded).
		return http.StatusUnprocessableEntity, "memory-limit"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timeout"
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "canceled"
	}
	return http.StatusUnprocessableEntity, "query-failed"
}
