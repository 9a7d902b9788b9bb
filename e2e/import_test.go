package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const sharedData = "../../shared/data"

// TestImportRealData imports the real Fitbit heart-rate export and home blood-pressure log,
// then imports them again: the second run stores nothing new.
func TestImportRealData(t *testing.T) {
	if _, err := os.Stat(sharedData); err != nil {
		t.Skipf("real data sets not found at %s (they sit beside the checkout in CI): %v", sharedData, err)
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := []string{sharedData + "/bp-home-readings.csv", sharedData + "/fitbit-heartrate-1user.csv"}
	run := func() string {
		out, err := exec.Command(bin, append([]string{"ingest", "--data", dir, "--subject", "bp-owner"}, files...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("pulselake ingest: %v\n%s", err, out)
		}
		return string(out)
	}
	first := run()
	for _, want := range []string{"bp-home-readings.csv: 222 accepted, 0 duplicates, 0 rejected", "fitbit-heartrate-1user.csv: 154104 accepted, 0 duplicates, 0 rejected"} {
		if !strings.Contains(first, want) {
			t.Errorf("first import: want %q in\n%s", want, first)
		}
	}
	second := run()
	for _, want := range []string{"bp-home-readings.csv: 0 accepted, 222 duplicates", "fitbit-heartrate-1user.csv: 0 accepted, 154104 duplicates"} {
		if !strings.Contains(second, want) {
			t.Errorf("second import: want %q in\n%s", want, second)
		}
	}
}
