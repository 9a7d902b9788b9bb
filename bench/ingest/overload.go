package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pulselake/pulselake/bench/benchrun"
)

// overloadBase is the time of the first reading of the overload run; reading i of request
// seq of client c is at overloadBase + seq*batch + i milliseconds, device ovl-<c>.
var overloadBase = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

// overload drives serve past its intake capacity: clients each send NDJSON batches back to
// back for d (waiting Retry-After on 429 when honour is set), while /readyz is sampled. It
// then checks that every acknowledged reading is in the lake exactly once, restarts serve
// and measures the time until it is ready again.
func overload(bin string, clients, batch int, d time.Duration, honour bool, keep bool) {
	dir, _ := os.MkdirTemp("", "pulselake-overload-")
	if !keep {
		defer os.RemoveAll(dir)
	}
	cfgPath := filepath.Join(dir, "bench.yaml")
	benchrun.Must(os.WriteFile(cfgPath, []byte("query:\n  max_rows: 1000000\n  timeout: 120s\n"), 0o600))
	httpAddr := benchrun.FreeAddr()
	sv := &overloadServe{bin: bin, data: filepath.Join(dir, "data"), cfgPath: cfgPath, httpAddr: httpAddr,
		url: "http://" + httpAddr, logPath: filepath.Join(dir, "serve.log")}
	cmd, took := sv.start()
	if took < 0 {
		benchrun.Must(fmt.Errorf("serve not ready in 120 s"))
	}
	fmt.Printf("pulselake overload benchmark, %s, %d clients × %d readings/request for %s, honour Retry-After: %v\n",
		time.Now().UTC().Format(time.RFC3339), clients, batch, d, honour)
	fmt.Printf("load average before: %s", loadavg())
	if keep {
		fmt.Printf("serve at %s, data %s\n", sv.url, dir)
	}

	ready := sampleReadiness(sv.url) // until the lake check ends
	t0 := time.Now()
	tally := sendOverload(sv.url, clients, batch, d, honour)
	loadEnd := time.Since(t0)
	rssLoad := benchrun.PeakRSS(cmd.Process.Pid)
	tally.print(loadEnd)

	lake := checkOverloadLake(sv.url, batch, tally)
	lakeWait := time.Since(t0) - loadEnd
	ready.stop()
	lake.print(tally, lakeWait)
	ready.print()
	fmt.Printf("serve peak RSS (VmHWM): %d MiB during the load, %d MiB until the lake check ended\n", rssLoad/1024, benchrun.PeakRSS(cmd.Process.Pid)/1024)
	fmt.Printf("load average after: %s", loadavg())

	sv.restart(cmd)
	if keep {
		fmt.Printf("kept %s\n", dir)
	}
}

// overloadServe is the serve process under test.
type overloadServe struct {
	bin, data, cfgPath, httpAddr, url, logPath string
}

// start starts serve and returns it with the time until /readyz answered 200, or -1 when it
// did not within 120 s.
func (sv *overloadServe) start() (*exec.Cmd, time.Duration) {
	cmd := exec.Command(sv.bin, "serve", "--data", sv.data, "--config", sv.cfgPath, "--http", sv.httpAddr, "--mqtt", "off")
	cmd.Env = append(os.Environ(), "PULSELAKE_ADMIN_TOKEN="+token)
	logf, err := os.OpenFile(sv.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	benchrun.Must(err)
	cmd.Stdout, cmd.Stderr = logf, logf
	t0 := time.Now()
	benchrun.Must(cmd.Start())
	for time.Since(t0) < 120*time.Second {
		if resp, err := http.Get(sv.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd, time.Since(t0)
			}
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness, bounded
	}
	return cmd, -1
}

// restart stops cmd with SIGTERM, starts serve again and times both, watches the new serve
// stay ready for 10 s, stops it and counts the warnings in the log of both runs.
func (sv *overloadServe) restart(cmd *exec.Cmd) {
	t1 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	stopTook := time.Since(t1)
	cmd, readyTook := sv.start()
	if readyTook < 0 {
		fmt.Printf("restart: stopped in %.1fs, NOT ready 120 s after start\n", stopTook.Seconds())
	} else {
		fmt.Printf("restart: stopped in %.1fs, ready again %.1fs after start\n", stopTook.Seconds(), readyTook.Seconds())
	}
	// Watch the restarted serve for 10 s: it stays ready and its connection holds.
	bad := 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(sv.url + "/readyz")
		if err != nil || resp.StatusCode != 200 {
			bad++
		}
		if err == nil {
			resp.Body.Close()
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	logData, _ := os.ReadFile(sv.logPath)
	fmt.Printf("after restart: %d of 50 /readyz samples not ready in 10 s\n", bad)
	fmt.Printf("serve log (both runs): %d lines with \"slow consumer\", %d with \"reconnecting\", %d at level=ERROR\n",
		countLines(logData, "slow consumer"), countLines(logData, "reconnecting"), countLines(logData, "level=ERROR"))
}

// readinessSampler samples /readyz every 200 ms until stopped.
type readinessSampler struct {
	n, bad   atomic.Int64
	firstBad atomic.Value // string: the first failure
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func sampleReadiness(url string) *readinessSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &readinessSampler{cancel: cancel}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		hc := &http.Client{Timeout: 2 * time.Second}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s.sample(hc, url)
		}
	}()
	return s
}

func (s *readinessSampler) sample(hc *http.Client, url string) {
	s.n.Add(1)
	resp, err := hc.Get(url + "/readyz")
	if err != nil {
		s.bad.Add(1)
		s.firstBad.CompareAndSwap(nil, err.Error())
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.bad.Add(1)
		s.firstBad.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body)))
	}
}

// stop stops sampling and waits for the sampler to end.
func (s *readinessSampler) stop() {
	s.cancel()
	s.wg.Wait()
}

func (s *readinessSampler) print() {
	fb, _ := s.firstBad.Load().(string)
	fmt.Printf("/readyz: %d of %d samples not ready (first: %s)\n", s.bad.Load(), s.n.Load(), fb)
}

// requestKey names one request of the overload run: its client and sequence number.
type requestKey struct{ client, seq int }

// overloadTally counts the answers of the overload run.
type overloadTally struct {
	batch    int
	mu       sync.Mutex
	statuses map[int]int
	acked    map[requestKey]bool
	unsure   map[requestKey]bool // answered 503 or no answer: may or may not be stored
	noRetry  atomic.Int64        // 429 or 503 without Retry-After
	errs     atomic.Int64
	accepted atomic.Int64
}

// sendOverload runs clients that each send batches back to back for d and returns the tally.
func sendOverload(url string, clients, batch int, d time.Duration, honour bool) *overloadTally {
	tally := &overloadTally{batch: batch, statuses: map[int]int{}, acked: map[requestKey]bool{}, unsure: map[requestKey]bool{}}
	var wg sync.WaitGroup
	t0 := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 120 * time.Second}
			body := make([]byte, 0, batch*160)
			for seq := 0; time.Since(t0) < d; seq++ {
				body = overloadBody(body[:0], c, seq, batch)
				tally.send(hc, url, requestKey{c, seq}, body, honour)
			}
		}()
	}
	wg.Wait()
	return tally
}

// send posts one batch and records its answer, waiting Retry-After on 429 or 503 when
// honour is set.
func (t *overloadTally) send(hc *http.Client, url string, k requestKey, body []byte, honour bool) {
	req, _ := http.NewRequest("POST", url+"/v1/readings", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.errs.Add(1)
		t.mu.Lock()
		t.unsure[k] = true
		t.mu.Unlock()
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	t.mu.Lock()
	t.statuses[resp.StatusCode]++
	switch resp.StatusCode {
	case http.StatusAccepted:
		t.acked[k] = true
	case http.StatusServiceUnavailable:
		t.unsure[k] = true
	}
	t.mu.Unlock()
	if resp.StatusCode == http.StatusAccepted {
		t.accepted.Add(int64(t.batch))
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil {
			t.noRetry.Add(1)
		} else if honour {
			time.Sleep(time.Duration(ra) * time.Second) // what the answer asks of a client
		}
	}
}

func (t *overloadTally) print(loadEnd time.Duration) {
	codes := make([]int, 0, len(t.statuses))
	for c := range t.statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d × %d", t.statuses[c], c))
	}
	fmt.Printf("answers in %.1fs: %s; %d without an answer (client error); %d 429/503 without Retry-After\n",
		loadEnd.Seconds(), strings.Join(parts, ", "), t.errs.Load(), t.noRetry.Load())
	fmt.Printf("acknowledged: %d readings = %.0f readings/s\n", t.accepted.Load(), float64(t.accepted.Load())/loadEnd.Seconds())
}

// overloadLake is what the lake holds of the overload run's requests.
type overloadLake struct {
	missing      int // acknowledged requests not complete in the lake
	dupRows      int
	storedUnsure int // unanswered or 503 requests stored anyway
	err          error
}

// checkOverloadLake polls the lake for up to 30 s until every acknowledged request's
// readings are in it exactly once.
func checkOverloadLake(url string, batch int, tally *overloadTally) overloadLake {
	deadline := time.Now().Add(30 * time.Second)
	for {
		lake := queryOverloadLake(url, batch, tally)
		if (lake.err == nil && lake.missing == 0) || time.Now().After(deadline) {
			return lake
		}
		time.Sleep(time.Second) // polling the lake, bounded by the deadline
	}
}

func queryOverloadLake(url string, batch int, tally *overloadTally) overloadLake {
	rows, err := benchQuery(url, fmt.Sprintf(`SELECT device, floor((epoch_ms(time) - %d) / %d)::BIGINT AS seq, count(*) AS n, count(DISTINCT time) AS d
			FROM blood_pressure WHERE device LIKE 'ovl-%%' GROUP BY ALL`, overloadBase.UnixMilli(), batch))
	if err != nil {
		return overloadLake{err: err}
	}
	var lake overloadLake
	stored := map[requestKey]int{}
	for _, r := range rows {
		c, _ := strconv.Atoi(strings.TrimPrefix(r[0].(string), "ovl-"))
		k := requestKey{c, int(r[1].(float64))}
		n, dn := int(r[2].(float64)), int(r[3].(float64))
		stored[k] = dn
		lake.dupRows += n - dn
	}
	for k := range tally.acked {
		if stored[k] != batch {
			lake.missing++
		}
	}
	for k := range tally.unsure {
		if stored[k] > 0 {
			lake.storedUnsure++
		}
	}
	return lake
}

func (lake overloadLake) print(tally *overloadTally, lakeWait time.Duration) {
	switch {
	case lake.err != nil:
		fmt.Printf("lake check failed: %v\n", lake.err)
	case lake.missing > 0:
		fmt.Printf("lake: %d of %d acknowledged requests NOT complete in the lake 30 s after the load; %d duplicate rows\n", lake.missing, len(tally.acked), lake.dupRows)
	default:
		fmt.Printf("lake: all %d acknowledged requests complete %.1fs after the load ended; %d duplicate rows; %d of %d unanswered/503 requests stored anyway\n",
			len(tally.acked), lakeWait.Seconds(), lake.dupRows, lake.storedUnsure, len(tally.unsure))
	}
}

func overloadBody(b []byte, client, seq, n int) []byte {
	base := overloadBase.UnixMilli() + int64(seq*n)
	for i := 0; i < n; i++ {
		b = append(b, `{"subject":"patient-`...)
		b = strconv.AppendInt(b, int64((client*31+i)%1000), 10)
		b = append(b, `","device":"ovl-`...)
		b = strconv.AppendInt(b, int64(client), 10)
		b = append(b, `","kind":"blood_pressure","time":`...)
		b = strconv.AppendInt(b, base+int64(i), 10)
		b = append(b, `,"values":{"systolic":`...)
		b = strconv.AppendInt(b, int64(110+(i*7+seq)%60), 10)
		b = append(b, `,"diastolic":`...)
		b = strconv.AppendInt(b, int64(60+(i*3+client)%40), 10)
		b = append(b, `,"pulse":`...)
		b = strconv.AppendInt(b, int64(55+(i*5)%40), 10)
		b = append(b, "}}\n"...)
	}
	return b
}

func benchQuery(url, sql string) ([][]any, error) {
	body, _ := json.Marshal(map[string]string{"sql": sql})
	req, _ := http.NewRequest("POST", url+"/v1/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 150 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("query: %d %s", resp.StatusCode, data)
	}
	var out struct {
		Rows      [][]any `json:"rows"`
		Truncated bool    `json:"truncated"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	if out.Truncated {
		return nil, fmt.Errorf("query result truncated")
	}
	return out.Rows, nil
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return string(b)
}

func countLines(data []byte, s string) int {
	n := 0
	for _, l := range bytes.Split(data, []byte{'\n'}) {
		if bytes.Contains(bytes.ToLower(l), []byte(strings.ToLower(s))) {
			n++
		}
	}
	return n
}
