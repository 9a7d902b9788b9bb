// Package e2e holds end-to-end tests: real servers (embedded NATS JetStream, HTTP, MQTT)
// started in-process or as separate processes, driven the way users and devices drive them.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/stream"
)

const adminToken = "plk_e2e-admin-token-0123456789abcdef"

// server is a pulselake serve running in-process.
type server struct {
	*app.Running
	dir  string
	stop func()
}

func startServer(t testing.TB, dir string) *server {
	t.Helper()
	return startServerWith(t, dir, config.Default())
}

// startServerWith starts serve with a given configuration (listeners are moved to free ports).
func startServerWith(t testing.TB, dir string, cfg *config.Config) *server {
	t.Helper()
	os.Setenv("PULSELAKE_ADMIN_TOKEN", adminToken)
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *app.Running, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	go func() {
		done <- app.Run(ctx, app.Options{DataDir: dir, Config: cfg, Log: log, OnReady: func(r *app.Running) { ready <- r }})
	}()
	select {
	case r := <-ready:
		s := &server{Running: r, dir: dir}
		s.stop = func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
		return s
	case err := <-done:
		cancel()
		t.Fatalf("serve did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("serve did not start in 60s")
	}
	return nil
}

// postNDJSON posts readings and returns the status code and decoded body.
func postNDJSON(t testing.TB, url, tok string, lines [][]byte) (int, map[string]any) {
	t.Helper()
	var body bytes.Buffer
	for _, l := range lines {
		body.Write(l)
		body.WriteByte('\n')
	}
	return post(t, url+"/v1/readings", tok, "application/x-ndjson", body.Bytes())
}

func post(t testing.TB, url, tok, ctype string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("response %d is not JSON: %s", resp.StatusCode, data)
	}
	return resp.StatusCode, out
}

// genReading makes a valid reading of a random built-in kind, or an invalid one.
func genReading(rng *rand.Rand, i int, invalid bool) ([]byte, string) {
	t := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second).UnixMilli()
	subj := fmt.Sprintf("patient-%02d", rng.IntN(20))
	var kind, values, code string
	switch rng.IntN(7) {
	case 0:
		kind, values = "blood_pressure", fmt.Sprintf(`{"systolic":%d,"diastolic":%d,"pulse":%d}`, 110+rng.IntN(60), 60+rng.IntN(40), 55+rng.IntN(40))
	case 1:
		kind, values = "heart_rate", fmt.Sprintf(`{"bpm":%d}`, 50+rng.IntN(100))
	case 2:
		kind, values = "spo2", fmt.Sprintf(`{"percent":%d}`, 90+rng.IntN(11))
	case 3:
		kind, values = "steps", fmt.Sprintf(`{"count":%d,"interval_s":60}`, rng.IntN(200))
	case 4:
		kind, values = "sleep", fmt.Sprintf(`{"stage":%q,"duration_s":%d}`, reading.SleepStages[rng.IntN(len(reading.SleepStages))], 30+rng.IntN(600))
	case 5:
		kind, values = "accelerometer", fmt.Sprintf(`{"x":%.3f,"y":%.3f,"z":%.3f}`, rng.NormFloat64()*0.2, rng.NormFloat64()*0.2, 1+rng.NormFloat64()*0.2)
	default:
		kind, values = "distance", fmt.Sprintf(`{"distance_cm":%d}`, rng.IntN(300))
	}
	if invalid {
		switch rng.IntN(3) {
		case 0:
			kind, values, code = "heart_rate", `{"bpm":900}`, reading.CodeOutOfRange
		case 1:
			kind, values, code = "blood_pressure", `{"systolic":120}`, reading.CodeMissingField
		default:
			return []byte(fmt.Sprintf(`{"subject":"%s","device":"dev-%d","kind":"heart_rate","time":%d,"values":{"bpm":70}`, subj, i, t)), reading.CodeInvalidJSON
		}
	}
	return []byte(fmt.Sprintf(`{"subject":%q,"device":"dev-%d","kind":%q,"time":%d,"values":%s}`, subj, i, kind, t, values)), code
}

// streamContents reads every batch in the ingest stream.
func streamContents(t testing.TB, conn *stream.Conn) (accepted map[reading.ID]int, rejected []stream.Entry, sources map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := conn.JS.Stream(ctx, stream.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	accepted, sources = map[reading.ID]int{}, map[string]int{}
	if info.State.Msgs == 0 {
		return accepted, nil, sources
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for seen := uint64(0); seen < info.State.Msgs; {
		m, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		seen++
		b, err := stream.Decode(m.Data(), p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entries {
			sources[b.Source]++
			if e.Accepted() {
				accepted[e.Identity]++
			} else {
				rejected = append(rejected, e)
			}
		}
	}
	return accepted, rejected, sources
}

// waitUntil polls cond until it holds, failing the test after d.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded by the deadline
	}
}

// apiQuery runs sql through POST /v1/query with the admin token and returns the rows; nil
// while the query fails (a table appears with the lake's first flush).
func apiQuery(t testing.TB, baseURL, sql string) [][]any {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"sql": sql})
	code, resp := post(t, baseURL+"/v1/query", adminToken, "application/json", body)
	if code != http.StatusOK {
		return nil
	}
	var rows [][]any
	for _, r := range resp["rows"].([]any) {
		rows = append(rows, r.([]any))
	}
	return rows
}

// firingAlerts returns GET /v1/alerts?state=firing, asked with the admin token.
func firingAlerts(t testing.TB, baseURL string) []rules.Alert {
	t.Helper()
	req, _ := http.NewRequest("GET", baseURL+"/v1/alerts?state=firing", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var body struct{ Alerts []rules.Alert }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &body) != nil {
		t.Fatalf("GET /v1/alerts: %d %s", resp.StatusCode, data)
	}
	return body.Alerts
}
