package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/ecg"
	"github.com/pulselake/pulselake/internal/ecg/excerpt"
	"github.com/pulselake/pulselake/internal/ecg/wfdb"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

// ventricularRun is the example rule of docs/ecg.md.
const ventricularRun = `
rules:
  - name: ventricular-run
    kind: ecg_prediction
    when: class == "V" && run >= 3
    keep_firing_for: 1m
    severity: critical
    summary: "{{.run}} consecutive ventricular beats on {{.device}}"
lake:
  flush_interval: 1s
`

// TestStreamingECG posts the shipped MIT-BIH excerpt as ecg_beat readings to serve and
// follows the predictions: in the event feed, in ops.predictions and trusted.ecg_prediction
// (POST /v1/query), agreeing with the excerpt's reference classes for most beats; the run of
// V beats fires the ventricular-run alert. With ../shared/data present it also streams a
// minute of raw samples of record 208 as ecg readings and sees the beats the QRS detector
// cut from them classified.
func TestStreamingECG(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "pulselake.yaml")
	if err := os.WriteFile(cfgFile, []byte(ventricularRun), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServerWith(t, t.TempDir(), cfg)
	defer srv.stop()

	// Follow the event feed before anything is posted.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.HTTPURL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var mu sync.Mutex
	events := map[string]ecg.LivePrediction{} // by device and beat time
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		typ := ""
		for sc.Scan() {
			if t, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				typ = t
				continue
			}
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok || typ != "prediction" {
				continue
			}
			var p ecg.LivePrediction
			if json.Unmarshal([]byte(line), &p) == nil {
				mu.Lock()
				events[p.Device+"@"+p.Time.Format(time.RFC3339Nano)] = p
				mu.Unlock()
			}
		}
	}()
	eventCount := func(device string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range events {
			if e.Device == device {
				n++
			}
		}
		return n
	}

	beats, err := excerpt.DemoBeats()
	if err != nil {
		t.Fatal(err)
	}
	// One device, one beat every 0.8 s ending now; the excerpt holds 80 consecutive V beats.
	start := time.Now().UTC().Add(-time.Duration(len(beats)) * 800 * time.Millisecond)
	want := map[string]string{}
	var lines [][]byte
	for i, b := range beats {
		at := start.Add(time.Duration(i) * 800 * time.Millisecond).Truncate(time.Millisecond)
		samples, _ := json.Marshal(b.Samples)
		lines = append(lines, fmt.Appendf(nil, `{"subject":"patient-208","device":"monitor-1","kind":"ecg_beat","time":%q,"values":{"samples":%s,"label":%q}}`,
			at.Format(time.RFC3339Nano), samples, b.Class.String()))
		want[at.Format(time.RFC3339Nano)] = b.Class.String()
	}
	if code, body := postNDJSON(t, srv.HTTPURL, adminToken, lines); code != http.StatusAccepted {
		t.Fatalf("posting %d beats: %d %v", len(lines), code, body)
	}

	waitUntil(t, 60*time.Second, "a prediction event for every beat", func() bool { return eventCount("monitor-1") >= len(beats) })
	mu.Lock()
	agree := 0
	for _, e := range events {
		if e.Device != "monitor-1" {
			continue
		}
		if e.Class == want[e.Time.Format(time.RFC3339Nano)] {
			agree++
		}
		if e.Label != want[e.Time.Format(time.RFC3339Nano)] || e.Kind != "ecg_beat" || e.Model != "builtin" || e.RRKnown || len(e.Source) != 32 {
			t.Errorf("prediction event %+v", e)
			break
		}
	}
	mu.Unlock()
	t.Logf("event feed: %d of %d beats classified as their reference class", agree, len(beats))
	if agree < len(beats)*9/10 {
		t.Errorf("only %d of %d predictions match the reference class", agree, len(beats))
	}

	// The run of V beats fires the rule on ecg_prediction readings.
	waitUntil(t, 30*time.Second, "firing ventricular-run alert", func() bool {
		for _, a := range srv.Alerts.Alerts(rules.StateFiring) {
			if a.Rule == "ventricular-run" && a.Device == "monitor-1" && a.Subject == "patient-208" {
				return true
			}
		}
		return false
	})

	query := func(sql string) [][]any { return apiQuery(t, srv.HTTPURL, sql) }
	// ops.predictions: one row per beat, agreeing with the reference labels it carries.
	var rows [][]any
	waitUntil(t, 30*time.Second, "ops.predictions rows", func() bool {
		rows = query(`SELECT count(*), count(*) FILTER (WHERE class = label), max(run) FILTER (WHERE class = 'V'),
			count(DISTINCT source_id), min(model), count(*) FILTER (WHERE abs(p_n + p_s + p_v + p_f + p_q - 1) > 1e-6)
			FROM ops.predictions WHERE device = 'monitor-1'`)
		return len(rows) == 1 && rows[0][0] == float64(len(beats))
	})
	r := rows[0]
	if r[1].(float64) < float64(len(beats)*9/10) || r[2].(float64) < 3 || r[3] != float64(len(beats)) || r[4] != "builtin" || r[5] != 0.0 {
		t.Errorf("ops.predictions summary %v", r)
	}
	// trusted.ecg_prediction: the predictions as readings (what rules and dashboards see).
	waitUntil(t, 30*time.Second, "trusted.ecg_prediction rows", func() bool {
		rows = query(`SELECT count(*), count(*) FILTER (WHERE class = label) FROM trusted.ecg_prediction WHERE device = 'monitor-1'`)
		return len(rows) == 1 && rows[0][0] == float64(len(beats))
	})

	// Raw samples: one minute of record 208 in 10 s ecg readings.
	dir := "../../shared/data/mitdb-ds1"
	rec, err := wfdb.ReadRecord(dir, "208", "")
	if err != nil {
		t.Logf("skipping the raw-sample part: MIT-BIH data not found beside the checkout: %v", err)
		return
	}
	spec := rec.Header.Signals[0]
	const fs, chunk = 360, 3600
	sigStart := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	lines = lines[:0]
	for k := 0; k < 6; k++ {
		samples := make([]float64, chunk)
		for i := range samples {
			samples[i] = spec.Physical(rec.Signals[0][k*chunk+i])
		}
		body, _ := json.Marshal(samples)
		lines = append(lines, fmt.Appendf(nil, `{"subject":"patient-208","device":"holter-208","kind":"ecg","time":%q,"values":{"fs":%d,"samples":%s}}`,
			sigStart.Add(time.Duration(k)*10*time.Second).Format(time.RFC3339Nano), fs, body))
	}
	if code, body := postNDJSON(t, srv.HTTPURL, adminToken, lines); code != http.StatusAccepted {
		t.Fatalf("posting ecg readings: %d %v", code, body)
	}
	// Record 208 has about 1.6 beats/s; beats within the last seconds wait for the next peak.
	waitUntil(t, 30*time.Second, "predictions of the raw-sample beats", func() bool {
		rows = query(`SELECT count(*), count(*) FILTER (WHERE rr_known), count(*) FILTER (WHERE source_kind = 'ecg') FROM ops.predictions WHERE device = 'holter-208'`)
		return len(rows) == 1 && rows[0][0].(float64) >= 80
	})
	t.Logf("raw samples: %v beats classified (with RR features: %v)", rows[0][0], rows[0][1])
	if r := rows[0]; r[2] != r[0] || r[1].(float64) < r[0].(float64)-1 {
		t.Errorf("raw-sample predictions: %v (count, with RR features, from ecg readings)", r)
	}
	if n := eventCount("holter-208"); n == 0 {
		t.Error("no prediction events for the raw-sample beats")
	}
}

// BenchmarkStreamingECG measures serve's streaming classification: ecg_beat readings posted
// over HTTP in batches of 1000 until every beat's prediction is stored in the stream
// (pulselake_ecg_beats_total). The reference sub-benchmark posts the same readings to a serve
// with classification off (ingest alone).
func BenchmarkStreamingECG(b *testing.B) {
	beats, err := excerpt.DemoBeats()
	if err != nil {
		b.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		name := "ingest-only"
		if on {
			name = "classified"
		}
		b.Run(name, func(b *testing.B) {
			cfg := config.Default()
			cfg.ECG.Enabled = &on
			srv := startServerWith(b, b.TempDir(), cfg)
			defer srv.stop()
			start := time.Now().UTC().Add(-time.Hour)
			var lines [][]byte
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bt := beats[i%len(beats)]
				samples, _ := json.Marshal(bt.Samples)
				lines = append(lines, fmt.Appendf(nil, `{"subject":"p","device":"bench-%d","kind":"ecg_beat","time":%q,"values":{"samples":%s}}`,
					i%100, start.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), samples))
				if len(lines) == 1000 || i == b.N-1 {
					if code, body := postNDJSON(b, srv.HTTPURL, adminToken, lines); code != http.StatusAccepted {
						b.Fatalf("post: %d %v", code, body)
					}
					lines = lines[:0]
				}
			}
			if on {
				deadline := time.Now().Add(10 * time.Minute)
				for classified(b, srv) < float64(b.N) {
					if time.Now().After(deadline) {
						b.Fatalf("%v of %d beats classified", classified(b, srv), b.N)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "beats/s")
		})
	}
}

// classified is the sum of pulselake_ecg_beats_total.
func classified(b *testing.B, srv *server) float64 {
	mfs, err := srv.Gatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "pulselake_ecg_beats_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestStreamingECGKServe runs serve with an external model server speaking the KServe v2
// REST API (here an HTTP server wrapping the built-in model): beats posted while the server
// answers 503 stay in the stream and are classified once it recovers.
func TestStreamingECGKServe(t *testing.T) {
	m, err := ecg.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	var requests atomic.Int64
	down.Store(true)
	v2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/models/ecg-gbt/ready":
			return
		case r.URL.Path != "/v2/models/ecg-gbt/infer" || r.Method != http.MethodPost:
			w.WriteHeader(http.StatusNotFound)
			return
		}
		requests.Add(1)
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":"model loading"}`))
			return
		}
		var req struct {
			Inputs []struct {
				Shape []int     `json:"shape"`
				Data  []float64 `json:"data"`
			} `json:"inputs"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Inputs) != 1 || len(req.Inputs[0].Shape) != 2 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		n, width := req.Inputs[0].Shape[0], req.Inputs[0].Shape[1]
		out := make([]float64, 0, n*ecg.NumClasses)
		for i := 0; i < n; i++ {
			row := req.Inputs[0].Data[i*width : (i+1)*width]
			var rr ecg.RRFeatures
			if width == ecg.WindowLen+4 {
				rr = ecg.RRFeatures{Pre: row[187], Post: row[188], Local: row[189], Average: row[190]}
			}
			p := m.Classify(row[:ecg.WindowLen], rr)
			out = append(out, p.Probs[:]...)
		}
		json.NewEncoder(w).Encode(map[string]any{"model_name": "ecg-gbt",
			"outputs": []map[string]any{{"name": "probs", "shape": []int{n, ecg.NumClasses}, "datatype": "FP32", "data": out}}})
	}))
	defer v2.Close()

	cfg := config.Default()
	cfg.Lake.FlushInterval = yamlconf.Duration(time.Second)
	cfg.ECG.KServeURL, cfg.ECG.KServeModel = v2.URL, "ecg-gbt"
	srv := startServerWith(t, t.TempDir(), cfg)
	defer srv.stop()

	beats, err := excerpt.DemoBeats()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC().Add(-time.Minute)
	var lines [][]byte
	for i := 0; i < 40; i++ {
		b := beats[i*9]
		samples, _ := json.Marshal(b.Samples)
		lines = append(lines, fmt.Appendf(nil, `{"subject":"p","device":"kserve-1","kind":"ecg_beat","time":%q,"values":{"samples":%s,"label":%q}}`,
			start.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), samples, b.Class.String()))
	}
	if code, body := postNDJSON(t, srv.HTTPURL, adminToken, lines); code != http.StatusAccepted {
		t.Fatalf("post: %d %v", code, body)
	}
	waitUntil(t, 30*time.Second, "a request to the model server", func() bool { return requests.Load() > 0 })
	down.Store(false)
	var rows [][]any
	waitUntil(t, 60*time.Second, "ops.predictions rows from the model server", func() bool {
		rows = apiQuery(t, srv.HTTPURL, `SELECT count(*), count(*) FILTER (WHERE class = label), min(model) FROM ops.predictions`)
		return len(rows) == 1 && rows[0][0] == 40.0
	})
	if r := rows[0]; r[1].(float64) < 36 || r[2] != "kserve:ecg-gbt" {
		t.Errorf("predictions via the model server: %v (count, matching the label, model)", r)
	}
}
