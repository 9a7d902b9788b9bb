package connector

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/pulselake/pulselake/internal/token"
)

// TestHTTP drives the connection routes' handlers: who may start connecting whom, the
// callback's single-use state and the provider's refusal, and what a bound token lists.
func TestHTTP(t *testing.T) {
	h := newHarness(t, Timing{})
	mux := http.NewServeMux()
	var tok token.Token
	mux.HandleFunc("POST /v1/connect/{provider}", func(w http.ResponseWriter, r *http.Request) { h.m.BeginHandler(w, r, tok) })
	mux.HandleFunc("GET /v1/connect/{provider}/callback", h.m.Callback)
	mux.HandleFunc("GET /v1/connections", func(w http.ResponseWriter, r *http.Request) { h.m.ListHandler(w, r, tok) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	admin := token.Token{Scope: token.ScopeAdmin}
	do := func(method, path string) (int, map[string]any) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	code := func(body map[string]any) string {
		e, _ := body["error"].(map[string]any)
		c, _ := e["code"].(string)
		return c
	}
	for _, tc := range []struct {
		name   string
		tok    token.Token
		path   string
		status int
		code   string
	}{
		{"admin", admin, "/v1/connect/test-cloud?subject=p1", 200, ""},
		{"bound read, own subject", token.Token{Scope: token.ScopeRead, Subject: "p2"}, "/v1/connect/test-cloud?subject=p2", 200, ""},
		{"bound read, subject implied", token.Token{Scope: token.ScopeRead, Subject: "p2"}, "/v1/connect/test-cloud", 200, ""},
		{"bound read, other subject", token.Token{Scope: token.ScopeRead, Subject: "p2"}, "/v1/connect/test-cloud?subject=p1", 403, "forbidden"},
		{"unbound read", token.Token{Scope: token.ScopeRead}, "/v1/connect/test-cloud?subject=p1", 403, "forbidden"},
		{"unknown provider", admin, "/v1/connect/fitbit?subject=p1", 404, "unknown-provider"},
		{"bad subject", admin, "/v1/connect/test-cloud?subject=%20x", 400, "invalid-subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok = tc.tok
			status, body := do("POST", tc.path)
			if status != tc.status || code(body) != tc.code {
				t.Fatalf("got %d %v, want %d %q", status, body, tc.status, tc.code)
			}
			if status == 200 && body["url"] == "" {
				t.Fatalf("no url in %v", body)
			}
		})
	}

	tok = admin
	_, body := do("POST", "/v1/connect/test-cloud?subject=p1")
	u, _ := url.Parse(body["url"].(string))
	state := u.Query().Get("state")
	cb := "/v1/connect/test-cloud/callback?" + url.Values{"state": {state}, "code": {"good-code"}}.Encode()
	if status, body := do("GET", cb); status != 200 || body["connection"].(map[string]any)["status"] != "ok" {
		t.Fatalf("callback: %d %v", status, body)
	}
	if status, body := do("GET", cb); status != 400 || code(body) != "invalid-state" {
		t.Fatalf("callback again: %d %v", status, body)
	}
	_, body = do("POST", "/v1/connect/test-cloud?subject=p2")
	u, _ = url.Parse(body["url"].(string))
	denied := "/v1/connect/test-cloud/callback?" + url.Values{"state": {u.Query().Get("state")}, "error": {"access_denied"}}.Encode()
	if status, body := do("GET", denied); status != 400 || code(body) != "authorization-denied" {
		t.Fatalf("declined consent: %d %v", status, body)
	}
	bad := "/v1/connect/test-cloud/callback?" + url.Values{"state": {"feed"}, "code": {"good-code"}}.Encode()
	if status, body := do("GET", bad); status != 400 || code(body) != "invalid-state" {
		t.Fatalf("unknown state: %d %v", status, body)
	}

	h.connect(t, "p2")
	for _, tc := range []struct {
		tok  token.Token
		want int
	}{{admin, 2}, {token.Token{Scope: token.ScopeRead}, 2}, {token.Token{Scope: token.ScopeRead, Subject: "p2"}, 1}, {token.Token{Scope: token.ScopeRead, Subject: "p9"}, 0}} {
		tok = tc.tok
		status, body := do("GET", "/v1/connections")
		list, _ := body["connections"].([]any)
		if status != 200 || len(list) != tc.want || list == nil {
			t.Fatalf("token %+v lists %d connections (%d), want %d", tc.tok, len(list), status, tc.want)
		}
	}
}

func TestConnectionJSON(t *testing.T) {
	b, _ := json.Marshal(Connection{ID: "x", Provider: "withings", Subject: "s", Status: StatusOK})
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"id", "provider", "subject", "status", "data_types", "created", "last_sync", "last_error"} {
		if _, ok := m[k]; !ok {
			t.Errorf("%s lacks %q", b, k)
		}
	}
	if m["last_sync"] != nil || m["last_error"] != "" {
		t.Errorf("%s: want last_sync null and last_error empty", b)
	}
	var back Connection
	if err := json.Unmarshal(b, &back); err != nil || back.ID != "x" || !back.LastSync.IsZero() {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}
