package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterNode is one `pulselake serve --cluster` process of a three-node cluster.
type clusterNode struct {
	name, dir, conf, http, mqtt string
	logPath                     string
	cmd                         *exec.Cmd
	done                        chan struct{}
}

func (n *clusterNode) start(t *testing.T, bin string) {
	t.Helper()
	n.cmd = exec.Command(bin, "serve", "--cluster", "--data", n.dir, "--config", n.conf, "--http", n.http)
	n.cmd.Env = append(os.Environ(), "PULSELAKE_ADMIN_TOKEN="+adminToken)
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(logf, "---- start %s\n", time.Now().Format(time.RFC3339Nano))
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func() { n.cmd.Wait(); logf.Close(); close(n.done) }()
}

// ready reports whether /readyz answers 200.
func (n *clusterNode) ready() bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + n.http + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (n *clusterNode) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !n.ready() {
		select {
		case <-n.done:
			t.Fatalf("%s exited while starting:\n%s", n.name, tail(n.logPath))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready in 3m:\n%s", n.name, tail(n.logPath))
		}
		time.Sleep(100 * time.Millisecond) // polling for readiness, bounded by the deadline
	}
}

// signal sends sig and waits for the process to end.
func (n *clusterNode) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(2 * time.Minute):
		n.cmd.Process.Kill()
		<-n.done
		t.Fatalf("%s did not stop on %s in 2m", n.name, sig)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 12000 {
		b = b[len(b)-12000:]
	}
	return string(b)
}

// nodeQuery runs sql on a node; ok is false while the node or the query fails.
func nodeQuery(addr, sql string) (rows [][]any, ok bool) {
	body, _ := json.Marshal(map[string]string{"sql": sql})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	var out struct{ Rows [][]any }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return nil, false
	}
	return out.Rows, true
}

// lakeConsumerState describes the lake writer's cursor consumer as n sees it (for a failure:
// its ack floor is the committed position; what is pending after it; where its leader is).
func lakeConsumerState(n *clusterNode) string {
	data, err := os.ReadFile(filepath.Join(n.dir, "serve.json"))
	if err != nil {
		return err.Error()
	}
	var info struct{ NATS, User, Password string }
	if err := json.Unmarshal(data, &info); err != nil {
		return err.Error()
	}
	nc, err := nats.Connect(info.NATS, nats.UserInfo(info.User, info.Password))
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, "INGEST", "lake")
	if err != nil {
		return err.Error()
	}
	ci := c.CachedInfo()
	leader := ""
	if ci.Cluster != nil {
		leader = ci.Cluster.Leader
	}
	return fmt.Sprintf("created %s, delivered %d, ack floor %d, ack-pending %d, redelivered %d, pending %d, waiting pulls %d, ack wait %s, leader %s",
		ci.Created.Format(time.RFC3339Nano), ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumAckPending, ci.NumRedelivered,
		ci.NumPending, ci.NumWaiting, ci.Config.AckWait, leader)
}

// natsOf connects to a node's embedded NATS server with its internal user (serve.json).
func natsOf(t *testing.T, n *clusterNode) *nats.Conn {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(n.dir, "serve.json"))
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ NATS, User, Password string }
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(info.NATS, nats.UserInfo(info.User, info.Password))
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// leaseHolder is the node whose process holds the named lease (its value is host/pid/nanos).
func leaseHolder(t *testing.T, nodes []*clusterNode, via *clusterNode, key string) *clusterNode {
	t.Helper()
	nc := natsOf(t, via)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var holder *clusterNode
	waitUntil(t, time.Minute, "a node holds lease "+key, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, "pulselake_leases")
		if err != nil {
			return false
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			return false
		}
		parts := strings.Split(string(e.Value()), "/")
		for _, n := range nodes {
			if len(parts) == 3 && n.cmd.Process != nil && parts[1] == strconv.Itoa(n.cmd.Process.Pid) && n.ready() {
				holder = n
				return true
			}
		}
		return false
	})
	return holder
}

// clusterLoad sends readings to the cluster over HTTP and MQTT until stopped, and records
// the device of every reading the cluster acknowledged (each reading has its own device).
type clusterLoad struct {
	mu    sync.Mutex
	acked map[string]bool
	stop  chan struct{}
	wg    sync.WaitGroup
	sent  int
}

func (l *clusterLoad) ack(devs ...string) {
	l.mu.Lock()
	for _, d := range devs {
		l.acked[d] = true
	}
	l.mu.Unlock()
}

func (l *clusterLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func heartRate(device string, at time.Time, bpm int) []byte {
	return fmt.Appendf(nil, `{"subject":"patient-%s","device":%q,"kind":"heart_rate","time":%d,"values":{"bpm":%d}}`,
		device[len(device)-1:], device, at.UnixMilli(), bpm)
}

// startLoad sends a batch of 20 readings every 20 ms, round robin over the nodes, and one
// QoS 1 MQTT message every 10 ms through a client that knows every node's MQTT listener.
func startLoad(t *testing.T, nodes []*clusterNode) *clusterLoad {
	l := &clusterLoad{acked: map[string]bool{}, stop: make(chan struct{})}
	base := time.Now().Add(-10 * time.Minute)
	l.wg.Go(func() {
		c := http.Client{Timeout: 20 * time.Second}
		for b := 0; ; b++ {
			select {
			case <-l.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var body bytes.Buffer
			devs := make([]string, 20)
			for j := range devs {
				devs[j] = fmt.Sprintf("h-%d-%d", b, j)
				body.Write(heartRate(devs[j], base.Add(time.Duration(b*20+j)*time.Millisecond), 60+j))
				body.WriteByte('\n')
			}
			req, _ := http.NewRequest(http.MethodPost, "http://"+nodes[b%len(nodes)].http+"/v1/readings", &body)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			req.Header.Set("Content-Type", "application/x-ndjson")
			resp, err := c.Do(req)
			if err != nil {
				continue // the node is down: not acknowledged
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				l.ack(devs...)
			}
		}
	})
	opts := mqtt.NewClientOptions().SetClientID("cluster-e2e").SetUsername("e2e").SetPassword(adminToken).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).
		SetMaxReconnectInterval(time.Second).SetConnectTimeout(2 * time.Second)
	for _, n := range nodes {
		opts.AddBroker("tcp://" + n.mqtt)
	}
	mc := mqtt.NewClient(opts)
	mc.Connect().WaitTimeout(10 * time.Second)
	l.wg.Go(func() {
		defer mc.Disconnect(100)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if !mc.IsConnectionOpen() {
				continue
			}
			dev := fmt.Sprintf("m-%d", i)
			tk := mc.Publish("readings/heart_rate/"+dev, 1, false, heartRate(dev, base.Add(time.Duration(i)*time.Millisecond), 70))
			if tk.WaitTimeout(10*time.Second) && tk.Error() == nil {
				l.ack(dev)
			}
		}
	})
	return l
}

func (l *clusterLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

// TestClusterSurvivesNodeLoss runs three `serve --cluster` processes with their lake on S3
// (versitygw) and the Iceberg catalog on PostgreSQL. While readings arrive over HTTP and MQTT
// on every node it SIGKILLs one node, then the node holding the lake-writer lease, each
// restarted afterwards, and then restarts all three one by one (SIGTERM). It checks that
// queries answer on the survivors, that every acknowledged reading is in the lake exactly
// once, that every alert was notified exactly once (a webhook counts), and that the killed
// nodes caught up with the stream.
func TestClusterSurvivesNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("three serve processes, PostgreSQL and versitygw (-short)")
	}
	endpoint, bucket := startVersitygw(t)
	dsn := startPostgres(t)
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}

	var (
		hookMu   sync.Mutex
		notified = map[string]int{} // device → firing notifications
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Alerts []struct {
				Status string
				Labels map[string]string
			}
		}
		json.NewDecoder(r.Body).Decode(&msg)
		hookMu.Lock()
		for _, a := range msg.Alerts {
			if a.Status == "firing" {
				notified[a.Labels["device"]]++
			}
		}
		hookMu.Unlock()
	}))
	defer hook.Close()

	names := []string{"node-a", "node-b", "node-c"}
	routePorts := make([]string, 3)
	for i := range routePorts {
		routePorts[i] = freeAddr(t)
	}
	var routes []string
	for _, a := range routePorts {
		routes = append(routes, "nats://"+a)
	}
	logDir := t.TempDir()
	nodes := make([]*clusterNode, 3)
	for i, name := range names {
		n := &clusterNode{name: name, dir: t.TempDir(), http: freeAddr(t), mqtt: freeAddr(t), logPath: filepath.Join(logDir, name+".log")}
		n.conf = filepath.Join(t.TempDir(), name+".yaml")
		conf := fmt.Sprintf(`mqtt: {listen: %s}
cluster:
  name: e2e
  node_name: %s
  listen: %s
  routes: [%s]
  lease_ttl: 15s
  start_timeout: 3m
default_rules: false
rules:
  - name: cluster-tachycardia
    kind: heart_rate
    when: bpm >= 240
    severity: critical
    summary: "HR {{.bpm}} on {{.device}}"
notify:
  - name: hook
    webhook: {url: %q}
route:
  receiver: hook
  group_by: [alertname, subject, device]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
query: {max_rows: 1000000}
`, n.mqtt, name, routePorts[i], strings.Join(routes, ", "), hook.URL) + clusterLakeYAML(endpoint, bucket, dsn)
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	stopNodesAtCleanup(t, nodes)
	for _, n := range nodes { // each waits for a majority of the others
		n.start(t, bin)
	}
	for _, n := range nodes {
		n.waitReady(t)
	}

	alertSent := 0
	sendAlert := func(n *clusterNode) {
		t.Helper()
		alertSent++
		dev := fmt.Sprintf("alert-%d", alertSent)
		code, _ := postNDJSON(t, "http://"+n.http, adminToken, [][]byte{heartRate(dev, time.Now(), 250)})
		if code != http.StatusAccepted {
			t.Fatalf("alert reading on %s: %d", n.name, code)
		}
	}
	survivorsAnswer := func(dead *clusterNode) {
		t.Helper()
		for _, n := range nodes {
			if n == dead {
				continue
			}
			waitUntil(t, time.Minute, n.name+" answers a query while "+dead.name+" is down", func() bool {
				_, ok := nodeQuery(n.http, "SELECT count(*) FROM trusted.heart_rate")
				return ok
			})
		}
	}

	load := startLoad(t, nodes)
	sendAlert(nodes[0])
	waitUntil(t, time.Minute, "readings acknowledged", func() bool { return load.count() > 500 })

	// 1. SIGKILL a node that does not hold the lake-writer lease.
	writer := leaseHolder(t, nodes, nodes[0], "lake-writer")
	var victim *clusterNode
	for _, n := range nodes {
		if n != writer {
			victim = n
			break
		}
	}
	before := load.count()
	victim.signal(t, syscall.SIGKILL)
	survivorsAnswer(victim)
	for _, n := range nodes {
		if n != victim {
			sendAlert(n)
			break
		}
	}
	waitUntil(t, time.Minute, "ingest goes on without "+victim.name, func() bool { return load.count() > before+500 })
	victim.start(t, bin)
	victim.waitReady(t)

	// 2. SIGKILL the node holding the lake-writer lease; another takes the lease over.
	writer = leaseHolder(t, nodes, nodes[0], "lake-writer")
	before = load.count()
	writer.signal(t, syscall.SIGKILL)
	survivorsAnswer(writer)
	var survivor *clusterNode
	for _, n := range nodes {
		if n != writer {
			survivor = n
		}
	}
	sendAlert(survivor)
	waitUntil(t, time.Minute, "ingest goes on without the lake writer's node", func() bool { return load.count() > before+500 })
	if next := leaseHolder(t, nodes, survivor, "lake-writer"); next == writer {
		t.Fatal("the killed node still holds the lake-writer lease")
	}
	writer.start(t, bin)
	writer.waitReady(t)

	// 3. Rolling restart under load.
	for _, n := range nodes {
		before = load.count()
		n.signal(t, syscall.SIGTERM)
		n.start(t, bin)
		n.waitReady(t)
		waitUntil(t, time.Minute, "ingest goes on after restarting "+n.name, func() bool { return load.count() > before+200 })
	}
	sendAlert(nodes[1])
	load.halt()
	acked := load.count()
	t.Logf("%d readings acknowledged", acked)

	// Every acknowledged reading is in the lake exactly once, seen from every node.
	var present map[string]bool
	defer func() {
		if t.Failed() && present != nil {
			missing := map[string]int{}
			var sample []string
			load.mu.Lock()
			for d := range load.acked {
				if !present[d] {
					missing[d[:1]]++
					if len(sample) < 10 {
						sample = append(sample, d)
					}
				}
			}
			load.mu.Unlock()
			t.Logf("acknowledged but not in the lake, by source (h: HTTP, m: MQTT): %v, e.g. %v", missing, sample)
			t.Logf("the lake writer's consumer: %s", lakeConsumerState(nodes[2]))
		}
	}()
	waitUntil(t, 3*time.Minute, "every acknowledged reading is in the lake", func() bool {
		rows, ok := nodeQuery(nodes[2].http, "SELECT device FROM trusted.heart_rate")
		if !ok {
			return false
		}
		present = map[string]bool{}
		dups := 0
		for _, r := range rows {
			d := r[0].(string)
			if present[d] {
				dups++
			}
			present[d] = true
		}
		if dups > 0 {
			t.Fatalf("%d readings are in the lake more than once", dups)
		}
		load.mu.Lock()
		defer load.mu.Unlock()
		for d := range load.acked {
			if !present[d] {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		rows, ok := nodeQuery(n.http, "SELECT count(*) - count(DISTINCT device) FROM trusted.heart_rate")
		if !ok || len(rows) != 1 || fmt.Sprint(rows[0][0]) != "0" {
			t.Errorf("%s: duplicates query %v (ok %v)", n.name, rows, ok)
		}
	}

	// Every alert was notified once: not once per node, and not again after a takeover.
	waitUntil(t, 2*time.Minute, "every alert is notified", func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		for i := 1; i <= alertSent; i++ {
			if notified[fmt.Sprintf("alert-%d", i)] == 0 {
				return false
			}
		}
		return true
	})
	// A second notification would come within the group interval (1s) or at a takeover.
	time.Sleep(5 * time.Second) // waiting for notifications that must not come
	hookMu.Lock()
	for i := 1; i <= alertSent; i++ {
		if c := notified[fmt.Sprintf("alert-%d", i)]; c != 1 {
			t.Errorf("alert-%d notified %d times, want once", i, c)
		}
	}
	hookMu.Unlock()

	// The restarted nodes caught up: every replica of the ingest stream is current.
	nc := natsOf(t, nodes[0])
	defer nc.Close()
	js, _ := jetstream.New(nc)
	waitUntil(t, time.Minute, "every replica of the ingest stream is current", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "INGEST")
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Lag != 0 || r.Offline {
				return false
			}
		}
		return true
	})
}

// stopNodesAtCleanup kills the nodes still running when the test ends, and logs the tail of
// every node's log if it failed.
func stopNodesAtCleanup(t *testing.T, nodes []*clusterNode) {
	t.Cleanup(func() {
		for _, n := range nodes {
			if n.cmd != nil && n.cmd.ProcessState == nil {
				n.cmd.Process.Kill()
				<-n.done
			}
		}
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("log of %s:\n%s", n.name, tail(n.logPath))
			}
		}
	})
}
