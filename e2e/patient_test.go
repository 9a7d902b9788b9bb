package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/ecg/excerpt"
	"github.com/pulselake/pulselake/internal/token"
)

// seedSubject posts a day of one subject's readings ending at now: heart rate every minute,
// blood pressure every 30 minutes (the last one a hypertensive crisis, which fires an
// alert), SpO2 every 10 minutes, steps every 15 minutes, eight hours of sleep stages ending
// now, and a minute of real ECG beats (the MIT-BIH excerpt) ending now.
func seedSubject(t *testing.T, baseURL, subject string, now time.Time) {
	t.Helper()
	now = now.UTC().Truncate(time.Second)
	var lines [][]byte
	add := func(kind, device string, at time.Time, values string) {
		lines = append(lines, fmt.Appendf(nil, `{"subject":%q,"device":%q,"kind":%q,"time":%q,"values":%s}`,
			subject, device, kind, at.Format(time.RFC3339Nano), values))
	}
	start := now.Add(-24 * time.Hour)
	for i := 0; i <= 24*60; i++ {
		at := start.Add(time.Duration(i) * time.Minute)
		add("heart_rate", "watch-1", at, fmt.Sprintf(`{"bpm":%d}`, 62+int(12*math.Sin(float64(i)/180))+i%7))
		if i%10 == 0 {
			add("spo2", "ring-1", at, fmt.Sprintf(`{"percent":%d}`, 95+i%4))
		}
		if i%15 == 0 {
			add("steps", "watch-1", at, fmt.Sprintf(`{"count":%d,"interval_s":900}`, (i*37)%900))
		}
		if i%30 == 0 && i < 24*60 {
			add("blood_pressure", "cuff-1", at, fmt.Sprintf(`{"systolic":%d,"diastolic":%d,"pulse":70}`, 118+i%20, 76+i%9))
		}
	}
	add("blood_pressure", "cuff-1", now.Add(-2*time.Minute), `{"systolic":192,"diastolic":118,"pulse":88}`)
	stages := []string{"light", "deep", "light", "rem", "wake", "light", "deep", "rem"}
	for i, at := 0, now.Add(-8*time.Hour); at.Before(now); i, at = i+1, at.Add(10*time.Minute) {
		lines = append(lines, fmt.Appendf(nil, `{"subject":%q,"device":"watch-1","kind":"sleep","time":%q,"values":{"duration_s":600,"stage":%q}}`,
			subject, at.Format(time.RFC3339Nano), stages[i%len(stages)]))
	}
	beats, err := excerpt.DemoBeats()
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range beats[:75] {
		samples, _ := json.Marshal(b.Samples)
		at := now.Add(-time.Duration(75-i) * 800 * time.Millisecond)
		lines = append(lines, fmt.Appendf(nil, `{"subject":%q,"device":"patch-1","kind":"ecg_beat","time":%q,"values":{"samples":%s,"label":%q}}`,
			subject, at.Format(time.RFC3339Nano), samples, b.Class.String()))
	}
	for len(lines) > 0 {
		n := min(len(lines), 400)
		if code, body := postNDJSON(t, baseURL, adminToken, lines[:n]); code != http.StatusAccepted {
			t.Fatalf("seeding %s: %d %v", subject, code, body)
		}
		lines = lines[n:]
	}
}

// getBody GETs url with a token and returns the status and the raw body.
func getBody(t *testing.T, url, tok string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// browse runs headless Chromium on url with args (--dump-dom, --screenshot=…) and returns
// its standard output. The virtual time budget lets the page's scripts run that long.
func browse(t *testing.T, browser, url string, budgetMs int, args ...string) string {
	t.Helper()
	cmd := exec.Command(browser, append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=" + strconv.Itoa(budgetMs)}, append(args, url)...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return string(out)
}

// chartPoints returns the values each chart canvas of a dumped DOM drew (data-points), by
// canvas id; a canvas never drawn is missing.
func chartPoints(dom string) map[string]int {
	out := map[string]int{}
	for _, m := range regexp.MustCompile(`<canvas id="(\w+)"[^>]*>`).FindAllStringSubmatch(dom, -1) {
		if p := regexp.MustCompile(`data-points="(\d+)"`).FindStringSubmatch(m[0]); p != nil {
			out[m[1]], _ = strconv.Atoi(p[1])
		}
	}
	return out
}

// screenshot saves a PNG of url into docs/images when PULSELAKE_SCREENSHOTS is set (the
// pictures of docs/dashboard.md).
func screenshot(t *testing.T, browser, url, name string, width, height int) {
	t.Helper()
	if os.Getenv("PULSELAKE_SCREENSHOTS") == "" {
		return
	}
	path, _ := filepath.Abs(filepath.Join("..", "docs", "images", name))
	browse(t, browser, url, 8000, fmt.Sprintf("--window-size=%d,%d", width, height), "--screenshot="+path)
	t.Logf("saved %s", path)
}

var patientPanels = []string{"hrChart", "bpChart", "spo2Chart", "stepsChart", "sleepChart", "eventsChart", "ecgChart"}

// TestPatientView seeds a day of one subject's readings and opens the subject's view in
// headless Chromium for the 24 h and live ranges: every panel draws data. The series API
// downsamples to the buckets asked for and carries the loaded rules' thresholds.
func TestPatientView(t *testing.T) {
	browser := chromium(t)
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	viewer, _, _ := srv.Tokens.Create(context.Background(), token.ScopeRead, "", "browser")
	now := time.Now()
	seedSubject(t, srv.HTTPURL, "p-view", now)
	seedSubject(t, srv.HTTPURL, "p-other", now)

	// The lake has every part of the view once the series API answers with each.
	series := func(q string) map[string]json.RawMessage {
		code, data := getBody(t, srv.HTTPURL+"/v1/subjects/p-view/series?"+q, viewer)
		if code != http.StatusOK {
			t.Fatalf("series: %d %s", code, data)
		}
		var body struct{ Series map[string]json.RawMessage }
		if err := json.Unmarshal(data, &body); err != nil {
			t.Fatal(err)
		}
		return body.Series
	}
	waitUntil(t, 90*time.Second, "the lake holds the readings, the beats' classes and the alert", func() bool {
		s := series("kinds=heart_rate,ecg,events")
		return strings.Contains(string(s["heart_rate"]), `"resting_bpm":[`) && strings.Contains(string(s["ecg"]), `"class":"`) &&
			strings.Contains(string(s["events"]), `"hypertensive-crisis"`)
	})
	var hr struct {
		T      []int64
		Fields map[string]map[string][]*float64
	}
	_ = json.Unmarshal(series("kinds=heart_rate&points=100")["heart_rate"], &hr)
	if len(hr.T) == 0 || len(hr.T) > 100 {
		t.Errorf("24 h of heart rate in at most 100 buckets: got %d", len(hr.T))
	}
	var bp struct {
		Thresholds []struct {
			Field, Op string
			Value     float64
		}
	}
	_ = json.Unmarshal(series("kinds=blood_pressure")["blood_pressure"], &bp)
	if !strings.Contains(fmt.Sprint(bp.Thresholds), "{systolic >= 180}") {
		t.Errorf("blood pressure thresholds lack systolic >= 180 of the default rules: %v", bp.Thresholds)
	}

	for _, rng := range []string{"24h", "live"} {
		t.Run(rng, func(t *testing.T) {
			url := srv.HTTPURL + "/subjects/p-view?range=" + rng + "#token=" + viewer
			var got map[string]int
			var dom string
			for attempt := 0; attempt < 4; attempt++ {
				dom = browse(t, browser, url, 6000, "--window-size=1280,1800", "--dump-dom")
				got = chartPoints(dom)
				if allDrawn(got, patientPanels) {
					break
				}
			}
			for _, id := range patientPanels {
				if got[id] == 0 {
					t.Errorf("panel %s drew no data in the %s range", id, rng)
				}
			}
			if !strings.Contains(dom, `data-range="`+rng+`" aria-pressed="true"`) {
				t.Errorf("range button %s not pressed", rng)
			}
			if t.Failed() {
				t.Logf("DOM:\n%s", dom)
			}
		})
	}
	screenshot(t, browser, srv.HTTPURL+"/subjects/p-view?range=24h#token="+viewer, "dashboard-patient.png", 1280, 1500)
	screenshot(t, browser, srv.HTTPURL+"/subjects/p-view?range=24h#token="+viewer, "dashboard-patient-phone.png", 390, 2600)
	screenshot(t, browser, srv.HTTPURL+"/subjects#token="+viewer, "dashboard-subjects.png", 1280, 500)
}

func allDrawn(points map[string]int, ids []string) bool {
	for _, id := range ids {
		if points[id] == 0 {
			return false
		}
	}
	return true
}

// TestPatientViewBoundToken checks a subject-bound read token: the API answers 403 without
// data for another subject, the subject list shows its subject only, the overview opens the
// subject's own view, and the view of another subject draws nothing.
func TestPatientViewBoundToken(t *testing.T) {
	browser := chromium(t)
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	bound, _, _ := srv.Tokens.Create(context.Background(), token.ScopeRead, "p-own", "patient")
	now := time.Now()
	seedSubject(t, srv.HTTPURL, "p-own", now)
	seedSubject(t, srv.HTTPURL, "p-else", now)
	waitUntil(t, 90*time.Second, "both subjects in the lake", func() bool {
		return len(apiQuery(t, srv.HTTPURL, `SELECT DISTINCT subject FROM heart_rate`)) == 2
	})

	for _, path := range []string{"/v1/subjects/p-else/series", "/v1/subjects/p-else/series?kinds=heart_rate&from=0", "/v1/events?subject=p-else"} {
		code, data := getBody(t, srv.HTTPURL+path, bound)
		if code != http.StatusForbidden || strings.Contains(string(data), "bpm") || !strings.Contains(string(data), `"code":"forbidden"`) {
			t.Errorf("GET %s with p-own's token: %d %s, want 403 forbidden without data", path, code, data)
		}
	}
	code, data := getBody(t, srv.HTTPURL+"/v1/subjects/p-own/series?kinds=heart_rate", bound)
	if code != http.StatusOK || !strings.Contains(string(data), `"bpm"`) {
		t.Errorf("own series: %d %.300s", code, data)
	}
	code, data = getBody(t, srv.HTTPURL+"/v1/subjects", bound)
	var list struct {
		Subjects     []struct{ Subject string }
		BoundSubject string `json:"bound_subject"`
	}
	if err := json.Unmarshal(data, &list); code != http.StatusOK || err != nil || len(list.Subjects) != 1 || list.Subjects[0].Subject != "p-own" || list.BoundSubject != "p-own" {
		t.Errorf("GET /v1/subjects with p-own's token: %d %s", code, data)
	}
	code, data = getBody(t, srv.HTTPURL+"/v1/subjects?q=ELSE", adminToken)
	if code != http.StatusOK || !strings.Contains(string(data), `"subject":"p-else"`) || strings.Contains(string(data), "p-own") {
		t.Errorf("search q=ELSE with the admin token: %d %s", code, data)
	}

	// The overview sends a bound token to its subject's view.
	dom := browse(t, browser, srv.HTTPURL+"/#token="+bound, 6000, "--dump-dom")
	if !strings.Contains(dom, `<span id="subject">p-own</span>`) {
		t.Errorf("the overview with p-own's token did not open p-own's view:\n%s", dom)
	}
	// Another subject's view: refused, nothing drawn.
	dom = browse(t, browser, srv.HTTPURL+"/subjects/p-else?range=24h#token="+bound, 6000, "--dump-dom")
	if !strings.Contains(dom, "may not see p-else (403)") {
		t.Errorf("p-else's view with p-own's token does not say it is refused:\n%s", dom)
	}
	for id, n := range chartPoints(dom) {
		if n != 0 {
			t.Errorf("p-else's view with p-own's token drew %d values in %s", n, id)
		}
	}
}
