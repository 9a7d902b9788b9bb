// Command ingest benchmarks pulselake's front doors as a whole system: it starts
// `pulselake serve` as a separate process on a fresh data directory, drives it with NDJSON
// batches over HTTP and with MQTT QoS1 messages, and reports throughput, per-batch latency
// percentiles and the server's peak RSS. As the reference, measured in the same run, it
// publishes the same readings one JetStream message each (what a naive design would do) to
// an embedded server with the same fsync-on-every-write setting.
//
//	go run ./bench/ingest -bin ./pulselake -duration 20s
//
// With -mode overload it measures behaviour past capacity instead (docs/benchmarks.md,
// "Overload"): many clients sending big batches, the answers they get, /readyz throughout,
// serve's peak RSS, that every acknowledged reading reaches the lake once, and the time to
// restart:
//
//	go run ./bench/ingest -bin ./pulselake -mode overload -clients 20 -batch 10000 -duration 15s
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/pulselake/pulselake/bench/benchrun"
	"github.com/pulselake/pulselake/internal/stream"
)

const token = "plk_bench-admin-token-0123456789abcdef"

func main() {
	bin := flag.String("bin", "./pulselake", "pulselake binary")
	duration := flag.Duration("duration", 20*time.Second, "length of each phase")
	batch := flag.Int("batch", 1000, "readings per HTTP request")
	clients := flag.Int("clients", 8, "concurrent HTTP clients")
	mqttConns := flag.Int("mqtt-conns", 16, "MQTT connections")
	mqttArray := flag.Int("mqtt-array", 50, "readings per MQTT message in the second MQTT phase (a JSON array)")
	mode := flag.String("mode", "throughput", "throughput (HTTP, MQTT, reference) or overload")
	honour := flag.Bool("honour-retry-after", true, "overload: clients wait Retry-After seconds after 429/503")
	keep := flag.Bool("keep", false, "overload: keep the data directory and serve.log")
	flag.Parse()
	if *mode == "overload" {
		overload(*bin, *clients, *batch, *duration, *honour, *keep)
		return
	}

	dir, _ := os.MkdirTemp("", "pulselake-bench-")
	defer os.RemoveAll(dir)
	httpAddr, mqttAddr := benchrun.FreeAddr(), benchrun.FreeAddr()
	cmd := exec.Command(*bin, "serve", "--data", dir, "--http", httpAddr, "--mqtt", mqttAddr)
	cmd.Env = append(os.Environ(), "PULSELAKE_ADMIN_TOKEN="+token)
	logf, _ := os.Create(filepath.Join(dir, "serve.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	benchrun.Must(cmd.Start())
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	benchrun.WaitReady("http://"+httpAddr, time.Minute)

	fmt.Printf("pulselake ingest benchmark, %s, GOMAXPROCS=%s\n", time.Now().UTC().Format(time.RFC3339), os.Getenv("GOMAXPROCS"))
	n, lat, el := benchHTTP("http://"+httpAddr, *batch, *clients, *duration)
	fmt.Printf("HTTP NDJSON, %d readings/request, %d clients: %d readings in %.1fs = %.0f readings/s; per-batch latency p50 %.1f ms, p99 %.1f ms\n",
		*batch, *clients, n, el.Seconds(), float64(n)/el.Seconds(), benchrun.Ms(benchrun.Percentile(lat, 50)), benchrun.Ms(benchrun.Percentile(lat, 99)))
	fmt.Printf("serve peak RSS after HTTP phase: %d MB\n", benchrun.PeakRSS(cmd.Process.Pid)/1024)

	for _, per := range []int{1, *mqttArray} {
		m, mel := benchMQTT(mqttAddr, *mqttConns, per, *duration)
		fmt.Printf("MQTT QoS1, %d connections, %d reading(s) per message: %d messages acknowledged in %.1fs = %.0f msg/s = %.0f readings/s\n",
			*mqttConns, per, m, mel.Seconds(), float64(m)/mel.Seconds(), float64(m*int64(per))/mel.Seconds())
	}
	fmt.Printf("serve peak RSS (whole run): %d MB\n", benchrun.PeakRSS(cmd.Process.Pid)/1024)

	rn, rel := benchReference(*clients, *duration)
	fmt.Printf("reference: one JetStream message per reading, SyncAlways, %d publishers: %d readings in %.1fs = %.0f readings/s\n", *clients, rn, rel.Seconds(), float64(rn)/rel.Seconds())
}

// readings makes n NDJSON readings of blood pressure, unique by (device, time).
func readings(rng *rand.Rand, client, seq, n int) []byte {
	var b bytes.Buffer
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"subject":"patient-%d","device":"bp-%d-%d","kind":"blood_pressure","time":%d,"values":{"systolic":%d,"diastolic":%d,"pulse":%d}}`+"\n",
			rng.IntN(1000), client, i%50, base+int64(seq*n+i), 110+rng.IntN(60), 60+rng.IntN(40), 55+rng.IntN(40))
	}
	return b.Bytes()
}

func benchHTTP(url string, batch, clients int, d time.Duration) (int64, []time.Duration, time.Duration) {
	var total atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			hc := &http.Client{Timeout: 30 * time.Second}
			// Pre-generate bodies so the generator does not compete for CPU while timing.
			bodies := make([][]byte, 64)
			for i := range bodies {
				bodies[i] = readings(rng, c, i, batch)
			}
			for seq := 0; time.Since(start) < d; seq++ {
				body := bodies[seq%len(bodies)]
				if seq >= len(bodies) { // fresh readings: shift times so they are not duplicates
					body = bytes.ReplaceAll(body, []byte(`"device":"bp-`), []byte(`"device":"b`+strconv.Itoa(seq)+`-`))
				}
				t0 := time.Now()
				req, _ := http.NewRequest("POST", url+"/v1/readings", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-ndjson")
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := hc.Do(req)
				if err != nil {
					continue
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 202 {
					if resp.StatusCode != 429 {
						fmt.Fprintf(os.Stderr, "status %d: %s\n", resp.StatusCode, data)
					}
					continue
				}
				el := time.Since(t0)
				total.Add(int64(batch))
				mu.Lock()
				lat = append(lat, el)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return total.Load(), lat, time.Since(start)
}

func benchMQTT(addr string, conns, per int, d time.Duration) (int64, time.Duration) {
	var total atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("bench-%d-%d", per, c)).
				SetUsername("bench").SetPassword(token).SetCleanSession(true).SetProtocolVersion(4)
			cl := mqtt.NewClient(opts)
			if t := cl.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
				fmt.Fprintln(os.Stderr, "mqtt connect:", t.Error())
				return
			}
			defer cl.Disconnect(100)
			rng := rand.New(rand.NewPCG(uint64(c), 2))
			base := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
			window := make([]mqtt.Token, 0, 256)
			for i := 0; time.Since(start) < d; i++ {
				parts := make([]string, per)
				for j := range parts {
					parts[j] = fmt.Sprintf(`{"subject":"patient-%d","time":%d,"values":{"bpm":%d}}`, c, base+int64(i*per+j), 50+rng.IntN(100))
				}
				payload := parts[0]
				if per > 1 {
					payload = "[" + strings.Join(parts, ",") + "]"
				}
				window = append(window, cl.Publish(fmt.Sprintf("readings/heart_rate/hr-%d-%d", per, c), 1, false, payload))
				if len(window) == cap(window) {
					for _, t := range window {
						if t.WaitTimeout(30*time.Second) && t.Error() == nil {
							total.Add(1)
						}
					}
					window = window[:0]
				}
			}
			for _, t := range window {
				if t.WaitTimeout(30*time.Second) && t.Error() == nil {
					total.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return total.Load(), time.Since(start)
}

func benchReference(clients int, d time.Duration) (int64, time.Duration) {
	dir, _ := os.MkdirTemp("", "pulselake-bench-ref-")
	defer os.RemoveAll(dir)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: dir})
	benchrun.Must(err)
	defer srv.Shutdown(context.Background())
	nc, err := nats.Connect("", nats.InProcessServer(srv.NATS()))
	benchrun.Must(err)
	defer nc.Close()
	js, _ := nc.JetStream(nats.PublishAsyncMaxPending(4096))
	_, err = js.AddStream(&nats.StreamConfig{Name: "REF", Subjects: []string{"ref.>"}, Storage: nats.FileStorage, Duplicates: 2 * time.Minute})
	benchrun.Must(err)
	var total atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 3))
			lines := strings.Split(strings.TrimSpace(string(readings(rng, c, 0, 1000))), "\n")
			for i := 0; time.Since(start) < d; i++ {
				m := nats.NewMsg("ref.bp")
				m.Data = []byte(lines[i%len(lines)])
				m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("%d-%d", c, i))
				if _, err := js.PublishMsg(m); err == nil {
					total.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return total.Load(), time.Since(start)
}
