// Command cluster benchmarks pulselake on one node against a three-node `serve --cluster`, in
// one run on one machine: HTTP ingest (NDJSON batches) and MQTT QoS 1 (one reading per
// message, many device connections), each spread over every node, and on the cluster the
// freshness of readings (from the HTTP acknowledgement on one node until a query on another
// node sees them in the lake). Every node is a separate process with its own data directory;
// the lake is a file:// warehouse and SQLite catalog the nodes share (one machine).
//
//	go run ./bench/cluster -bin ./pulselake -duration 20s
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/pulselake/pulselake/bench/benchrun"
)

const token = "plk_bench-admin-token-0123456789abcdef"

func main() {
	bin := flag.String("bin", "./pulselake", "pulselake binary")
	duration := flag.Duration("duration", 20*time.Second, "length of each phase")
	batch := flag.Int("batch", 1000, "readings per HTTP request")
	clients := flag.Int("clients", 8, "concurrent HTTP clients (spread over the nodes)")
	devices := flag.Int("devices", 300, "MQTT device connections (spread over the nodes)")
	samples := flag.Int("freshness-samples", 20, "readings timed from acknowledgement to query")
	flag.Parse()

	fmt.Printf("pulselake cluster benchmark, %s, %d CPUs\n", time.Now().UTC().Format(time.RFC3339), runtime.NumCPU())
	for _, n := range []int{1, 3} {
		nodes, stop := start(*bin, n)
		mode := "one node (serve), fsync every write (SyncAlways)"
		if n == 3 {
			mode = "three nodes (serve --cluster), R3, acked after quorum, fsync every 2 min"
		}
		var https, mqtts []string
		for _, nd := range nodes {
			https, mqtts = append(https, "http://"+nd.http), append(mqtts, nd.mqtt)
		}
		r, lat, el := benchHTTP(https, *batch, *clients, *duration)
		fmt.Printf("%s: HTTP NDJSON %d/request, %d clients: %.0f readings/s, p50 %.0f ms, p99 %.0f ms\n",
			mode, *batch, *clients, float64(r)/el.Seconds(), benchrun.Ms(benchrun.Percentile(lat, 50)), benchrun.Ms(benchrun.Percentile(lat, 99)))
		m, mel := benchMQTT(mqtts, *devices, *duration)
		fmt.Printf("%s: MQTT QoS 1, %d devices, 1 reading/message: %.0f msg/s\n", mode, *devices, float64(m)/mel.Seconds())
		if n == 3 {
			f := freshness(https, *samples)
			fmt.Printf("%s: freshness (ack on one node → visible to a query on another), %d samples: p50 %.1f s, p99 %.1f s\n",
				mode, len(f), benchrun.Percentile(f, 50).Seconds(), benchrun.Percentile(f, 99).Seconds())
		}
		var rss []string
		for _, nd := range nodes {
			rss = append(rss, fmt.Sprintf("%d MB", benchrun.PeakRSS(nd.cmd.Process.Pid)/1024))
		}
		fmt.Printf("%s: peak RSS per node: %s\n", mode, strings.Join(rss, ", "))
		stop()
	}
}

type node struct {
	http, mqtt string
	cmd        *exec.Cmd
}

// start runs n serve processes (n > 1: a cluster) and waits until every one is ready.
func start(bin string, n int) ([]*node, func()) {
	dir, err := os.MkdirTemp("", "pulselake-bench-cluster-")
	benchrun.Must(err)
	var routes []string
	ports := make([]string, n)
	for i := range ports {
		ports[i] = benchrun.FreeAddr()
		routes = append(routes, "nats://"+ports[i])
	}
	lake := filepath.Join(dir, "lake")
	benchrun.Must(os.MkdirAll(lake, 0o700))
	var nodes []*node
	for i := range n {
		nd := &node{http: benchrun.FreeAddr(), mqtt: benchrun.FreeAddr()}
		conf := fmt.Sprintf("mqtt: {listen: %s}\nlake:\n  warehouse: file://%s\n  catalog: {type: sql, uri: %s}\n", nd.mqtt, lake, filepath.Join(lake, "catalog.db"))
		args := []string{"serve", "--data", filepath.Join(dir, fmt.Sprint(i)), "--http", nd.http}
		if n > 1 {
			conf += fmt.Sprintf("cluster:\n  node_name: node-%d\n  listen: %s\n  routes: [%s]\n", i, ports[i], strings.Join(routes, ", "))
			args = append(args, "--cluster")
		}
		cf := filepath.Join(dir, fmt.Sprintf("node-%d.yaml", i))
		benchrun.Must(os.WriteFile(cf, []byte(conf), 0o600))
		nd.cmd = exec.Command(bin, append(args, "--config", cf)...)
		nd.cmd.Env = append(os.Environ(), "PULSELAKE_ADMIN_TOKEN="+token)
		logf, _ := os.Create(filepath.Join(dir, fmt.Sprintf("node-%d.log", i)))
		nd.cmd.Stdout, nd.cmd.Stderr = logf, logf
		benchrun.Must(nd.cmd.Start())
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		benchrun.WaitReady("http://"+nd.http, 5*time.Minute)
	}
	return nodes, func() {
		for _, nd := range nodes {
			nd.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, nd := range nodes {
			nd.cmd.Wait()
		}
		os.RemoveAll(dir)
	}
}

var seq atomic.Int64 // makes every reading unique across phases

// readings makes n NDJSON heart-rate readings, unique by (device, time).
func readings(rng *rand.Rand, n int) []byte {
	var b bytes.Buffer
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	s := seq.Add(int64(n)) - int64(n)
	for i := range n {
		fmt.Fprintf(&b, `{"subject":"patient-%d","device":"hr-%d","kind":"heart_rate","time":%d,"values":{"bpm":%d}}`+"\n",
			rng.IntN(1000), (s+int64(i))%5000, base+s+int64(i), 50+rng.IntN(100))
	}
	return b.Bytes()
}

func post(hc *http.Client, url string, body []byte) (int, error) {
	req, _ := http.NewRequest("POST", url+"/v1/readings", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func benchHTTP(urls []string, batch, clients int, d time.Duration) (int64, []time.Duration, time.Duration) {
	var total atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			hc := &http.Client{Timeout: 60 * time.Second}
			url := urls[c%len(urls)]
			for time.Since(start) < d {
				body := readings(rng, batch)
				t0 := time.Now()
				code, err := post(hc, url, body)
				if err != nil || code != http.StatusAccepted {
					continue
				}
				total.Add(int64(batch))
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return total.Load(), lat, time.Since(start)
}

// benchMQTT publishes QoS 1 messages from many device connections, each keeping up to 64
// unacknowledged, and counts the acknowledged ones.
func benchMQTT(addrs []string, devices int, d time.Duration) (int64, time.Duration) {
	var total atomic.Int64
	var wg sync.WaitGroup
	var clients []mqtt.Client
	for c := range devices {
		opts := mqtt.NewClientOptions().AddBroker("tcp://" + addrs[c%len(addrs)]).SetClientID(fmt.Sprintf("dev-%d-%d", c, time.Now().UnixNano())).
			SetUsername("bench").SetPassword(token).SetCleanSession(true).SetProtocolVersion(4)
		cl := mqtt.NewClient(opts)
		if t := cl.Connect(); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
			fmt.Fprintln(os.Stderr, "mqtt connect:", t.Error())
			continue
		}
		clients = append(clients, cl)
	}
	start := time.Now()
	for c, cl := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 2))
			base := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
			window := make([]mqtt.Token, 0, 64)
			wait := func() {
				for _, t := range window {
					if t.WaitTimeout(30*time.Second) && t.Error() == nil {
						total.Add(1)
					}
				}
				window = window[:0]
			}
			for i := 0; time.Since(start) < d; i++ {
				payload := fmt.Sprintf(`{"subject":"patient-%d","time":%d,"values":{"bpm":%d}}`, c, base+seq.Add(1), 50+rng.IntN(100))
				window = append(window, cl.Publish(fmt.Sprintf("readings/heart_rate/dev-%d", c), 1, false, payload))
				if len(window) == cap(window) {
					wait()
				}
			}
			wait()
		})
	}
	wg.Wait()
	el := time.Since(start)
	for _, cl := range clients {
		cl.Disconnect(100)
	}
	return total.Load(), el
}

// freshness posts one reading at a time to node i and polls node i+1 until a query sees it.
func freshness(urls []string, samples int) []time.Duration {
	hc := &http.Client{Timeout: 30 * time.Second}
	var out []time.Duration
	for i := range samples {
		dev := fmt.Sprintf("fresh-%d-%d", i, time.Now().UnixNano())
		body := fmt.Appendf(nil, `{"subject":"fresh","device":%q,"kind":"heart_rate","time":%d,"values":{"bpm":70}}`+"\n", dev, time.Now().UnixMilli())
		if code, err := post(hc, urls[i%len(urls)], body); err != nil || code != http.StatusAccepted {
			continue
		}
		acked := time.Now()
		for time.Since(acked) < time.Minute {
			if count(hc, urls[(i+1)%len(urls)], "SELECT count(*) FROM heart_rate WHERE device = '"+dev+"'") == 1 {
				out = append(out, time.Since(acked))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return out
}

func count(hc *http.Client, url, sql string) int {
	body, _ := json.Marshal(map[string]string{"sql": sql})
	req, _ := http.NewRequest("POST", url+"/v1/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var out struct{ Rows [][]any }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil || len(out.Rows) != 1 {
		return -1
	}
	if f, ok := out.Rows[0][0].(float64); ok {
		return int(f)
	}
	return -1
}
