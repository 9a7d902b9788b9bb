// Command cluster benchmarks pulselake on one node against a three-node `serve --cluster`, in
// one run on one machine: HTTP ingest (NDJSON batches) and MQTT QoS 1 (one reading per
// message, many device connections, each with a window of unacknowledged PUBLISH packets),
// each spread over every node, and on the cluster the freshness of readings (from the HTTP
// acknowledgement on one node until a query on another node sees them in the lake). Every
// node is a separate process with its own data directory; the lake is a file:// warehouse and
// SQLite catalog the nodes share (one machine). For every phase it reports each node's CPU
// time and the load generator's, per 1,000 readings or messages, and the load average, since
// three nodes on one machine share its CPUs; after an MQTT phase, how long pulselake took to
// move every acknowledged message into the ingest stream, and the rate into the ingest stream
// over the load and that catch-up (what the lake, rules and detectors see).
//
//	go build -o pulselake ./cmd/pulselake
//	go run ./bench/cluster -bin ./pulselake -duration 20s
//
// -nodes 3 -phases mqtt runs one setup and phase alone; -profile DIR saves a CPU profile of
// every node during each MQTT and move phase. The move phase (-phases move, not run by
// default) measures pulselake's move from the MQTT store into the ingest stream alone: its
// consumer is paused while -move-messages messages are published straight into the MQTT
// store over NATS, then resumed and timed until it has nothing left.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pulselake/pulselake/bench/benchrun"
)

const token = "plk_bench-admin-token-0123456789abcdef"

func main() {
	bin := flag.String("bin", "./pulselake", "pulselake binary")
	duration := flag.Duration("duration", 20*time.Second, "length of each load phase")
	batch := flag.Int("batch", 1000, "readings per HTTP request")
	clients := flag.Int("clients", 8, "concurrent HTTP clients (spread over the nodes)")
	devices := flag.Int("devices", 300, "MQTT device connections (spread over the nodes)")
	inflight := flag.Int("inflight", 16, "QoS 1 PUBLISH packets each device keeps unacknowledged (devices × inflight deep queues stall one node: docs/benchmarks.md, Cluster)")
	flag.IntVar(&connectAtOnce, "connect-parallel", 1, "MQTT connections opened at once")
	samples := flag.Int("freshness-samples", 20, "readings timed from acknowledgement to query")
	sizes := flag.String("nodes", "1,3", "setups to run: 1 (serve) and/or 3 (serve --cluster)")
	phases := flag.String("phases", "http,mqtt,freshness", "phases to run, in this order (also: move)")
	moveN := flag.Int("move-messages", 400000, "messages the move phase stores in the MQTT store")
	profile := flag.String("profile", "", "directory for a CPU profile of every node during each MQTT phase")
	flag.BoolVar(&keep, "keep", false, "keep the nodes' data directories and logs (the path is printed)")
	flag.Parse()

	want := func(list, item string) bool { return slices.Contains(strings.Split(list, ","), item) }
	fmt.Printf("pulselake cluster benchmark, %s, %d CPUs, %s\n", time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), loadavg())
	fmt.Println("CPU: seconds of user+system time per process during the phase (/proc/<pid>/stat); load: 1-minute load average at the end of the phase")
	var rows []string
	for _, n := range []int{1, 3} {
		if !want(*sizes, fmt.Sprint(n)) {
			continue
		}
		nodes, stop := start(*bin, n)
		mode := "one node (serve), fsync every write"
		if n == 3 {
			mode = "three nodes (serve --cluster), R3, acked by a quorum"
		}
		var https, mqtts []string
		for _, nd := range nodes {
			https, mqtts = append(https, "http://"+nd.http), append(mqtts, nd.mqtt)
		}
		if want(*phases, "http") {
			cpu := sampleCPU(nodes)
			r, lat, el := benchHTTP(https, *batch, *clients, *duration)
			used := cpu()
			rate := float64(r) / el.Seconds()
			fmt.Printf("%s: HTTP NDJSON %d/request, %d clients: %.0f readings/s, p50 %.0f ms, p99 %.0f ms; %s\n",
				mode, *batch, *clients, rate, benchrun.Ms(benchrun.Percentile(lat, 50)), benchrun.Ms(benchrun.Percentile(lat, 99)), used.per(r, 1000, "readings"))
			rows = append(rows, fmt.Sprintf("| %s | HTTP, %d × %d readings/request | %.0f readings/s | p99 %.0f ms | %s | %s |",
				mode, *clients, *batch, rate, benchrun.Ms(benchrun.Percentile(lat, 99)), used.perNode(r, 1000), used.load))
		}
		if want(*phases, "mqtt") {
			// Start from an idle system: the lake writer and the other consumers done with what
			// the HTTP phase stored, so that the phases do not measure each other.
			fmt.Printf("%s: consumers caught up %.1f s after the previous phase\n", mode, waitDrained(https[0], "", 90*time.Second).Seconds())
			t0 := time.Now()
			devs := connectDevices(mqtts, *devices)
			fmt.Printf("%s: %d of %d MQTT devices connected in %.1f s\n", mode, len(devs), *devices, time.Since(t0).Seconds())
			cpu, cpuAll := sampleCPU(nodes), sampleCPU(nodes)
			var stopProf func()
			if *profile != "" {
				stopProf = profileNodes(nodes, *profile, fmt.Sprintf("mqtt-%dnode", n), *duration)
			}
			m, failed, el := benchMQTT(devs, *inflight, *duration)
			if stopProf != nil {
				stopProf()
			}
			used := cpu()
			for _, dv := range devs {
				dv.close()
			}
			rate := float64(m) / el.Seconds()
			fmt.Printf("%s: MQTT QoS 1, %d devices × %d in flight, 1 reading/message: %.0f msg/s acknowledged (%d not acknowledged); %s\n",
				mode, len(devs), *inflight, rate, failed, used.per(m, 1000, "messages"))
			left := backlog(https[0], `consumer="ingest-mqtt"`)
			drain := waitDrained(https[0], `consumer="ingest-mqtt"`, 5*time.Minute)
			all := cpuAll()
			into := float64(m) / (el + drain).Seconds()
			fmt.Printf("%s: MQTT messages all moved into the ingest stream %.1f s after the load ended (%d not yet moved when it ended): %.0f msg/s into the ingest stream over load and catch-up; with the catch-up %s\n",
				mode, drain.Seconds(), left, into, all.per(m, 1000, "messages"))
			rows = append(rows, fmt.Sprintf("| %s | MQTT QoS 1, %d devices × %d in flight | %.0f msg/s acknowledged, %.0f msg/s into the ingest stream | in the ingest stream %.1f s after the end | %s, with the catch-up %s | %s |",
				mode, *devices, *inflight, rate, into, drain.Seconds(), used.perNode(m, 1000), all.perNode(m, 1000), used.load))
		}
		if want(*phases, "move") {
			// The move alone, from a backlog: pulselake's consumer of the MQTT store is paused
			// while the store fills, then resumed; the time until it has nothing left is the move's.
			fmt.Printf("%s: consumers caught up %.1f s after the previous phase\n", mode, waitDrained(https[0], "", 90*time.Second).Seconds())
			var natss []string
			for _, nd := range nodes {
				natss = append(natss, nd.nats)
			}
			js := pauseMove(natss[0])
			stored, el := fillMQTTStore(natss, *moveN, *devices)
			fmt.Printf("%s: move: %d messages stored in the MQTT store in %.1f s (%.0f msg/s) with pulselake's consumer paused\n",
				mode, stored, el.Seconds(), float64(stored)/el.Seconds())
			cpu := sampleCPU(nodes)
			var stopProf func()
			if *profile != "" {
				stopProf = profileNodes(nodes, *profile, fmt.Sprintf("move-%dnode", n), *duration)
			}
			resumeMove(js)
			drain := waitDrained(https[0], `consumer="ingest-mqtt"`, 10*time.Minute)
			used := cpu()
			if stopProf != nil {
				stopProf()
			}
			fmt.Printf("%s: move: all %d in the ingest stream %.1f s after the consumer resumed: %.0f msg/s into the ingest stream; %s\n",
				mode, stored, drain.Seconds(), float64(stored)/drain.Seconds(), used.per(stored, 1000, "messages"))
			rows = append(rows, fmt.Sprintf("| %s | move of a backlog of %d messages from the MQTT store | %.0f msg/s into the ingest stream | all moved %.1f s after the start | %s | %s |",
				mode, stored, float64(stored)/drain.Seconds(), drain.Seconds(), used.perNode(stored, 1000), used.load))
		}
		if n == 3 && want(*phases, "freshness") {
			waitDrained(https[0], "", 90*time.Second)
			f, refused, unseen := freshness(https, *samples)
			fmt.Printf("%s: freshness (ack on one node → visible to a query on another), %d samples: p50 %.1f s, p99 %.1f s; %d not accepted, %d not visible within a minute\n",
				mode, len(f), benchrun.Percentile(f, 50).Seconds(), benchrun.Percentile(f, 99).Seconds(), refused, unseen)
			rows = append(rows, fmt.Sprintf("| %s | freshness, %d readings (%d not accepted, %d not visible within a minute), ack on one node → query on another | p50 %.1f s | p99 %.1f s | — | %s |",
				mode, len(f), refused, unseen, benchrun.Percentile(f, 50).Seconds(), benchrun.Percentile(f, 99).Seconds(), loadavg()))
		}
		var rss []string
		for _, nd := range nodes {
			rss = append(rss, fmt.Sprintf("%d MB", benchrun.PeakRSS(nd.cmd.Process.Pid)/1024))
		}
		fmt.Printf("%s: peak RSS per node: %s\n", mode, strings.Join(rss, ", "))
		stop()
	}
	fmt.Println("\n| setup | load | rate | latency / catch-up | CPU-s per 1,000 per node (load generator) | load average |\n|---|---|---|---|---|---|")
	fmt.Println(strings.Join(rows, "\n"))
}

// usage is the CPU time each node and this process (the load generator) spent in a phase.
type usage struct {
	nodes []float64 // CPU-seconds per node
	self  float64   // CPU-seconds of the load generator
	wall  time.Duration
	load  string
}

func (u usage) per(n int64, unit float64, what string) string {
	var parts []string
	total := 0.0
	for _, s := range u.nodes {
		parts = append(parts, fmt.Sprintf("%.1f", s))
		total += s
	}
	return fmt.Sprintf("CPU-s per node %s (%.2f per 1,000 %s in all), load generator %.1f CPU-s, wall %.1f s, %s",
		strings.Join(parts, " / "), total/float64(max(n, 1))*unit, what, u.self, u.wall.Seconds(), u.load)
}

func (u usage) perNode(n int64, unit float64) string {
	var parts []string
	for _, s := range u.nodes {
		parts = append(parts, fmt.Sprintf("%.3f", s/float64(max(n, 1))*unit))
	}
	return fmt.Sprintf("%s (%.3f)", strings.Join(parts, " / "), u.self/float64(max(n, 1))*unit)
}

// sampleCPU notes the CPU time of every node and of this process; the function it returns
// reports what each spent since.
func sampleCPU(nodes []*node) func() usage {
	before := make([]float64, len(nodes))
	for i, nd := range nodes {
		before[i] = procCPU(nd.cmd.Process.Pid)
	}
	self0, t0 := selfCPU(), time.Now()
	return func() usage {
		u := usage{self: selfCPU() - self0, wall: time.Since(t0), load: loadavg()}
		for i, nd := range nodes {
			u.nodes = append(u.nodes, procCPU(nd.cmd.Process.Pid)-before[i])
		}
		return u
	}
}

// procCPU is a process's user+system CPU time in seconds (/proc/<pid>/stat, clock ticks of
// 1/100 s, as on every Linux this runs on).
func procCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after it are counted from ')'.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load ?"
	}
	f := strings.Fields(string(data))
	return "load " + strings.Join(f[:3], " ")
}

// profileNodes takes a CPU profile of every node over most of the phase, written to
// dir/<name>-node<i>.pprof; the function it returns waits for them.
func profileNodes(nodes []*node, dir, name string, d time.Duration) func() {
	benchrun.Must(os.MkdirAll(dir, 0o755))
	secs := max(1, int((d-2*time.Second)/time.Second))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Go(func() {
			time.Sleep(time.Second)
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", nd.http, secs), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				fmt.Fprintln(os.Stderr, "profile:", err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-node%d.pprof", name, i)))
			benchrun.Must(err)
			io.Copy(f, resp.Body)
			f.Close()
		})
	}
	return wg.Wait
}

// waitDrained waits until the durable consumers whose metric lines contain match (every one
// for "") have nothing pending or unacknowledged, and returns how long that took; it gives
// up after limit. For consumer="ingest-mqtt": every acknowledged MQTT message is in the
// ingest stream.
func waitDrained(url, match string, limit time.Duration) time.Duration {
	t0 := time.Now()
	for time.Since(t0) < limit {
		if backlog(url, match) == 0 {
			return time.Since(t0)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "consumers %s not caught up after %s\n", match, limit)
	return time.Since(t0)
}

// backlog is the pending plus unacknowledged messages of the durable consumers whose metric
// lines contain match, from /metrics; -1 if unknown.
func backlog(url, match string) int {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	total, seen := 0, false
	for line := range strings.SplitSeq(string(data), "\n") {
		if !(strings.HasPrefix(line, "pulselake_stream_pending_messages{") || strings.HasPrefix(line, "pulselake_stream_ack_pending_messages{")) ||
			!strings.Contains(line, match) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return -1
		}
		total, seen = total+int(v), true
	}
	if !seen {
		return -1
	}
	return total
}

type node struct {
	http, mqtt, nats string
	cmd              *exec.Cmd
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
		nd := &node{http: benchrun.FreeAddr(), mqtt: benchrun.FreeAddr(), nats: benchrun.FreeAddr()}
		conf := fmt.Sprintf("mqtt: {listen: %s}\nnats: {listen: %s}\nlake:\n  warehouse: file://%s\n  catalog: {type: sql, uri: %s}\n", nd.mqtt, nd.nats, lake, filepath.Join(lake, "catalog.db"))
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
		if keep {
			fmt.Println("kept the nodes' data and logs in", dir)
			return
		}
		os.RemoveAll(dir)
	}
}

var keep bool

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

// pauseMove pauses pulselake's consumer of the MQTT store (ingest-mqtt) for up to ten
// minutes; resumeMove resumes it.
func pauseMove(addr string) jetstream.JetStream {
	nc, err := nats.Connect("nats://"+addr, nats.UserInfo("bench", token))
	benchrun.Must(err)
	js, err := jetstream.New(nc)
	benchrun.Must(err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.PauseConsumer(ctx, "$MQTT_msgs", "ingest-mqtt", time.Now().Add(10*time.Minute))
	benchrun.Must(err)
	return js
}

func resumeMove(js jetstream.JetStream) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := js.ResumeConsumer(ctx, "$MQTT_msgs", "ingest-mqtt")
	benchrun.Must(err)
	js.Conn().Close()
}

// fillMQTTStore stores n one-reading messages in the MQTT store ($MQTT_msgs) as the MQTT
// listener does for a QoS 1 PUBLISH, but published straight into the stream over NATS (one
// connection per node, each keeping many publishes unacknowledged), so that the store fills
// faster than devices could fill it and pulselake's move into the ingest stream is what is
// measured. It returns how many were stored (acknowledged) and how long storing them took.
func fillMQTTStore(addrs []string, n, devices int) (int64, time.Duration) {
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i, addr := range addrs {
		wg.Go(func() {
			nc, err := nats.Connect("nats://"+addr, nats.UserInfo("bench", token))
			benchrun.Must(err)
			defer nc.Close()
			js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096),
				jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
					if failed.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "publish not stored:", err)
					}
				}))
			benchrun.Must(err)
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			base := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC).UnixMilli()
			for j := i; j < n; j += len(addrs) {
				dev := j % devices
				payload := fmt.Sprintf(`{"subject":"patient-%d","time":%d,"values":{"bpm":%d}}`, dev, base+seq.Add(1), 50+rng.IntN(100))
				if _, err := js.PublishAsync(fmt.Sprintf("$MQTT.msgs.readings.heart_rate.dev-%d", dev), []byte(payload)); err != nil {
					if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) { // stalled: the window is full, wait
						fmt.Fprintln(os.Stderr, "publish:", err)
						time.Sleep(100 * time.Millisecond)
					}
					j -= len(addrs)
					continue
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				fmt.Fprintln(os.Stderr, "publishes not acknowledged within a minute:", js.PublishAsyncPending())
			}
		})
	}
	wg.Wait()
	return int64(n) - failed.Load(), time.Since(start)
}

// connectAtOnce is how many MQTT connections connectDevices opens at once.
var connectAtOnce = 1

// freshness posts one reading at a time to node i and polls node i+1 until a query sees it.
// It returns the delays of the readings seen, and counts those not accepted (an error or a
// status other than 202) and those accepted but not visible within a minute.
func freshness(urls []string, samples int) (out []time.Duration, refused, unseen int) {
	hc := &http.Client{Timeout: 30 * time.Second}
	for i := range samples {
		dev := fmt.Sprintf("fresh-%d-%d", i, time.Now().UnixNano())
		body := fmt.Appendf(nil, `{"subject":"fresh","device":%q,"kind":"heart_rate","time":%d,"values":{"bpm":70}}`+"\n", dev, time.Now().UnixMilli())
		if code, err := post(hc, urls[i%len(urls)], body); err != nil || code != http.StatusAccepted {
			refused++
			continue
		}
		acked, seen := time.Now(), false
		for !seen && time.Since(acked) < time.Minute {
			if seen = count(hc, urls[(i+1)%len(urls)], "SELECT count(*) FROM heart_rate WHERE device = '"+dev+"'") == 1; seen {
				out = append(out, time.Since(acked))
			} else {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if !seen {
			unseen++
		}
	}
	return out, refused, unseen
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
