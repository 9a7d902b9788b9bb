package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/rules"
)

// TestDetectorStateSurvivesRestart: a separate serve process runs an hour-over-hour timeshift
// detector; it learns two subjects' last two hours (one of them with a spike that fires an
// alert), then serve is stopped cleanly (SIGTERM: the final checkpoint) or killed with
// SIGKILL after a checkpoint, and started again on the same data directory. The firing alert
// is still listed, and the other subject's first abnormal reading after the restart fires at
// once: a fresh timeshift baseline has no reading an hour earlier and could not flag it.
// Erasing a subject then removes its checkpointed baseline and alert: a further restart does
// not bring them back.
func TestDetectorStateSurvivesRestart(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		stop syscall.Signal
	}{{"sigterm", syscall.SIGTERM}, {"sigkill after a checkpoint", syscall.SIGKILL}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgFile := filepath.Join(t.TempDir(), "pulselake.yaml")
			os.WriteFile(cfgFile, []byte(`
default_rules: false
detectors_checkpoint: 1s
detectors:
  - name: hr-hour-over-hour
    kind: heart_rate
    value: bpm
    method: timeshift
    params: {shift: 1h, step: 1m, threshold: 0.3}
    resolve_after: 1h
`), 0o600)
			addr := freeAddr(t)
			base := "http://" + addr
			srv := startServeWith(t, bin, dir, addr, "--config", cfgFile)
			running := srv
			defer func() {
				if running != nil {
					running.Process.Kill()
					running.Wait()
				}
			}()

			// 120 minutes of 70..73 bpm for ann and bob ending a minute ago; ann has 190 bpm at
			// its last minute (an anomaly: her alert fires).
			end := time.Now().UTC().Truncate(time.Minute)
			var lines [][]byte
			for _, subject := range []string{"ann", "bob"} {
				for i := 120; i >= 1; i-- {
					bpm := 70.0 + float64(i%4)
					if subject == "ann" && i == 1 {
						bpm = 190
					}
					lines = append(lines, fmt.Appendf(nil, `{"subject":%q,"device":"watch-1","kind":"heart_rate","time":%q,"values":{"bpm":%g}}`,
						subject, end.Add(-time.Duration(i)*time.Minute).Format(time.RFC3339), bpm))
				}
			}
			if code, body := postNDJSON(t, base, adminToken, lines); code != http.StatusAccepted {
				t.Fatalf("post: %d %v", code, body)
			}
			points := `pulselake_anomaly_points_total{detector="hr-hour-over-hour"}`
			waitUntil(t, 60*time.Second, "240 readings scored", func() bool { return metric(t, base, points) == 240 })
			waitUntil(t, 30*time.Second, "ann's alert firing", func() bool { return hasAlert(t, base, "ann") })
			if tc.stop == syscall.SIGKILL {
				// Two checkpoints completed after the last reading was scored: the second began
				// after it.
				done := `pulselake_anomaly_checkpoint_seconds_count`
				c := metric(t, base, done)
				waitUntil(t, 30*time.Second, "two more checkpoints", func() bool { return metric(t, base, done) >= c+2 })
			}
			if err := srv.Process.Signal(tc.stop); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- srv.Wait() }()
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				t.Fatal("serve did not exit in 60s")
			}
			running = nil

			running = startServeWith(t, bin, dir, addr, "--config", cfgFile)
			if !hasAlert(t, base, "ann") {
				t.Errorf("ann's firing alert is not listed after the restart: %+v", firingAlerts(t, base))
			}
			// bob's first reading after the restart, 190 bpm against 73 an hour before.
			line := fmt.Appendf(nil, `{"subject":"bob","device":"watch-1","kind":"heart_rate","time":%q,"values":{"bpm":190}}`, end.Format(time.RFC3339))
			if code, body := postNDJSON(t, base, adminToken, [][]byte{line}); code != http.StatusAccepted {
				t.Fatalf("post: %d %v", code, body)
			}
			waitUntil(t, 30*time.Second, "bob's reading scored", func() bool { return metric(t, base, points) >= 1 })
			waitUntil(t, 30*time.Second, "bob's alert firing after the restart", func() bool { return hasAlert(t, base, "bob") })
			if n := metric(t, base, points); n != 1 {
				t.Errorf("the restarted serve scored %v readings, want only bob's new one (the others were acknowledged)", n)
			}

			// Erasing ann removes her checkpointed baseline and alert too: a restart does not
			// bring them back, and bob's stay.
			out, code := runBin(t, "erase", "--data", dir, "--config", cfgFile, "--subject", "ann")
			if code != 0 {
				t.Fatalf("erase exited %d:\n%s", code, out)
			}
			for _, place := range []string{"anomaly detectors: checkpointed alerts, baselines (KV pulselake_detectors)",
				"anomaly detector baselines and alerts (KV pulselake_detectors)"} {
				var before, after int
				found := false
				for _, line := range strings.Split(out, "\n") {
					if rest, ok := strings.CutPrefix(line, place); ok {
						_, err := fmt.Sscan(rest, &before, &after)
						found = err == nil
					}
				}
				if !found || before != 2 || after != 0 { // ann's baseline and alert
					t.Errorf("erase report for %q: before %d after %d (found %v), want 2 and 0:\n%s", place, before, after, found, out)
				}
			}
			if hasAlert(t, base, "ann") {
				t.Error("ann's alert is listed after erase")
			}
			running.Process.Signal(syscall.SIGTERM)
			running.Wait()
			running = startServeWith(t, bin, dir, addr, "--config", cfgFile)
			if hasAlert(t, base, "ann") || !hasAlert(t, base, "bob") {
				t.Errorf("after erase and a restart: alerts %+v, want bob's only", firingAlerts(t, base))
			}
		})
	}
}

// hasAlert reports whether the detector's alert of subject is firing at GET /v1/alerts.
func hasAlert(t *testing.T, base, subject string) bool {
	for _, a := range firingAlerts(t, base) {
		if a.Rule == "hr-hour-over-hour" && a.Subject == subject && a.State == rules.StateFiring {
			return true
		}
	}
	return false
}
