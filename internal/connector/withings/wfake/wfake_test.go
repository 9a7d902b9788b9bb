package wfake_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pulselake/pulselake/internal/connector/withings/wfake"
)

// TestErrorEnvelopes checks the answers no client test reaches: Withings answers errors with
// HTTP 200 and a non-zero status in its envelope.
func TestErrorEnvelopes(t *testing.T) {
	f := wfake.New(wfake.Options{})
	defer f.Close()
	creds := func(v url.Values) url.Values {
		v.Set("client_id", f.ClientID())
		v.Set("client_secret", f.ClientSecret())
		return v
	}
	for _, tc := range []struct {
		name       string
		url        string
		form       url.Values
		auth       string
		wantStatus int
		wantError  string
	}{
		{"getmeas without a token", f.APIURL() + "measure", url.Values{"action": {"getmeas"}}, "", 401, "invalid_token"},
		{"getmeas with an unknown token", f.APIURL() + "measure", url.Values{"action": {"getmeas"}}, "Bearer nope", 401, "invalid_token"},
		{"unknown action", f.APIURL() + "measure", url.Values{"action": {"getactivity"}}, "", 2554, "Wrong action"},
		{"token with another action", f.TokenURL(), creds(url.Values{"action": {"getnonce"}}), "", 2554, "Wrong action"},
		{"token with a bad secret", f.TokenURL(), url.Values{"action": {"requesttoken"}, "client_id": {f.ClientID()}, "client_secret": {"x"}}, "", 503, "invalid client_secret"},
		{"unknown code", f.TokenURL(), creds(url.Values{"action": {"requesttoken"}, "grant_type": {"authorization_code"}, "code": {"nope"}}), "", 503, "invalid code"},
		{"unknown refresh token", f.TokenURL(), creds(url.Values{"action": {"requesttoken"}, "grant_type": {"refresh_token"}, "refresh_token": {"nope"}}), "", 503, "invalid refresh_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", tc.url, strings.NewReader(tc.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var env struct {
				Status int             `json:"status"`
				Body   json.RawMessage `json:"body"`
				Error  string          `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || env.Status != tc.wantStatus || !strings.Contains(env.Error, tc.wantError) || string(env.Body) != "{}" {
				t.Fatalf("HTTP %d %+v, want HTTP 200 status %d error ~%q", resp.StatusCode, env, tc.wantStatus, tc.wantError)
			}
		})
	}
}
