// Command fhir benchmarks FHIR R4 ingest as a whole system: it starts `pulselake serve` as a
// separate process on a fresh data directory and, in the same run, posts heart-rate readings
// as NDJSON batches to POST /v1/readings and as batch Bundles of Observations to
// POST /fhir/r4, the same number per request, reporting readings/s and per-request latency
// of each (docs/benchmarks.md, "FHIR").
//
//	go build -o pulselake ./cmd/pulselake
//	go run ./bench/fhir -bin ./pulselake -duration 15s
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pulselake/pulselake/bench/benchrun"
)

const token = "plk_bench-admin-token-0123456789abcdef"

func main() {
	bin := flag.String("bin", "./pulselake", "pulselake binary")
	duration := flag.Duration("duration", 15*time.Second, "length of each phase")
	batch := flag.Int("batch", 1000, "readings (Observations) per request")
	clients := flag.Int("clients", 8, "concurrent HTTP clients")
	flag.Parse()

	dir, err := os.MkdirTemp("", "pulselake-bench-fhir-")
	benchrun.Must(err)
	defer os.RemoveAll(dir)
	addr := benchrun.FreeAddr()
	cmd := exec.Command(*bin, "serve", "--data", dir, "--http", addr, "--mqtt", "off")
	cmd.Env = append(os.Environ(), "PULSELAKE_ADMIN_TOKEN="+token)
	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	benchrun.Must(err)
	cmd.Stdout, cmd.Stderr = logf, logf
	benchrun.Must(cmd.Start())
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	base := "http://" + addr
	benchrun.WaitReady(base, time.Minute)

	fmt.Printf("pulselake FHIR ingest benchmark, %s, %d readings per request, %d clients\n", time.Now().UTC().Format(time.RFC3339), *batch, *clients)
	epoch := time.Now().Add(-2 * time.Hour).UTC()
	for _, p := range []struct {
		name, path, ctype string
		body              func(client, seq int) []byte
	}{
		{"plain JSON (NDJSON, POST /v1/readings)", "/v1/readings", "application/x-ndjson", func(c, s int) []byte { return ndjson(epoch, c, s, *batch) }},
		{"FHIR batch Bundle (POST /fhir/r4)", "/fhir/r4", "application/fhir+json", func(c, s int) []byte { return bundle(epoch, c, s, *batch) }},
	} {
		n, lat, el, bytesSent := run(base+p.path, p.ctype, *clients, *duration, *batch, p.body)
		fmt.Printf("%s: %d readings in %.1fs = %.0f readings/s; %.0f bytes/reading; per-request latency p50 %.1f ms, p99 %.1f ms\n",
			p.name, n, el.Seconds(), float64(n)/el.Seconds(), float64(bytesSent)/float64(max(n, 1)), benchrun.Ms(benchrun.Percentile(lat, 50)), benchrun.Ms(benchrun.Percentile(lat, 99)))
	}
}

// run posts bodies from clients goroutines for d and counts the readings acknowledged.
func run(url, ctype string, clients int, d time.Duration, per int, body func(client, seq int) []byte) (int64, []time.Duration, time.Duration, int64) {
	var n, sent atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	// The client id offsets the readings' times so that phases and clients never collide.
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: time.Minute}
			for seq := 0; time.Now().Before(deadline); seq++ {
				b := body(c, seq)
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
				req.Header.Set("Content-Type", ctype)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := hc.Do(req)
				benchrun.Must(err)
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 && resp.StatusCode != 202 {
					benchrun.Must(fmt.Errorf("POST %s: %d %.300s", url, resp.StatusCode, data))
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
				n.Add(int64(per))
				sent.Add(int64(len(b)))
			}
		}()
	}
	wg.Wait()
	return n.Load(), lat, time.Since(start), sent.Load()
}

// readingTime is the time of reading i of request seq of client c: unique per reading.
func readingTime(epoch time.Time, c, seq, i, per int) time.Time {
	return epoch.Add(time.Duration((seq*per+i)*64+c) * time.Microsecond)
}

func ndjson(epoch time.Time, c, seq, per int) []byte {
	var b bytes.Buffer
	for i := range per {
		fmt.Fprintf(&b, `{"subject":"patient-%d","device":"hr-%d","kind":"heart_rate","time":%q,"values":{"bpm":%d}}`+"\n",
			i%50, c, readingTime(epoch, c, seq, i, per).Format(time.RFC3339Nano), 60+i%40)
	}
	return b.Bytes()
}

func bundle(epoch time.Time, c, seq, per int) []byte {
	entries := make([]any, per)
	for i := range per {
		entries[i] = map[string]any{
			"fullUrl": fmt.Sprintf("urn:uuid:%08x-0000-4000-8000-%012x", c, seq*per+i),
			"resource": map[string]any{
				"resourceType": "Observation", "status": "final",
				"category":          []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}}}},
				"code":              map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}}},
				"subject":           map[string]any{"reference": fmt.Sprintf("Patient/patient-%d", i%50)},
				"device":            map[string]any{"reference": fmt.Sprintf("Device/fhir-%d", c)},
				"effectiveDateTime": readingTime(epoch, c, seq, i, per).Format(time.RFC3339Nano),
				"valueQuantity":     map[string]any{"value": 60 + i%40, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
			},
			"request": map[string]any{"method": "POST", "url": "Observation"},
		}
	}
	b, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "batch", "entry": entries})
	benchrun.Must(err)
	return b
}
