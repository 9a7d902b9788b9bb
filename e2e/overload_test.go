package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// serveProc is a `pulselake serve` process with its log file.
type serveProc struct {
	cmd  *exec.Cmd
	url  string
	dir  string
	logs string
}

// startLogged starts serve as a separate process with an optional YAML config and waits
// for /readyz. Its log is appended to one file across restarts.
func startLogged(t *testing.T, bin, dir, addr, logs, config string) *serveProc {
	t.Helper()
	args := []string{"serve", "--data", dir, "--http", addr, "--mqtt", "off"}
	if config != "" {
		path := filepath.Join(t.TempDir(), "pulselake.yaml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PULSELAKE_ADMIN_TOKEN="+adminToken)
	logf, err := os.OpenFile(logs, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProc{cmd: cmd, url: "http://" + addr, dir: dir, logs: logs}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(p.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness, bounded by the deadline
	}
	cmd.Process.Kill()
	cmd.Wait()
	data, _ := os.ReadFile(logs)
	t.Fatalf("serve not ready in 60s:\n%s", data)
	return nil
}

func (p *serveProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

func (p *serveProc) log() string {
	data, _ := os.ReadFile(p.logs)
	return string(data)
}

// bigBatch is n blood-pressure readings of device ovl-<client>, times base+seq*n+i ms.
func bigBatch(client, seq, n int) []byte {
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli() + int64(seq*n)
	var b bytes.Buffer
	b.Grow(n * 150)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"subject":"patient-%d","device":"ovl-%d","kind":"blood_pressure","time":%d,"values":{"systolic":%d,"diastolic":%d}}`+"\n",
			(client*31+i)%500, client, base+int64(i), 110+(i*7+seq)%60, 60+(i*3)%40)
	}
	return b.Bytes()
}

// TestOverloadAnswers429NeverDropsConnection sends many concurrent 10,000-reading NDJSON
// batches (inside the documented limits) to a serve process. While the stream is up the
// answers are only 202 or 429 with Retry-After, /readyz stays ready, serve's own stream
// connection is never dropped as a slow consumer, its peak RSS stays below 1 GiB, and every
// acknowledged reading reaches the lake exactly once.
func TestOverloadAnswers429NeverDropsConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("overload test: skipped with -short (needs about 40 s and 1 GiB)")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	p := startLogged(t, bin, dir, addr, filepath.Join(t.TempDir(), "serve.log"), "")
	defer func() { p.stop() }() // the serve running at the end (it is restarted)

	const clients, batch, load = 16, 10000, 8 * time.Second
	var readyBad, readyN atomic.Int64
	var firstBad atomic.Value
	stopReady := make(chan struct{})
	var readyWG sync.WaitGroup
	readyWG.Add(1)
	go func() {
		defer readyWG.Done()
		hc := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stopReady:
				return
			case <-time.After(200 * time.Millisecond): // sampling interval
			}
			readyN.Add(1)
			resp, err := hc.Get(p.url + "/readyz")
			if err != nil {
				readyBad.Add(1)
				firstBad.CompareAndSwap(nil, err.Error())
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				readyBad.Add(1)
				firstBad.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, body))
			}
		}
	}()

	type req struct{ client, seq int }
	var (
		mu       sync.Mutex
		codes    = map[int]int{}
		acked    []req
		problems []string
		wg       sync.WaitGroup
	)
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 90 * time.Second}
			for seq := 0; time.Since(start) < load; seq++ {
				r, _ := http.NewRequest(http.MethodPost, p.url+"/v1/readings", bytes.NewReader(bigBatch(c, seq, batch)))
				r.Header.Set("Content-Type", "application/x-ndjson")
				r.Header.Set("Authorization", "Bearer "+adminToken)
				resp, err := hc.Do(r)
				if err != nil {
					mu.Lock()
					problems = append(problems, "no answer: "+err.Error())
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				switch resp.StatusCode {
				case http.StatusAccepted:
					acked = append(acked, req{c, seq})
				case http.StatusTooManyRequests:
				default:
					problems = append(problems, fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body)))
				}
				mu.Unlock()
				if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
					after, err := strconv.Atoi(resp.Header.Get("Retry-After"))
					if err != nil {
						mu.Lock()
						problems = append(problems, fmt.Sprintf("%d without Retry-After", resp.StatusCode))
						mu.Unlock()
						continue
					}
					time.Sleep(time.Duration(after) * time.Second) // as the answer asks
				}
			}
		}()
	}
	wg.Wait()
	peak := vmHWM(t, p.cmd.Process.Pid)
	t.Logf("answers: %v; serve peak RSS %d MB", codes, peak>>20)
	if len(problems) > 0 {
		t.Errorf("%d answers other than 202 or 429+Retry-After, first: %s", len(problems), problems[0])
	}
	if len(acked) == 0 {
		t.Fatal("no batch was acknowledged")
	}

	// Every acknowledged batch is in the lake, each reading once, within 30 s.
	deadline := time.Now().Add(30 * time.Second)
	var incomplete, dups int
	for {
		rows := apiQuery(t, p.url, fmt.Sprintf(`SELECT device, floor((epoch_ms(time) - %d) / %d)::BIGINT, count(*), count(DISTINCT time)
			FROM blood_pressure WHERE device LIKE 'ovl-%%' GROUP BY ALL`, time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), batch))
		stored := map[req]int{}
		dups = 0
		for _, r := range rows {
			c, _ := strconv.Atoi(strings.TrimPrefix(r[0].(string), "ovl-"))
			stored[req{c, int(r[1].(float64))}] = int(r[3].(float64))
			dups += int(r[2].(float64) - r[3].(float64))
		}
		incomplete = 0
		for _, a := range acked {
			if stored[a] != batch {
				incomplete++
			}
		}
		if incomplete == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond) // polling the lake, bounded by the deadline
	}
	close(stopReady)
	readyWG.Wait()
	if incomplete > 0 {
		t.Errorf("%d of %d acknowledged batches are not complete in the lake 30 s after the load", incomplete, len(acked))
	}
	if dups > 0 {
		t.Errorf("%d readings are in the lake more than once", dups)
	}
	if n := readyBad.Load(); n > 0 {
		first, _ := firstBad.Load().(string)
		t.Errorf("/readyz was not ready in %d of %d samples; first: %s", n, readyN.Load(), first)
	}
	log := p.log()
	for _, bad := range []string{"Slow Consumer", "slow consumer", "reconnecting"} {
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, bad) {
				t.Errorf("serve's log mentions %q: its stream connection was dropped or lost messages:\n%s", bad, line)
				break
			}
		}
	}
	if peak > 1<<30 {
		t.Errorf("serve peak RSS %d MB, want below 1024 MB", peak>>20)
	}

	// A restart over this backlog is quick and its connection holds (before: not ready after
	// 60 s, "reconnecting" every 3 s, consumer creation timing out).
	p.stop()
	before := len(p.log())
	t0 := time.Now()
	p = startLogged(t, bin, dir, addr, p.logs, "")
	if d := time.Since(t0); d > 15*time.Second {
		t.Errorf("restart took %s to be ready, want well under 15 s", d.Round(100*time.Millisecond))
	}
	waitUntil(t, 5*time.Second, "the restarted serve answers /readyz", func() bool {
		resp, err := http.Get(p.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if after := p.log()[before:]; strings.Contains(after, "reconnecting") || strings.Contains(after, "level=ERROR") {
		t.Errorf("restarted serve logged a lost connection or an error:\n%s", after)
	}
}

// TestSlowBodiesDoNotStarveOthers opens 16 requests whose chunked bodies trickle in at a
// byte a second. Another client still gets 202 (they hold only what they sent, not the
// body limit), and the slow ones are answered 408 and cut off at ingest.body_timeout.
func TestSlowBodiesDoNotStarveOthers(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	p := startLogged(t, bin, dir, addr, filepath.Join(t.TempDir(), "serve.log"),
		"ingest:\n  max_body_bytes: 1048576\n  max_inflight_bytes: 16777216\n  body_timeout: 3s\n")
	defer p.stop()

	type result struct {
		status string
		after  time.Duration
	}
	results := make(chan result, 16)
	stop := make(chan struct{})
	var started sync.WaitGroup
	for i := 0; i < 16; i++ {
		started.Add(1)
		go func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				started.Done()
				results <- result{status: err.Error()}
				return
			}
			defer conn.Close()
			t0 := time.Now()
			fmt.Fprintf(conn, "POST /v1/readings HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n", addr, adminToken)
			started.Done()
			answer := make(chan string, 1)
			go func() {
				line, err := bufio.NewReader(conn).ReadString('\n')
				if err != nil && line == "" {
					line = "closed: " + err.Error()
				}
				answer <- strings.TrimSpace(line)
			}()
			tick := time.NewTicker(time.Second) // one byte a second
			defer tick.Stop()
			for {
				select {
				case s := <-answer:
					results <- result{s, time.Since(t0)}
					return
				case <-stop:
					results <- result{"no answer", time.Since(t0)}
					return
				case <-tick.C:
					conn.Write([]byte("1\r\n \r\n"))
				}
			}
		}()
	}
	started.Wait()
	time.Sleep(300 * time.Millisecond) // let the server read the first chunk of each

	var lines [][]byte
	for i := 0; i < 100; i++ {
		lines = append(lines, []byte(fmt.Sprintf(`{"subject":"p1","device":"normal","kind":"heart_rate","time":%d,"values":{"bpm":70}}`,
			time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()+int64(i))))
	}
	code, body := postNDJSON(t, p.url, adminToken, lines)
	if code != http.StatusAccepted {
		t.Errorf("a normal client got %d %v while slow bodies were open; want 202", code, body)
	}

	timer := time.AfterFunc(15*time.Second, func() { close(stop) })
	defer timer.Stop()
	for i := 0; i < 16; i++ {
		r := <-results
		if !strings.Contains(r.status, " 408 ") || r.after > 10*time.Second {
			t.Errorf("slow body: answer %q after %s; want 408 at the 3 s body timeout", r.status, r.after.Round(100*time.Millisecond))
		}
	}
}

// TestDamagedStreamBlockReported kills serve, overwrites bytes in the middle of the ingest
// stream's last block, and restarts it: the acknowledged readings lost with it are reported
// at ERROR with their sequence range and counted in pulselake_stream_lost_messages_total.
func TestDamagedStreamBlockReported(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	logs := filepath.Join(t.TempDir(), "serve.log")
	p := startLogged(t, bin, dir, addr, logs, "")
	const batches = 20
	for b := 0; b < batches; b++ {
		var lines [][]byte
		for i := 0; i < 100; i++ {
			lines = append(lines, []byte(fmt.Sprintf(`{"subject":"p%d","device":"d","kind":"heart_rate","time":%d,"values":{"bpm":70}}`,
				b, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()+int64(b*100+i))))
		}
		if code, body := postNDJSON(t, p.url, adminToken, lines); code != http.StatusAccepted {
			t.Fatalf("batch %d: %d %v", b, code, body)
		}
	}
	// Kill once the lake writer has everything, and serve has noted the last acknowledged
	// sequence (it does so every second; a build without the mark goes on after 5 s).
	waitUntil(t, 30*time.Second, "the lake has every reading", func() bool {
		rows := apiQuery(t, p.url, `SELECT count(*) FROM heart_rate WHERE device = 'd'`)
		return len(rows) == 1 && rows[0][0].(float64) == batches*100
	})
	mark := filepath.Join(dir, "stream", "ingest.hwm")
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		data, _ := os.ReadFile(mark)
		if n, _ := strconv.Atoi(strings.TrimSpace(string(data))); n >= batches {
			break
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()

	blocks, _ := filepath.Glob(filepath.Join(dir, "stream", "jetstream", "*", "streams", "INGEST", "msgs", "*.blk"))
	if len(blocks) == 0 {
		t.Fatal("no block of the INGEST stream found")
	}
	last := blocks[len(blocks)-1]
	data, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(data) / 2; i < len(data)/2+256 && i < len(data); i++ {
		data[i] = byte(i*7 + 13)
	}
	if err := os.WriteFile(last, data, 0o600); err != nil {
		t.Fatal(err)
	}

	p = startLogged(t, bin, dir, addr, logs, "")
	defer p.stop()
	log := p.log()
	errLine := regexp.MustCompile(`level=ERROR msg="stream data lost[^\n]*sequences=(\d+)(-(\d+))?`).FindStringSubmatch(log)
	if errLine == nil {
		t.Fatalf("no ERROR naming the lost sequences after restart; log:\n%s", log)
	}
	resp, err := http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`pulselake_stream_lost_messages_total\{stream="INGEST"\} (\d+)`).FindSubmatch(metrics)
	if m == nil || string(m[1]) == "0" {
		t.Fatalf("pulselake_stream_lost_messages_total{stream=\"INGEST\"} missing or 0")
	}
	t.Logf("reported: %s; metric %s", errLine[0], m[1])
}

// TestOversizeRecordAndDuplicateKey: a single record above the stream's 8 MiB message limit
// is answered 413 record-too-large (not 503, which clients retry forever), and a reading
// naming a key twice is rejected as invalid-json naming the key.
func TestOversizeRecordAndDuplicateKey(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	p := startLogged(t, bin, dir, addr, filepath.Join(t.TempDir(), "serve.log"), "")
	defer p.stop()

	big := `{"subject":"p1","device":"d1","kind":"heart_rate","time":"2026-11-01T00:00:00Z","values":{"bpm":70},"note":"` +
		strings.Repeat("x", 9<<20) + `"}`
	req, _ := http.NewRequest(http.MethodPost, p.url+"/v1/readings", strings.NewReader(big))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	json.Unmarshal(data, &out)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || out.Error.Code != "record-too-large" || resp.Header.Get("Retry-After") != "" {
		t.Errorf("oversize record: %d Retry-After %q %s; want 413 record-too-large without Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), data)
	}

	code, body := postNDJSON(t, p.url, adminToken, [][]byte{
		[]byte(`{"subject":"alice","device":"d1","kind":"heart_rate","time":"2026-11-01T00:00:00Z","values":{"bpm":70},"subject":"bob"}`),
	})
	rej, _ := body["rejected"].([]any)
	if code != http.StatusUnprocessableEntity || len(rej) != 1 {
		t.Fatalf("duplicated key: %d %v; want 422 with one rejection", code, body)
	}
	r := rej[0].(map[string]any)
	if r["code"] != "invalid-json" || r["path"] != "/subject" || !strings.Contains(r["message"].(string), `"subject"`) {
		t.Errorf("duplicated key rejected as %v; want invalid-json at /subject naming the key", r)
	}
}
