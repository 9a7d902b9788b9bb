package e2e

import (
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
)

// TestCrisisReadingAlertsThroughServe posts a hypertensive-crisis reading over HTTP to a
// running serve configured with a webhook, and sees the alert at GET /v1/alerts, on the
// webhook, and resolved after a normal reading.
func TestCrisisReadingAlertsThroughServe(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	cfgFile := filepath.Join(t.TempDir(), "pulselake.yaml")
	// The configured rule replaces the shipped one of the same name (which keeps firing 5 min).
	os.WriteFile(cfgFile, []byte(`
rules:
  - name: hypertensive-crisis
    kind: blood_pressure
    when: systolic >= 180 || diastolic >= 120
    severity: critical
    summary: "BP {{.systolic}}/{{.diastolic}} on {{.device}}"
notify:
  - name: pager
    webhook: {url: "`+hook.URL+`"}
route:
  receiver: pager
  group_by: [alertname, device]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
`), 0o600)
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv := startServerWith(t, t.TempDir(), cfg)
	defer srv.stop()

	now := time.Now().UTC()
	crisis := `{"subject":"patient-17","device":"bp-0042","kind":"blood_pressure","time":"` + now.Format(time.RFC3339Nano) + `","values":{"systolic":192,"diastolic":101}}`
	if code, body := post(t, srv.HTTPURL+"/v1/readings", adminToken, "application/json", []byte(crisis)); code != 202 {
		t.Fatalf("post: %d %v", code, body)
	}
	waitUntil(t, 10*time.Second, "the crisis alert fires", func() bool {
		for _, a := range firingAlerts(t, srv.HTTPURL) {
			if a.Rule == "hypertensive-crisis" && a.Device == "bp-0042" {
				return true
			}
		}
		return false
	})
	waitUntil(t, 10*time.Second, "the webhook receives the alert", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(bodies) > 0 && strings.Contains(bodies[0], "hypertensive-crisis") && strings.Contains(bodies[0], "192")
	})
	normal := `{"subject":"patient-17","device":"bp-0042","kind":"blood_pressure","time":"` + now.Add(time.Second).Format(time.RFC3339Nano) + `","values":{"systolic":128,"diastolic":82}}`
	post(t, srv.HTTPURL+"/v1/readings", adminToken, "application/json", []byte(normal))
	waitUntil(t, 15*time.Second, "the webhook receives the resolved notice", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bodies {
			if strings.Contains(b, `"status":"resolved"`) {
				return true
			}
		}
		return false
	})
}
