package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestPoisonMessageQuarantined stores a stream message that is not a batch envelope in the
// ingest stream of a running serve (with its internal credentials, as a damaged or foreign
// producer would). The processors that must decode it (rule engine, ECG classifier)
// terminate it and record it once each in quarantine.poison; the lake writer keeps it in
// quarantine.readings; and readings posted afterwards are still processed.
func TestPoisonMessageQuarantined(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	defer srv.stop()
	var info struct {
		NATS, User, Password string
	}
	data, err := os.ReadFile(filepath.Join(dir, "serve.json"))
	if err != nil || json.Unmarshal(data, &info) != nil || info.User == "" {
		t.Fatalf("serve.json: %v %s", err, data)
	}
	nc, err := nats.Connect(info.NATS, nats.UserInfo(info.User, info.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A valid header, then an entry cut short; it names an ECG kind so that the classifier
	// does not skip it unread.
	poison := "{\"v\":1,\"source\":\"http\",\"received\":\"2026-11-23T10:00:00Z\"}\n{\"kind\":\"ecg_beat\",\"reading\":{\"sub\n"
	if _, err := nc.Request("ingest.http", []byte(poison), 10*time.Second); err != nil {
		t.Fatalf("storing the message: %v", err)
	}

	var rows [][]any
	waitUntil(t, 60*time.Second, "two quarantine.poison rows", func() bool {
		rows = apiQuery(t, srv.HTTPURL, `SELECT consumer, reason, deliveries, stream_subject, raw, raw_bytes FROM quarantine.poison ORDER BY consumer`)
		return len(rows) >= 2
	})
	want := fmt.Sprint([][]any{
		{"ecg", "undecodable", 1.0, "ingest.http", poison, float64(len(poison))},
		{"rules", "undecodable", 1.0, "ingest.http", poison, float64(len(poison))},
	})
	if fmt.Sprint(rows) != want {
		t.Errorf("quarantine.poison\n got %v\nwant %v", rows, want)
	}
	waitUntil(t, 30*time.Second, "the lake writer's quarantine row", func() bool {
		q := apiQuery(t, srv.HTTPURL, `SELECT count(*) FROM quarantine.readings WHERE code = 'invalid-envelope'`)
		return len(q) == 1 && q[0][0] == 1.0
	})

	// The stream goes on: a reading posted now is evaluated by the rules and reaches the lake.
	code, _ := postNDJSON(t, srv.HTTPURL, adminToken, [][]byte{
		[]byte(`{"subject":"p-9","device":"bp-9","kind":"blood_pressure","time":"` + time.Now().UTC().Format(time.RFC3339) + `","values":{"systolic":200,"diastolic":125}}`)})
	if code != 202 {
		t.Fatalf("POST: %d", code)
	}
	waitUntil(t, 30*time.Second, "the crisis alert on the reading after the poison message", func() bool {
		for _, a := range firingAlerts(t, srv.HTTPURL) {
			if a.Subject == "p-9" {
				return true
			}
		}
		return false
	})
	// Terminated means never again: still exactly one row per processor.
	rows = apiQuery(t, srv.HTTPURL, `SELECT consumer, count(*) FROM quarantine.poison GROUP BY consumer ORDER BY consumer`)
	if fmt.Sprint(rows) != "[[ecg 1] [rules 1]]" {
		t.Errorf("quarantine.poison after more traffic: %v", rows)
	}
}
