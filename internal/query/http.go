package query

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// MaxRequestBytes bounds the body of POST /v1/query.
const MaxRequestBytes = 1 << 20

// Request is the body of POST /v1/query.
type Request struct {
	SQL string `json:"sql"`
}

// Handler serves POST /v1/query: body {"sql": "..."}; response 200 with
// {"columns":[...],"types":[...],"rows":[[...]],"truncated":bool,"elapsed_seconds":s};
// 400 for a bad body or a statement that is not read-only; 422 for a query DuckDB rejects;
// 504 when the time limit is hit. Authentication (scope read) is the caller's job.
func (e *Engine) Handler(lim Limits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "use POST with a JSON body {\"sql\": \"...\"}")
			return
		}
		var req Request
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.SQL == "" {
			writeError(w, http.StatusBadRequest, "body must be JSON {\"sql\": \"SELECT ...\"}")
			return
		}
		res, err := e.Query(r.Context(), req.SQL, lim)
		switch {
		case errors.Is(err, ErrNotReadOnly), errors.Is(err, ErrSyntax):
			writeError(w, http.StatusBadRequest, err.Error())
		case errors.Is(err, errDeadline(err)):
			writeError(w, http.StatusGatewayTimeout, err.Error())
		case err != nil:
			writeError(w, http.StatusUnprocessableEntity, err.Error())
		default:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(JSONResult(res))
		}
	})
}

func errDeadline(err error) error {
	type timeout interface{ Timeout() bool }
	var t timeout
	if errors.As(err, &t) && t.Timeout() {
		return err
	}
	return errNoMatch
}

var errNoMatch = errors.New("no match")

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": msg, "time": time.Now().UTC().Format(time.RFC3339)})
}
