package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/token"
)

// chromium finds the headless browser the dashboard tests drive (.ci/install installs
// Debian's chromium package).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("headless Chromium not found; install it with: apt-get install -y chromium")
	return ""
}

// TestDashboardShowsLiveReadings loads the dashboard in headless Chromium while devices send
// readings, and checks the rendered page: connected, readings in the table, a rejected record.
func TestDashboardShowsLiveReadings(t *testing.T) {
	browser := chromium(t)
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	viewer, _, _ := srv.Tokens.Create(context.Background(), token.ScopeRead, "", "browser")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			now := time.Now().UnixMilli()
			body := fmt.Sprintf(`{"subject":"p1","device":"hr-dash","kind":"heart_rate","time":%d,"values":{"bpm":%d}}`+"\n"+
				`{"subject":"p1","device":"bp-dash","kind":"blood_pressure","time":%d,"values":{"systolic":%d,"diastolic":80}}`+"\n"+
				`{"subject":"p1","device":"bp-dash","kind":"blood_pressure","time":%d,"values":{"systolic":999,"diastolic":80}}`+"\n",
				now, 60+i%30, now, 120+i%20, now+1)
			req, _ := http.NewRequestWithContext(ctx, "POST", srv.HTTPURL+"/v1/readings", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+adminToken)
			req.Header.Set("Content-Type", "application/x-ndjson")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	// Chromium's virtual time runs ahead of the network, so a dump may come before the first
	// events arrive; a few attempts make the test independent of machine load.
	wants := []string{`class="status live"`, "<td>heart_rate</td>", "<td>hr-dash</td>", "value-out-of-range"}
	var dom string
	var missing []string
	for attempt := 0; attempt < 4; attempt++ {
		cmd := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir="+t.TempDir(), "--virtual-time-budget=6000", "--dump-dom", srv.HTTPURL+"/#token="+viewer)
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
		t.Errorf("rendered dashboard lacks %q", want)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
