package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/token"
)

// TestReadingsAPIStatusCodes checks every answer of POST /v1/readings a client can meet.
func TestReadingsAPIStatusCodes(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	ctx := context.Background()
	ingestTok, _, _ := srv.Tokens.Create(ctx, token.ScopeIngest, "", "")
	readTok, _, _ := srv.Tokens.Create(ctx, token.ScopeRead, "", "")
	boundTok, _, _ := srv.Tokens.Create(ctx, token.ScopeIngest, "patient-1", "")
	revoked, t2, _ := srv.Tokens.Create(ctx, token.ScopeIngest, "", "")
	if _, err := srv.Tokens.Revoke(ctx, t2.ID); err != nil {
		t.Fatal(err)
	}
	good := `{"subject":"patient-1","device":"d1","kind":"heart_rate","time":"2026-11-22T10:00:00Z","values":{"bpm":70}}`
	bad := `{"subject":"patient-1","device":"d1","kind":"heart_rate","time":"2026-11-22T10:00:01Z","values":{"bpm":700}}`
	other := `{"subject":"patient-2","device":"d2","kind":"heart_rate","time":"2026-11-22T10:00:00Z","values":{"bpm":70}}`
	tests := []struct {
		name, tok, ctype, body string
		want                   int
		wantCode               string // error code or first rejection code
	}{
		{"no token", "", "application/json", good, 401, "unauthenticated"},
		{"revoked token", revoked, "application/json", good, 401, "unauthenticated"},
		{"read scope", readTok, "application/json", good, 403, "forbidden"},
		{"form content type", ingestTok, "application/x-www-form-urlencoded", good, 415, "unsupported-media-type"},
		{"single reading", ingestTok, "application/json", good, 202, ""},
		{"array with one bad", ingestTok, "application/json", "[" + bad + "," + other + "]", 207, "value-out-of-range"},
		{"all rejected", ingestTok, "application/x-ndjson", bad + "\n", 422, "value-out-of-range"},
		{"malformed array", ingestTok, "application/json", "[" + good + ",", 400, "invalid-json"},
		{"empty array", ingestTok, "application/json", "[]", 400, "bad-request"},
		{"subject-bound token, other subject", boundTok, "application/json", other, 422, "subject-not-allowed"},
		{"subject-bound token, own subject", boundTok, "application/json", strings.Replace(good, "10:00:00", "11:00:00", 1), 202, ""},
		{"too many readings", ingestTok, "application/x-ndjson", strings.Repeat(good+"\n", 10001), 413, "batch-too-large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, srv.HTTPURL+"/v1/readings", tt.tok, tt.ctype, []byte(tt.body))
			if code != tt.want {
				t.Fatalf("status %d, want %d: %v", code, tt.want, body)
			}
			if tt.wantCode == "" {
				return
			}
			if e, ok := body["error"].(map[string]any); ok {
				if e["code"] != tt.wantCode || e["message"] == "" {
					t.Errorf("error = %v, want code %s", e, tt.wantCode)
				}
				return
			}
			rej, _ := body["rejected"].([]any)
			if len(rej) == 0 || rej[0].(map[string]any)["code"] != tt.wantCode {
				t.Errorf("rejected = %v, want code %s", rej, tt.wantCode)
			}
		})
	}
	// Body above the byte limit.
	code, body := post(t, srv.HTTPURL+"/v1/readings", ingestTok, "application/x-ndjson", make([]byte, 17<<20))
	if code != 413 || body["error"].(map[string]any)["code"] != "body-too-large" {
		t.Errorf("17 MiB body: %d %v", code, body)
	}
}

// TestEventsFeed follows GET /v1/events and sees a posted reading arrive.
func TestEventsFeed(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	req, _ := http.NewRequest("GET", srv.HTTPURL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	// The feed follows the stream from its end once subscribed; post until a reading shows up.
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			body := fmt.Sprintf(`{"subject":"p9","device":"feed-dev","kind":"spo2","time":%d,"values":{"percent":97}}`, time.Now().UnixMilli()+int64(i))
			req, _ := http.NewRequestWithContext(ctx, "POST", srv.HTTPURL+"/v1/readings", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+adminToken)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), `"device":"feed-dev"`) {
			return
		}
	}
	t.Fatalf("the posted reading never reached the feed: %v", sc.Err())
}

// TestProfilesNeedAdmin checks that Go's runtime profiles are served to admin tokens only.
func TestProfilesNeedAdmin(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	readTok, _, err := srv.Tokens.Create(context.Background(), token.ScopeRead, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		tok  string
		want int
	}{{"", 401}, {readTok, 403}, {adminToken, 200}} {
		req, _ := http.NewRequest("GET", srv.HTTPURL+"/debug/pprof/heap?debug=1", nil)
		if tt.tok != "" {
			req.Header.Set("Authorization", "Bearer "+tt.tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Fatalf("token %q: status %d, want %d", tt.tok, resp.StatusCode, tt.want)
		}
		if tt.want == 200 && !strings.Contains(string(body), "heap profile") {
			t.Errorf("admin token: body is not a heap profile: %.200s", body)
		}
	}
}
