package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSilenceCommands adds, lists and expires silences in a data directory no serve holds.
func TestSilenceCommands(t *testing.T) {
	dir := t.TempDir()
	out, code := runBin(t, "silence", "add", "--matcher", "alertname=hypertensive-crisis", "--matcher", "subject=patient-17",
		"--duration", "2h", "--comment", "cuff being refitted", "--author", "nurse-a", "--data", dir)
	if code != 0 {
		t.Fatalf("add: exit %d: %s", code, out)
	}
	id := strings.Fields(out)[0]

	out, code = runBin(t, "silence", "list", "--data", dir)
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], id+" ") || !strings.Contains(lines[1], "active") ||
		!strings.Contains(lines[1], `subject="patient-17"`) || !strings.Contains(lines[1], "nurse-a") {
		t.Fatalf("list:\n%s", out)
	}

	if out, code := runBin(t, "silence", "expire", id, "--data", dir); code != 0 || !strings.Contains(out, "expired "+id) {
		t.Fatalf("expire: exit %d: %s", code, out)
	}
	out, code = runBin(t, "silence", "list", "--format", "json", "--data", dir)
	if code != 0 {
		t.Fatalf("list json: exit %d: %s", code, out)
	}
	var list []struct {
		ID        string `json:"id"`
		CreatedBy string `json:"createdBy"`
		Comment   string `json:"comment"`
		Status    struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list json: %v\n%s", err, out)
	}
	if len(list) != 1 || list[0].ID != id || list[0].Status.State != "expired" || list[0].Comment != "cuff being refitted" {
		t.Fatalf("after expire: %+v", list)
	}

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"add", "--matcher", "alert name=x", "--duration", "1h", "--comment", "c"}, 2, `label name "alert name"`},
		{[]string{"add", "--matcher", "subject=~(", "--duration", "1h", "--comment", "c"}, 2, "missing closing )"},
		{[]string{"add", "--matcher", "subject", "--duration", "1h", "--comment", "c"}, 2, "want name=value"},
		{[]string{"add", "--matcher", "subject=a", "--duration", "-1h", "--comment", "c"}, 2, "--duration must be positive"},
		{[]string{"add", "--matcher", "subject=a", "--duration", "1h"}, 2, "--comment is required"},
		{[]string{"add", "--duration", "1h", "--comment", "c"}, 2, "at least one --matcher"},
		{[]string{"list", "--format", "yaml"}, 2, "want table or json"},
		{[]string{"expire", "0123456789abcdef"}, 1, `no silence with ID "0123456789abcdef"`},
	} {
		out, code := runBin(t, append(append([]string{"silence"}, c.args...), "--data", dir)...)
		if code != c.code || !strings.Contains(out, c.msg) {
			t.Errorf("silence %v: exit %d, want %d with %q: %s", c.args, code, c.code, c.msg, out)
		}
	}
}

// TestSilenceCommandWithServe adds a silence while serve holds the data directory; the
// server's API lists it at once.
func TestSilenceCommandWithServe(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	defer srv.stop()
	out, code := runBin(t, "silence", "add", "--matcher", "alertname=hypertensive-crisis", "--matcher", "subject=patient-17",
		"--duration", "2h", "--comment", "cuff being refitted", "--data", dir)
	if code != 0 {
		t.Fatalf("add: exit %d: %s", code, out)
	}
	id := strings.Fields(out)[0]

	// serve learns of the silence through its watch of the KV bucket.
	var body []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		body = getSilences(t, srv.HTTPURL)
		if strings.Contains(string(body), id) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var list []struct {
		ID       string `json:"id"`
		Matchers []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"matchers"`
		Status struct {
			State string `json:"state"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("GET /v1/silences: %v: %s", err, body)
	}
	if len(list) != 1 || list[0].ID != id || list[0].Status.State != "active" || len(list[0].Matchers) != 2 ||
		list[0].Matchers[1].Name != "subject" || list[0].Matchers[1].Value != "patient-17" {
		t.Fatalf("GET /v1/silences: %s", body)
	}

	if out, code := runBin(t, "silence", "expire", id, "--data", dir); code != 0 {
		t.Fatalf("expire: exit %d: %s", code, out)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		body = getSilences(t, srv.HTTPURL)
		if strings.Contains(string(body), `"state":"expired"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve does not see the silence expired: %s", body)
		}
	}
}

func getSilences(t *testing.T, url string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/silences", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/silences: %s: %s", resp.Status, body)
	}
	return body
}
