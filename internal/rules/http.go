package rules

import (
	"encoding/json"
	"net/http"
)

// AlertsHandler serves GET /v1/alerts?state=pending|firing|resolved (default: all) as
// {"alerts":[...]}, as list returns them (newest first). Authentication is the caller's.
func AlertsHandler(list func(state string) []Alert) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			writeError(w, http.StatusMethodNotAllowed, "method-not-allowed", "use GET /v1/alerts?state=firing|resolved|pending")
			return
		}
		state := r.URL.Query().Get("state")
		switch state {
		case "", StatePending, StateFiring, StateResolved:
		default:
			writeError(w, http.StatusBadRequest, "bad-request", "state: want pending, firing or resolved, got "+state)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"alerts": list(state)})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes SPEC §13's {"error":{"code":...,"message":...}}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
