package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/pulselake/pulselake/internal/httpapi"
	"github.com/pulselake/pulselake/internal/token"
)

// TestErrorBodyOnEveryRoute checks that an error on each family of routes (readings, query,
// alerts, silences, events, profiles) answers with SPEC §13's body,
// {"error":{"code":...,"message":...}}, as JSON, with its status and code.
func TestErrorBodyOnEveryRoute(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	readTok, _, err := srv.Tokens.Create(context.Background(), token.ScopeRead, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, method, path, tok, ctype, body string
		status                               int
		code                                 string
	}{
		{"readings without token", "POST", "/v1/readings", "", "application/json", `{}`, 401, "unauthenticated"},
		{"readings of unknown media type", "POST", "/v1/readings", adminToken, "text/csv", "a,b\n", 415, "unsupported-media-type"},
		{"query with a bad body", "POST", "/v1/query", readTok, "application/json", `{"query":"SELECT 1"}`, 400, "bad-request"},
		{"query that writes", "POST", "/v1/query", readTok, "application/json", `{"sql":"DROP TABLE trusted.readings"}`, 400, "not-read-only"},
		{"alerts of an unknown state", "GET", "/v1/alerts?state=asleep", readTok, "", "", 400, "bad-request"},
		{"silence created with a read token", "POST", "/v1/silences", readTok, "application/json", `{}`, 403, "forbidden"},
		{"silence with an unknown field", "POST", "/v1/silences", adminToken, "application/json", `{"mute":"everything"}`, 400, "bad-request"},
		{"expiring an unknown silence", "DELETE", "/v1/silences/no-such-id", adminToken, "", "", 404, "not-found"},
		{"events with an invalid token", "GET", "/v1/events", "plk_not-a-token", "", "", 401, "unauthenticated"},
		{"profiles with a read token", "GET", "/debug/pprof/heap", readTok, "", "", 403, "forbidden"},
		{"an unknown profile", "GET", "/debug/pprof/no-such-profile", adminToken, "", "", 404, "not-found"},
		{"a path no route takes", "GET", "/v1/no-such-route", adminToken, "", "", 404, "not-found"},
		{"a method the route does not take", "DELETE", "/v1/readings", adminToken, "", "", 405, "method-not-allowed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.HTTPURL+tt.path, bytes.NewReader([]byte(tt.body)))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			if tt.tok != "" {
				req.Header.Set("Authorization", "Bearer "+tt.tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tt.status, data)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var body httpapi.ErrorBody
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				t.Fatalf("body is not {\"error\":{\"code\",\"message\"}}: %v: %s", err, data)
			}
			if body.Error.Code != tt.code || body.Error.Message == "" {
				t.Errorf("error %+v, want code %q and a message", body.Error, tt.code)
			}
		})
	}
}
