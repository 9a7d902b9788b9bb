package rules

import (
	"net/http"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/httpapi"
)

// AlertsHandler serves GET /v1/alerts?state=pending|firing|resolved (default: all) as
// {"alerts":[...]}, as list returns them (newest first). Authentication is the caller's.
func AlertsHandler(list func(state string) []Alert) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			httpapi.WriteError(w, http.StatusMethodNotAllowed, "method-not-allowed", "use GET /v1/alerts?state=firing|resolved|pending")
			return
		}
		state := r.URL.Query().Get("state")
		if !alert.ValidState(state) {
			httpapi.WriteError(w, http.StatusBadRequest, "bad-request", "state: want pending, firing or resolved, got "+state)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"alerts": list(state)})
	})
}
