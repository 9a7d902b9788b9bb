package e2e

import (
	"context"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/pulselake/pulselake/internal/token"
)

// TestSourcesPage loads /sources in headless Chromium with an ingest token given in the URL
// fragment and checks the rendered page: the connections table (with the server's list, or a
// clear message while this server has no connections API), the connect buttons and the
// upload box.
func TestSourcesPage(t *testing.T) {
	browser := chromium(t)
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	tok, _, _ := srv.Tokens.Create(context.Background(), token.ScopeAdmin, "", "browser")

	// What the page must say about connections depends on whether the API is there.
	connectionsAPI := getJSON(t, srv.HTTPURL+"/v1/connections", "Bearer "+tok, nil) != http.StatusNotFound
	wants := []string{
		`<table id="connections">`, "<th>last sync</th>", "Connect Google Health", "Connect Withings",
		"Import an Apple Health export / Google Takeout", `<input id="uploadFile" type="file"`,
	}
	if connectionsAPI {
		wants = append(wants, "No connections yet.")
	} else {
		wants = append(wants, "answered 404")
	}
	var dom string
	var missing []string
	for attempt := 0; attempt < 4; attempt++ { // virtual time may run ahead of the first fetch
		cmd := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir="+t.TempDir(), "--virtual-time-budget=4000", "--dump-dom", srv.HTTPURL+"/sources#token="+tok)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
		dom, missing = string(out), nil
		for _, want := range wants {
			if !strings.Contains(dom, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 {
			break
		}
	}
	for _, want := range missing {
		t.Errorf("rendered /sources lacks %q", want)
	}
	if len(missing) > 0 {
		t.Logf("DOM:\n%s", dom)
	}
	if strings.Contains(dom, `id="tokenForm" hidden=""`) == false && !strings.Contains(dom, `<form id="tokenForm" hidden`) {
		t.Error("the token form is shown although the URL gave a token")
	}
}
