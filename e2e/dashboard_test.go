package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/simulate"
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
	// events arrive; attempts half a second of real time apart make the test independent of
	// machine load (four back to back all came too early once, under CI's load).
	wants := []string{`class="status live"`, "<td>heart_rate</td>", "<td>hr-dash</td>", "value-out-of-range"}
	var dom string
	var missing []string
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			time.Sleep(500 * time.Millisecond) // bounded: at most 10 attempts
		}
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

// TestDashboardOverviewManyDevices runs the demo's fleets (80+ devices: blood pressure, heart
// rate, accelerometer, ECG) against serve and loads the overview in headless Chromium: every
// chart draws values (the per-kind aggregate does not depend on which devices were seen
// last), the readings/s axis never goes below zero, the most abnormal devices are listed
// with links to their subjects' views, and the favicon is served.
func TestDashboardOverviewManyDevices(t *testing.T) {
	browser := chromium(t)
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	viewer, _, _ := srv.Tokens.Create(ctx, token.ScopeRead, "", "browser")
	devices, _, _ := srv.Tokens.Create(ctx, token.ScopeIngest, "", "devices")
	fleets := []simulate.Options{
		{Kind: "bp", Devices: 20, Rate: 20, Abnormal: 0.02},
		{Kind: "hr", Devices: 50, Rate: 200, Abnormal: 0.005},
		{Kind: "accelerometer", Devices: 10, Rate: 100, Abnormal: 0.01},
		{Kind: "ecg", Devices: 2, Rate: 2.4},
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i, f := range fleets {
		f.Target, f.Token, f.Seed = srv.HTTPURL, devices, uint64(i+1)
		wg.Go(func() { _, _ = simulate.Run(ctx, log, f) })
	}

	charts := []string{"rateChart", "hrChart", "bpChart", "accChart", "beatChart"}
	var dom string
	var got map[string]int
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		dom = browse(t, browser, srv.HTTPURL+"/#token="+viewer, 10000, "--window-size=1280,1600", "--dump-dom")
		got = chartPoints(dom)
		if allDrawn(got, charts) && strings.Contains(dom, `href="/subjects/patient-`) {
			break
		}
	}
	for _, id := range charts {
		if got[id] == 0 {
			t.Errorf("chart %s drew no values", id)
		}
	}
	if !strings.Contains(dom, `href="/subjects/patient-`) {
		t.Error("no abnormal device listed with a link to its subject")
	}
	if m := regexp.MustCompile(`id="rateChart"[^>]*aria-label="[^"]*values from (-?[\d.]+)`).FindStringSubmatch(dom); m == nil || strings.HasPrefix(m[1], "-") {
		t.Errorf("readings/s chart: values %v, want drawn and none below zero", m)
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
	resp, err := http.Get(srv.HTTPURL + "/favicon.ico")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" {
		t.Errorf("GET /favicon.ico: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if os.Getenv("PULSELAKE_SCREENSHOTS") != "" {
		// The pictures show a full window: three minutes of readings in the lake.
		waitUntil(t, 5*time.Minute, "three minutes of readings", func() bool {
			rows := apiQuery(t, srv.HTTPURL, "SELECT epoch(max(time)) - epoch(min(time)) FROM heart_rate")
			return len(rows) == 1 && rows[0][0] != nil && rows[0][0].(float64) >= 180
		})
	}
	screenshot(t, browser, srv.HTTPURL+"/#token="+viewer, "dashboard-overview.png", 1280, 1300)
	screenshot(t, browser, srv.HTTPURL+"/#token="+viewer, "dashboard-overview-phone.png", 390, 2400)
}

// BenchmarkOverviewFirstPaint loads the overview in headless Chromium from a server on
// loopback while the demo's fleets send readings, and reports the browser's own first paint
// and first contentful paint (Paint Timing API, from navigation start) and the bytes of the
// page and its assets.
func BenchmarkOverviewFirstPaint(b *testing.B) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		b.Skip("headless Chromium not found; install it with: apt-get install -y chromium")
	}
	srv := startServer(b, b.TempDir())
	defer srv.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	viewer, _, _ := srv.Tokens.Create(ctx, token.ScopeRead, "", "browser")
	devices, _, _ := srv.Tokens.Create(ctx, token.ScopeIngest, "", "devices")
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i, f := range []simulate.Options{{Kind: "bp", Devices: 20, Rate: 20}, {Kind: "hr", Devices: 50, Rate: 200}, {Kind: "accelerometer", Devices: 10, Rate: 100}} {
		f.Target, f.Token, f.Seed = srv.HTTPURL, devices, uint64(i+1)
		wg.Go(func() { _, _ = simulate.Run(ctx, log, f) })
	}
	waitUntil(b, 60*time.Second, "readings in the lake", func() bool {
		return len(apiQuery(b, srv.HTTPURL, "SELECT 1 FROM heart_rate LIMIT 1")) > 0
	})
	var bytes int64
	for _, p := range []string{"/", "/assets/style.css", "/assets/common.js", "/assets/app.js", "/assets/favicon.svg"} {
		resp, err := http.Get(srv.HTTPURL + p)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		bytes += n
	}
	re := regexp.MustCompile(`data-first-paint="(\d+)" data-first-contentful-paint="(\d+)"|data-first-contentful-paint="(\d+)" data-first-paint="(\d+)"`)
	// paints loads url and returns its first paint and first contentful paint in ms.
	paints := func(url string) (float64, float64) {
		dir, _ := os.MkdirTemp("", "chromium-")
		defer os.RemoveAll(dir)
		out, err := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
			"--user-data-dir="+dir, "--window-size=1280,1000", "--virtual-time-budget=3000", "--dump-dom", url).Output()
		if err != nil {
			b.Fatal(err)
		}
		m := re.FindStringSubmatch(string(out))
		if m == nil {
			b.Fatalf("no paint timing in the page:\n%.2000s", out)
		}
		p, c := m[1], m[2]
		if p == "" {
			p, c = m[4], m[3]
		}
		pv, _ := strconv.ParseFloat(p, 64)
		cv, _ := strconv.ParseFloat(c, 64)
		return pv, cv
	}
	var fcp []float64
	for b.Loop() {
		_, c := paints(srv.HTTPURL + "/#token=" + viewer)
		fcp = append(fcp, c)
	}
	slices.Sort(fcp)
	b.ReportMetric(fcp[len(fcp)/2], "first-contentful-paint-ms")
	b.ReportMetric(fcp[len(fcp)-1], "max-first-contentful-paint-ms")
	b.ReportMetric(float64(bytes), "page-bytes")
}
