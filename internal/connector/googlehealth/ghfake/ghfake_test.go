package ghfake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pulselake/pulselake/internal/connector/googlehealth/ghfake"
)

// TestErrorBodies checks the answers no client test reaches: Google's error shapes for bad
// requests.
func TestErrorBodies(t *testing.T) {
	f := ghfake.New(ghfake.Options{})
	defer f.Close()
	list := f.APIURL() + "v4/users/me/dataTypes/heart-rate/dataPoints"
	for _, tc := range []struct {
		name       string
		method     string
		url        string
		form       url.Values
		auth       string
		wantStatus int
		wantField  string // the error's "status" (API) or "error" (token endpoint)
	}{
		{"list without a token", "GET", list, nil, "", 401, "UNAUTHENTICATED"},
		{"list with an unknown token", "GET", list, nil, "Bearer ya29.nope", 401, "UNAUTHENTICATED"},
		{"unknown path", "GET", f.APIURL() + "v4/users/me/profile", nil, "", 404, "NOT_FOUND"},
		{"token with a bad client", "POST", f.TokenURL(), url.Values{"grant_type": {"refresh_token"}, "client_id": {"x"}, "client_secret": {"y"}}, "", 401, "invalid_client"},
		{"unknown refresh token", "POST", f.TokenURL(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"1//0nope"},
			"client_id": {f.ClientID()}, "client_secret": {f.ClientSecret()}}, "", 400, "invalid_grant"},
		{"unsupported grant", "POST", f.TokenURL(), url.Values{"grant_type": {"password"},
			"client_id": {f.ClientID()}, "client_secret": {f.ClientSecret()}}, "", 400, "unsupported_grant_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.form != nil {
				body = strings.NewReader(tc.form.Encode())
			}
			req, _ := http.NewRequest(tc.method, tc.url, body)
			if tc.form != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var v struct {
				Error json.RawMessage `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
				t.Fatal(err)
			}
			var got string
			var apiErr struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Status  string `json:"status"`
			}
			if json.Unmarshal(v.Error, &apiErr) == nil {
				if apiErr.Code != tc.wantStatus || apiErr.Message == "" {
					t.Errorf("error body %s", v.Error)
				}
				got = apiErr.Status
			} else {
				json.Unmarshal(v.Error, &got)
			}
			if resp.StatusCode != tc.wantStatus || got != tc.wantField {
				t.Fatalf("answered %d %q, want %d %q", resp.StatusCode, got, tc.wantStatus, tc.wantField)
			}
		})
	}
}
