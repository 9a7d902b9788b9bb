package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	health "google.golang.org/api/health/v4"

	"github.com/pulselake/pulselake/internal/connector/googlehealth/ghfake"
	"github.com/pulselake/pulselake/internal/connector/withings/wfake"
)

// webhookLog is a notification receiver.
type webhookLog struct {
	mu     sync.Mutex
	bodies []string
}

func (l *webhookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	l.mu.Lock()
	l.bodies = append(l.bodies, string(b))
	l.mu.Unlock()
}

func (l *webhookLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.bodies {
		if strings.Contains(b, s) {
			return true
		}
	}
	return false
}

func ghHeartRate(at time.Time, bpm int64) *health.DataPoint {
	return &health.DataPoint{
		DataSource: &health.DataSource{Device: &health.Device{Manufacturer: "Google", DisplayName: "Pixel Watch 3", FormFactor: "WATCH"}, Platform: "FITBIT", RecordingMethod: "PASSIVELY_MEASURED"},
		HeartRate:  &health.HeartRate{BeatsPerMinute: bpm, SampleTime: &health.ObservationSampleTime{PhysicalTime: at.Format(time.RFC3339Nano), UtcOffset: "0s"}},
	}
}

// connectVia runs the consent flow through serve: POST /v1/connect, the fake's authorize
// redirect, then serve's callback; it returns the connection id.
func connectVia(t *testing.T, base, provider, subject string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/connect/"+provider+"?subject="+subject, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var begun struct{ URL string }
	json.NewDecoder(resp.Body).Decode(&begun)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || begun.URL == "" {
		t.Fatalf("POST /v1/connect/%s: %d", provider, resp.StatusCode)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(begun.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(callback, base+"/v1/connect/"+provider+"/callback?") {
		t.Fatalf("authorize answered %d to %q, want a redirect to serve's callback", resp.StatusCode, callback)
	}
	resp, err = http.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var done struct{ Connection struct{ ID, Status string } }
	body, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(body, &done); resp.StatusCode != http.StatusOK || done.Connection.Status != "ok" {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	// The state is single use.
	resp2, err := http.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Fatalf("the callback's state worked twice: %d", resp2.StatusCode)
	}
	return done.Connection.ID
}

func count(t *testing.T, base, sql string) int64 {
	rows := apiQuery(t, base, sql)
	if len(rows) != 1 || len(rows[0]) != 1 {
		return -1
	}
	n, _ := rows[0][0].(float64)
	return int64(n)
}

var filterStart = regexp.MustCompile(`>= "([^"]+)"`)

// earliestStart is the earliest window start among the fake's list queries.
func earliestStart(qs []url.Values) time.Time {
	var min time.Time
	for _, q := range qs {
		if m := filterStart.FindStringSubmatch(q.Get("filter")); m != nil {
			at, _ := time.Parse(time.RFC3339, m[1])
			if min.IsZero() || at.Before(min) {
				min = at
			}
		}
	}
	return min
}

// TestGoogleHealthSync runs a separate serve configured with the Google Health fake: connect
// through serve's callback, a 30-day backfill across many pages into trusted.heart_rate, a
// SIGKILL mid-backfill and a restart that resumes from the cursor and stores nothing twice, a
// 429 with Retry-After honoured, a late-synced point picked up by the lookback, and a revoked
// grant turning the connection needs-consent with an alert (GET /v1/alerts and a webhook).
func TestGoogleHealthSync(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	fake := ghfake.New(ghfake.Options{})
	defer fake.Close()
	hooks := &webhookLog{}
	hook := httptest.NewServer(hooks)
	defer hook.Close()

	now := time.Now().UTC()
	var seeded int64
	for at := now.Add(-29 * 24 * time.Hour).Truncate(time.Minute); at.Before(now.Add(-10 * time.Minute)); at = at.Add(2 * time.Minute) {
		fake.AddPoints("user-1", "heart-rate", ghHeartRate(at, 60+int64(at.Minute()%40)))
		seeded++
	}

	dir, addr := t.TempDir(), freeAddr(t)
	base := "http://" + addr
	secretFile := filepath.Join(t.TempDir(), "google-secret")
	os.WriteFile(secretFile, []byte(fake.ClientSecret()+"\n"), 0o600)
	cfgFile := filepath.Join(t.TempDir(), "pulselake.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
lake:
  flush_interval: 1s
connectors:
  google_health:
    client_id: %q
    client_secret_file: %q
    redirect_url: %q
    api_url: %q
    auth_url: %q
    token_url: %q
    data_types: [heart-rate]
    every: 2s
    initial_window: 30d
    lookback: 7d
notify:
  - name: pager
    webhook: {url: %q}
route:
  receiver: pager
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
`, fake.ClientID(), secretFile, base+"/v1/connect/google-health/callback", fake.APIURL(), fake.AuthURL(), fake.TokenURL(), hook.URL)), 0o600)

	srv := startServeWith(t, bin, dir, addr, "--config", cfgFile)
	defer func() { srv.Process.Kill(); srv.Wait() }()
	connectVia(t, base, "google-health", "patient-1")

	// Kill serve once two days are stored, mid-backfill.
	waitUntil(t, 60*time.Second, "the backfill stored two days", func() bool {
		return metric(t, base, `pulselake_connector_points_total{provider="google-health",type="heart-rate"}`) >= 2*720
	})
	srv.Process.Signal(syscall.SIGKILL)
	srv.Wait()
	before := fake.Queries()
	firstStart := earliestStart(before)

	srv = startServeWith(t, bin, dir, addr, "--config", cfgFile)
	waitUntil(t, 120*time.Second, "trusted.heart_rate holds every seeded point", func() bool {
		return count(t, base, "SELECT count(*) FROM trusted.heart_rate WHERE subject = 'patient-1'") >= seeded
	})
	if resumed := earliestStart(fake.Queries()[len(before):]); !resumed.After(firstStart.Add(24 * time.Hour)) {
		t.Fatalf("after the restart the pull began at %s; the cursor was past %s", resumed, firstStart.Add(24*time.Hour))
	}
	if n := count(t, base, "SELECT count(*) FROM trusted.heart_rate WHERE subject = 'patient-1' AND source = 'google-health'"); n != seeded {
		t.Fatalf("trusted.heart_rate holds %d rows of google-health, want the %d seeded (nothing twice)", n, seeded)
	}

	// A 429 with Retry-After, then a point synced late, 3 days back: the next pull waits,
	// retries and picks the point up through the lookback.
	fake.FailNext(1, http.StatusTooManyRequests, 2*time.Second)
	retries := metric(t, base, `pulselake_connector_retries_total{provider="google-health"}`)
	fake.AddPoints("user-1", "heart-rate", ghHeartRate(now.Add(-3*24*time.Hour).Add(30*time.Second), 77))
	waitUntil(t, 60*time.Second, "the late point is stored", func() bool {
		return count(t, base, "SELECT count(*) FROM trusted.heart_rate WHERE subject = 'patient-1'") == seeded+1
	})
	if got := metric(t, base, `pulselake_connector_retries_total{provider="google-health"}`); got <= retries {
		t.Fatalf("retries %v after a 429, want more than %v", got, retries)
	}
	if n := count(t, base, "SELECT count(*) FROM ops.connector_runs WHERE provider = 'google-health' AND error IS NULL AND points > 0"); n < 1 {
		t.Fatalf("ops.connector_runs has %d successful rows", n)
	}

	// The user revokes the grant at Google.
	fake.RevokeGrant("user-1")
	waitUntil(t, 60*time.Second, "the connection needs consent", func() bool {
		var body struct{ Connections []struct{ Status string } }
		if getJSON(t, base+"/v1/connections", "Bearer "+adminToken, &body) != http.StatusOK || len(body.Connections) != 1 {
			return false
		}
		return body.Connections[0].Status == "needs-consent"
	})
	waitUntil(t, 30*time.Second, "the needs-consent alert is notified", func() bool { return hooks.has("connector-needs-consent") })
	found := false
	for _, a := range firingAlerts(t, base) {
		found = found || (a.Rule == "connector-needs-consent" && a.Subject == "patient-1" && a.Labels["provider"] == "google-health")
	}
	if !found {
		t.Fatal("GET /v1/alerts lacks the connector-needs-consent alert")
	}
	out, code := runBin(t, "connect", "list", "--data", dir)
	if code != 0 || !strings.Contains(out, "needs-consent") || !strings.Contains(out, "patient-1") {
		t.Fatalf("connect list (%d):\n%s", code, out)
	}
}

// TestWithingsBloodPressure connects a Withings account through serve's callback; the
// measure groups (systolic, diastolic, pulse) pulled across pages become rows of
// trusted.blood_pressure; `pulselake pull` run beside serve then stores nothing twice.
func TestWithingsBloodPressure(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	fake := wfake.New(wfake.Options{PageSize: 10})
	defer fake.Close()
	now := time.Now().UTC()
	const groups = 40
	for i := range groups {
		at := now.Add(-time.Duration(i+1) * 12 * time.Hour)
		fake.AddMeasures("12345678", wfake.MeasureGroup{GrpID: int64(1000 + i), Date: at.Unix(), Category: 1,
			DeviceID: "c405eb8e0e053f6601e151c7e43c04e29aad6956", HashDeviceID: "c405eb8e0e053f6601e151c7e43c04e29aad6956",
			Model: "BPM Core", ModelID: 44, Measures: []wfake.Measure{
				{Value: int64(80 + i%10), Type: wfake.TypeDiastolic, FM: 3},
				{Value: int64(125 + i%20), Type: wfake.TypeSystolic, FM: 3},
				{Value: 70, Type: wfake.TypeHeartRate, FM: 3}}})
	}
	dir, addr := t.TempDir(), freeAddr(t)
	base := "http://" + addr
	secretFile := filepath.Join(t.TempDir(), "withings-secret")
	os.WriteFile(secretFile, []byte(fake.ClientSecret()), 0o600)
	cfgFile := filepath.Join(t.TempDir(), "pulselake.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
lake:
  flush_interval: 1s
connectors:
  withings:
    client_id: %q
    client_secret_file: %q
    redirect_url: %q
    api_url: %q
    auth_url: %q
    token_url: %q
    every: 1h
`, fake.ClientID(), secretFile, base+"/v1/connect/withings/callback", fake.APIURL(), fake.AuthURL(), fake.TokenURL())), 0o600)
	srv := startServeWith(t, bin, dir, addr, "--config", cfgFile)
	defer func() { srv.Process.Kill(); srv.Wait() }()
	connectVia(t, base, "withings", "patient-2")

	deadline := time.Now().Add(60 * time.Second)
	for count(t, base, "SELECT count(*) FROM trusted.blood_pressure WHERE subject = 'patient-2' AND source = 'withings'") < groups {
		if time.Now().After(deadline) {
			var conns any
			getJSON(t, base+"/v1/connections", "Bearer "+adminToken, &conns)
			t.Fatalf("trusted.blood_pressure: %d rows, want %d; quarantine: %v; connections: %v", count(t, base, "SELECT count(*) FROM trusted.blood_pressure"),
				groups, apiQuery(t, base, "SELECT code, message FROM quarantine.readings LIMIT 3"), conns)
		}
		time.Sleep(50 * time.Millisecond) // polling, bounded by the deadline
	}
	rows := apiQuery(t, base, "SELECT systolic, diastolic, pulse FROM trusted.blood_pressure WHERE subject = 'patient-2' ORDER BY time DESC LIMIT 1")
	if len(rows) != 1 || rows[0][0] != float64(125) || rows[0][1] != float64(80) || rows[0][2] != float64(70) {
		t.Fatalf("newest blood pressure row %v, want 125/80 pulse 70", rows)
	}

	out, code := runBin(t, "pull", "withings", "--subject", "patient-2", "--since", "30d", "--data", dir, "--config", cfgFile)
	if code != 0 || !strings.Contains(out, "withings: 1 connections") || !strings.Contains(out, "0 errors") {
		t.Fatalf("pulselake pull (%d):\n%s", code, out)
	}
	// Give the lake two flushes, then nothing may be there twice.
	time.Sleep(3 * time.Second) // the lake's flush interval is 1s; no signal marks "nothing more came"
	if n := count(t, base, "SELECT count(*) FROM trusted.blood_pressure WHERE subject = 'patient-2'"); n != groups {
		t.Fatalf("after a second pull trusted.blood_pressure holds %d rows, want %d", n, groups)
	}
}

// TestConnectCLILoopback connects without serve: `pulselake connect` prints the consent URL
// and receives the redirect on its own listener at the redirect URL's port; `pulselake pull`
// then pulls from the stream directly; erase removes the subject's token, cursor and
// connection.
func TestConnectCLILoopback(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	fake := ghfake.New(ghfake.Options{})
	defer fake.Close()
	now := time.Now().UTC()
	for i := range 50 {
		fake.AddPoints("user-1", "heart-rate", ghHeartRate(now.Add(-time.Duration(i+1)*time.Hour), 70))
	}
	dir, addr := t.TempDir(), freeAddr(t)
	secretFile := filepath.Join(t.TempDir(), "google-secret")
	os.WriteFile(secretFile, []byte(fake.ClientSecret()+"\n"), 0o600)
	cfgFile := filepath.Join(t.TempDir(), "pulselake.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`
connectors:
  google_health:
    client_id: %q
    client_secret_file: %q
    redirect_url: %q
    api_url: %q
    auth_url: %q
    token_url: %q
    data_types: [heart-rate]
    initial_window: 3d
`, fake.ClientID(), secretFile, "http://"+addr+"/oauth/callback", fake.APIURL(), fake.AuthURL(), fake.TokenURL())), 0o600)

	cmd := exec.Command(bin, "connect", "google-health", "--subject", "patient-3", "--data", dir, "--config", cfgFile, "--timeout", "1m")
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var out strings.Builder
	buf := make([]byte, 4096)
	authURL := ""
	for authURL == "" {
		n, err := stdout.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			t.Fatalf("connect ended before printing the URL:\n%s", out.String())
		}
		for _, f := range strings.Fields(out.String()) {
			if strings.HasPrefix(f, fake.AuthURL()) && strings.Contains(out.String(), "Waiting") {
				authURL = f
			}
		}
	}
	resp, err := http.Get(authURL) // the fake redirects to the command's listener
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("following the consent redirect: %d", resp.StatusCode)
	}
	rest, _ := io.ReadAll(stdout)
	out.Write(rest)
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "Connected google-health for patient-3") {
		t.Fatalf("connect: %v\n%s", err, out.String())
	}

	got, code := runBin(t, "pull", "google-health", "--data", dir, "--config", cfgFile)
	if code != 0 || !strings.Contains(got, "1 connections, 50 points") {
		t.Fatalf("pull (%d):\n%s", code, got)
	}
	// The one-shot pull records its run like serve's scheduled pulls.
	got, code = runBin(t, "query", "--data", dir, "--config", cfgFile, "--format", "csv",
		"SELECT subject, provider, type, points, error IS NULL AS ok, window_end > window_start AS advanced FROM ops.connector_runs")
	if code != 0 || !regexp.MustCompile(`(?m)^patient-3,google-health,heart-rate,50,true,true$`).MatchString(got) || strings.Count(strings.TrimSpace(got), "\n") != 1 {
		t.Fatalf("ops.connector_runs after pulselake pull (%d), want one row of 50 points:\n%s", code, got)
	}
	got, code = runBin(t, "connect", "list", "--data", dir)
	m := regexp.MustCompile(`(?m)^([0-9a-f]{12})\s+google-health\s+patient-3\s+ok\s`).FindStringSubmatch(got)
	if code != 0 || m == nil {
		t.Fatalf("connect list (%d):\n%s", code, got)
	}
	if got, code := runBin(t, "connect", "revoke", "0123456789ab", "--data", dir, "--config", cfgFile); code != 1 || !strings.Contains(got, "no such connection") {
		t.Fatalf("revoking an unknown connection (%d):\n%s", code, got)
	}

	// Erasure takes the subject's token, cursor and connection.
	got, code = runBin(t, "erase", "--subject", "patient-3", "--data", dir)
	if code != 0 {
		t.Fatalf("erase (%d):\n%s", code, got)
	}
	rows := eraseRows(t, got)
	for _, place := range []string{"connector tokens", "connector cursors", "connector connections"} {
		found := false
		for p, ba := range rows {
			if strings.HasPrefix(p, place) {
				found = true
				if ba != [2]int64{1, 0} {
					t.Errorf("erase: %s before/after %v, want 1/0", p, ba)
				}
			}
		}
		if !found {
			t.Errorf("erase's report lacks %q:\n%s", place, got)
		}
	}
	if got, _ := runBin(t, "connect", "list", "--data", dir); strings.Contains(got, "patient-3") {
		t.Fatalf("the connection is still listed after erase:\n%s", got)
	}
}
