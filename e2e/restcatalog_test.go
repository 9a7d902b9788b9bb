package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/token"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

// TestRESTCatalogServed posts readings to serve, then queries them with `pulselake query` on
// another data directory whose lake catalog is serve's REST catalog (http://<serve>/iceberg,
// a read token) over the same warehouse: the counts are exact. A read token cannot change the
// catalog (403), an admin token can, and a request without a token is refused (401).
func TestRESTCatalogServed(t *testing.T) {
	cfg := config.Default()
	cfg.Lake.FlushInterval = yamlconf.Duration(time.Second)
	dir := t.TempDir()
	srv := startServerWith(t, dir, cfg)
	defer srv.stop()

	const n = 120
	var lines [][]byte
	for i := range n {
		lines = append(lines, fmt.Appendf(nil, `{"subject":"rest-%d","device":"cgm-1","kind":"heart_rate","time":"2026-11-02T08:%02d:%02dZ","values":{"bpm":%d}}`,
			i%4, i/60, i%60, 60+i%50))
	}
	if code, body := postNDJSON(t, srv.HTTPURL, adminToken, lines); code != http.StatusAccepted {
		t.Fatalf("post: %d %v", code, body)
	}
	waitUntil(t, 30*time.Second, "readings in the lake", func() bool {
		return lakeCount(t, dir, "SELECT count(*) FROM trusted.heart_rate") == n
	})

	readTok, _, err := srv.Tokens.Create(context.Background(), token.ScopeRead, "", "iceberg reader")
	if err != nil {
		t.Fatal(err)
	}
	clientDir := t.TempDir()
	conf := filepath.Join(clientDir, "pulselake.yaml")
	warehouse := "file://" + filepath.ToSlash(filepath.Join(dir, "lake"))
	yaml := fmt.Sprintf("lake:\n  warehouse: %s\n  catalog:\n    type: rest\n    uri: %s/iceberg\n    token: %s\n", warehouse, srv.HTTPURL, readTok)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for sql, want := range map[string]int64{
		"SELECT count(*) FROM trusted.heart_rate":                                       n,
		"SELECT count(DISTINCT subject) FROM trusted.heart_rate":                        4,
		"SELECT count(*) FROM trusted.heart_rate WHERE subject = 'rest-1'":              n / 4,
		"SELECT count(*) FROM landing.http":                                             n,
		"SELECT count(*) FROM information_schema.tables WHERE table_schema = 'trusted'": 1,
	} {
		out, code := runBin(t, "query", "--data", clientDir, "--config", conf, "--format", "json", sql)
		if code != 0 {
			t.Fatalf("query over the REST catalog exited %d: %s", code, out)
		}
		var res struct {
			Rows [][]json.Number `json:"rows"`
		}
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil || len(res.Rows) != 1 {
			t.Fatalf("%s: unexpected output %s", sql, out)
		}
		if got, _ := res.Rows[0][0].Int64(); got != want {
			t.Errorf("%s over the REST catalog: %d, want %d", sql, got, want)
		}
	}

	// Scopes: GET works with the read token, a commit needs admin, no token is refused.
	call := func(method, path, tok, body string) int {
		req, _ := http.NewRequest(method, srv.HTTPURL+"/iceberg"+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ingestTok, _, err := srv.Tokens.Create(context.Background(), token.ScopeIngest, "", "device")
	if err != nil {
		t.Fatal(err)
	}
	commit := `{"requirements":[],"updates":[{"action":"set-properties","updates":{"owner":"mallory"}}]}`
	for _, c := range []struct {
		method, path, tok, body string
		want                    int
	}{
		{"GET", "/v1/namespaces/trusted/tables/heart_rate", readTok, "", http.StatusOK},
		{"GET", "/v1/config", readTok, "", http.StatusOK},
		{"POST", "/v1/namespaces/trusted/tables/heart_rate", readTok, commit, http.StatusForbidden},
		{"DELETE", "/v1/namespaces/trusted/tables/heart_rate", readTok, "", http.StatusForbidden},
		{"POST", "/v1/namespaces", readTok, `{"namespace":["scratch"]}`, http.StatusForbidden},
		{"GET", "/v1/namespaces", "", "", http.StatusUnauthorized},
		{"POST", "/v1/namespaces/trusted/tables/heart_rate", "", commit, http.StatusUnauthorized},
		{"GET", "/v1/namespaces", ingestTok, "", http.StatusForbidden},
		{"GET", "/v1/namespaces/trusted%1Fnope", adminToken, "", http.StatusNotFound},
		{"POST", "/v1/namespaces", adminToken, `{"namespace":["scratch"]}`, http.StatusOK},
		{"HEAD", "/v1/namespaces/scratch", readTok, "", http.StatusNoContent},
		{"DELETE", "/v1/namespaces/scratch", adminToken, "", http.StatusNoContent},
	} {
		if got := call(c.method, c.path, c.tok, c.body); got != c.want {
			t.Errorf("%s /iceberg%s (token %t): %d, want %d", c.method, c.path, c.tok != "", got, c.want)
		}
	}
	// The refused commit changed nothing.
	if n := lakeCount(t, dir, "SELECT count(*) FROM trusted.heart_rate"); n != 120 {
		t.Errorf("after the refused requests trusted.heart_rate has %d rows", n)
	}
}
