package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/rules"
)

// TestAnomalyDetectorThroughServe posts two hours of steady heart rate with one injected
// spike to a serve running a week-over-week style timeshift detector (shift 1h), and sees the
// spike, and only it, in ops.anomalies, its alert on the webhook (firing, then resolved) and in
// ops.alerts.
func TestAnomalyDetectorThroughServe(t *testing.T) {
	var mu sync.Mutex
	var hooks []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			mu.Lock()
			hooks = append(hooks, m)
			mu.Unlock()
		}
	}))
	defer hook.Close()
	cfgFile := filepath.Join(t.TempDir(), "pulselake.yaml")
	os.WriteFile(cfgFile, []byte(`
default_rules: false
lake:
  flush_interval: 1s
detectors:
  - name: hr-hour-over-hour
    kind: heart_rate
    value: bpm
    method: timeshift
    params: {shift: 1h, step: 1m, threshold: 0.3}
    severity: critical
    labels: {team: cardio}
    resolve_after: 2s
notify:
  - name: pager
    webhook: {url: "`+hook.URL+`"}
route:
  receiver: pager
  group_by: [alertname, subject]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
`), 0o600)
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	srv := startServerWith(t, dataDir, cfg)
	stopped := false
	defer func() {
		if !stopped {
			srv.stop()
		}
	}()

	// 121 minutes of heart rate 70..73 bpm ending now, with 190 bpm at the last minute: the
	// only point that differs from an hour earlier by more than 30 %.
	end := time.Now().UTC().Truncate(time.Minute)
	var lines [][]byte
	for i := 120; i >= 0; i-- {
		bpm := 70.0 + float64(i%4)
		if i == 0 {
			bpm = 190
		}
		lines = append(lines, fmt.Appendf(nil, `{"subject":"runner-3","device":"watch-1","kind":"heart_rate","time":%q,"values":{"bpm":%g}}`,
			end.Add(-time.Duration(i)*time.Minute).Format(time.RFC3339), bpm))
	}
	if code, body := postNDJSON(t, srv.HTTPURL, adminToken, lines); code != http.StatusAccepted {
		t.Fatalf("post: %d %v", code, body)
	}

	// GET /v1/alerts lists the anomaly alert while it fires (it resolves 2 s after the spike).
	waitUntil(t, 30*time.Second, "the anomaly alert at GET /v1/alerts", func() bool {
		for _, a := range firingAlerts(t, srv.HTTPURL) {
			if a.Rule == "hr-hour-over-hour" && a.Subject == "runner-3" && a.State == rules.StateFiring && a.Labels["team"] == "cardio" {
				return true
			}
		}
		return false
	})
	query := func(sql string) [][]any { return apiQuery(t, srv.HTTPURL, sql) }
	var rows [][]any
	waitUntil(t, 30*time.Second, "ops.anomalies row", func() bool {
		rows = query(`SELECT detector, method, subject, device, kind, value, score, strftime(time, '%Y-%m-%dT%H:%M:%SZ') FROM ops.anomalies`)
		return len(rows) > 0
	})
	// change = |190 - 70| / 190; score = r/(1+r) with r = change / 0.3.
	change := 120.0 / 190
	wantScore := (change / 0.3) / (1 + change/0.3)
	if len(rows) != 1 {
		t.Fatalf("ops.anomalies rows %v, want only the spike", rows)
	}
	r := rows[0]
	if r[0] != "hr-hour-over-hour" || r[1] != "timeshift" || r[2] != "runner-3" || r[3] != "watch-1" || r[4] != "heart_rate" ||
		r[5] != 190.0 || r[7] != end.Format("2006-01-02T15:04:05Z") {
		t.Errorf("ops.anomalies row %v", r)
	}
	if s, _ := r[6].(float64); s < wantScore-1e-12 || s > wantScore+1e-12 {
		t.Errorf("score %v, want %v", r[6], wantScore)
	}

	// The alert: firing on the webhook, then resolved after resolve_after without anomalies.
	status := func(want string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, h := range hooks {
				if h["status"] != want {
					continue
				}
				for _, a := range h["alerts"].([]any) {
					l := a.(map[string]any)["labels"].(map[string]any)
					if l["alertname"] == "hr-hour-over-hour" && l["subject"] == "runner-3" && l["severity"] == "critical" && l["team"] == "cardio" {
						return true
					}
				}
			}
			return false
		}
	}
	waitUntil(t, 30*time.Second, "firing notification", status("firing"))
	waitUntil(t, 30*time.Second, "resolved notification", status("resolved"))
	waitUntil(t, 30*time.Second, "ops.alerts rows", func() bool {
		rows = query(`SELECT state, from_state, severity FROM ops.alerts WHERE rule = 'hr-hour-over-hour' ORDER BY time`)
		return len(rows) == 2
	})
	if fmt.Sprint(rows) != "[[firing inactive critical] [resolved firing critical]]" {
		t.Errorf("ops.alerts %v", rows)
	}

	// The heart-rate report reads the same readings from the lake.
	srv.stop()
	stopped = true
	out := filepath.Join(t.TempDir(), "report")
	text, code := runBin(t, "report", "heart", "--subject", "runner-3", "--data", dataDir, "--out", out)
	if code != 0 || !strings.HasPrefix(text, "121 readings of runner-3") {
		t.Fatalf("report heart: exit %d: %s", code, text)
	}
	page, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil || !strings.Contains(string(page), `id="readings">121<`) || !strings.Contains(string(page), `id="max">190.0<`) {
		t.Errorf("report page: %v\n%s", err, page)
	}
	// [from, to): the last hour without the spike at its end.
	text, code = runBin(t, "report", "heart", "--subject", "runner-3", "--data", dataDir, "--out", out,
		"--from", end.Add(-time.Hour).Format(time.RFC3339), "--to", end.Format(time.RFC3339))
	if code != 0 || !strings.HasPrefix(text, "60 readings of runner-3") {
		t.Errorf("report heart --from --to: exit %d: %s", code, text)
	}
	if page, _ := os.ReadFile(filepath.Join(out, "index.html")); !strings.Contains(string(page), `id="max">73.0<`) {
		t.Errorf("report page of the last hour:\n%s", page)
	}
	if text, code := runBin(t, "report", "heart", "--subject", "nobody", "--data", dataDir, "--out", out); code != 1 || !strings.Contains(text, "check --subject") {
		t.Errorf("report of an unknown subject: exit %d: %s", code, text)
	}
}

// TestAnomalyDetectorConfigErrors: mistakes in detectors are reported with their line.
func TestAnomalyDetectorConfigErrors(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "pulselake.yaml")
	os.WriteFile(cfgFile, []byte(`detectors:
  - kind: heart_rate
    value: bpm
    method: iforest
    params:
      contamination: 0.9
  - kind: heart_rate
    value: pulse
    method: holt-winters
`), 0o600)
	_, err := config.Check(cfgFile, nil)
	if err == nil {
		t.Fatal("invalid detectors accepted")
	}
	for _, want := range []string{":6: detectors[0].params.contamination", ":8: detectors[1].value", "no numeric value \"pulse\""} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
