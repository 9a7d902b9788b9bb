package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConnectorsConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		problems   []string // "line: path" of each problem
	}{
		{"defaults, off", "", nil},
		{"google on", "connectors:\n  google_health:\n    client_id: x\n    client_secret_file: /s\n", nil},
		{"no secret file", "connectors:\n  withings:\n    client_id: x\n", []string{":3: connectors.withings.client_id"}},
		{"bad values", "connectors:\n  google_health:\n    client_id: x\n    client_secret_file: /s\n    api_url: ftp://x\n    every: 0s\n    lookback: -1h\n    data_types: [heart-rate, heart-rate]\n",
			[]string{":5: connectors.google_health.api_url", ":6: connectors.google_health.every", ":7: connectors.google_health.lookback", ":8: connectors.google_health.data_types[1]"}},
		{"unknown key", "connectors:\n  google_health:\n    client_secret: inline\n", []string{":3: connectors.google_health.client_secret"}},
		{"bad duration", "connectors:\n  withings:\n    lookback: 7 days\n", []string{":3: connectors.withings.lookback"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(path, []byte(tc.yaml), 0o600)
			_, err := Check(path, nil)
			got := ""
			if err != nil {
				got = err.Error()
			}
			for _, p := range tc.problems {
				if !strings.Contains(got, p) {
					t.Errorf("problems %q lack %q", got, p)
				}
			}
			if len(tc.problems) == 0 && err != nil {
				t.Errorf("unexpected problems: %v", err)
			}
		})
	}
	c, _ := Load("")
	if c.Connectors.Withings.InitialWindow.D() != 30*24*time.Hour || c.Connectors.GoogleHealth.Every.D() != 15*time.Minute ||
		c.Connectors.GoogleHealth.Lookback.D() != 7*24*time.Hour || c.Connectors.GoogleHealth.Enabled() {
		t.Fatalf("defaults: %+v", c.Connectors)
	}
}
