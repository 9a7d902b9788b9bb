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
	must(os.WriteFile(cfgPath, []byte("query:\n  max_rows: 1000000\n  timeout: 120s\n"), 0o600))
	data := filepath.Join(dir, "data")
	httpAddr := freeAddr()
	url := "http://" + httpAddr
	logPath := filepath.Join(dir, "serve.log")
	start := func() (*exec.Cmd, time.Duration) {
		cmd := exec.Command(bin, "serve", "--data", data, "--config", cfgPath, "--http", httpAddr, "--mqtt", "off")
		cmd.Env = append(os.Environ(), "PULSELAKE_ADMIN_TOKEN="+token)
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		must(err)
		cmd.Stdout, cmd.Stderr = logf, logf
		t0 := time.Now()
		must(cmd.Start())
		for time.Since(t0) < 120*time.Second {
			if resp, err := http.Get(url + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return cmd, time.Since(t0)
				}
			}
			time.Sleep(50 * time.Millisecond) // polling for readiness, bounded
		}
		return cmd, -1
	}
	cmd, took := start()
	if took < 0 {
		must(fmt.Errorf("serve not ready in 120 s"))
	}
	fmt.Printf("pulselake overload benchmark, %s, %d clients × %d readings/request for %s, honour Retry-After: %v\n",
		time.Now().UTC().Format(time.RFC3339), clients, batch, d, honour)
	fmt.Printf("load average before: %s", loadavg())
	if keep {
		fmt.Printf("serve at %s, data %s\n", url, dir)
	}

	// /readyz, sampled every 200 ms until the lake check ends.
	var readyN, readyBad atomic.Int64
	var firstBad atomic.Value
	sampleCtx, stopSampling := context.WithCancel(context.Background())
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		hc := &http.Client{Timeout: 2 * time.Second}
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
			readyN.Add(1)
			resp, err := hc.Get(url + "/readyz")
			if err != nil {
				readyBad.Add(1)
				firstBad.CompareAndSwap(nil, err.Error())
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				readyBad.Add(1)
				firstBad.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body)))
			}
		}
	}()

	type key struct{ client, seq int }
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		acked    = map[key]bool{}
		unsure   = map[key]bool{} // answered 503 or no answer: may or may not be stored
		noRetry  atomic.Int64     // 429 or 503 without Retry-After
		errs     atomic.Int64
		accepted atomic.Int64
	)
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
				req, _ := http.NewRequest("POST", url+"/v1/readings", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-ndjson")
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := hc.Do(req)
				if err != nil {
					errs.Add(1)
					mu.Lock()
					unsure[key{c, seq}] = true
					mu.Unlock()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				switch resp.StatusCode {
				case http.StatusAccepted:
					acked[key{c, seq}] = true
				case http.StatusServiceUnavailable:
					unsure[key{c, seq}] = true
				}
				mu.Unlock()
				if resp.StatusCode == http.StatusAccepted {
					accepted.Add(int64(batch))
				}
				if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
					ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
					if err != nil {
						noRetry.Add(1)
					} else if honour {
						time.Sleep(time.Duration(ra) * time.Second) // what the answer asks of a client
					}
				}
			}
		}()
	}
	wg.Wait()
	loadEnd := time.Since(t0)
	rssLoad := peakRSS(cmd.Process.Pid)

	codes := make([]int, 0, len(statuses))
	for c := range statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d × %d", statuses[c], c))
	}
	fmt.Printf("answers in %.1fs: %s; %d without an answer (client error); %d 429/503 without Retry-After\n",
		loadEnd.Seconds(), strings.Join(parts, ", "), errs.Load(), noRetry.Load())
	fmt.Printf("acknowledged: %d readings = %.0f readings/s\n", accepted.Load(), float64(accepted.Load())/loadEnd.Seconds())

	// Every acknowledged request's readings in the lake exactly once, within 30 s.
	deadline := time.Now().Add(30 * time.Second)
	var missing, dupRows, storedUnsure int
	var checkErr error
	for {
		var rows [][]any
		rows, checkErr = benchQuery(url, fmt.Sprintf(`SELECT device, floor((epoch_ms(time) - %d) / %d)::BIGINT AS seq, count(*) AS n, count(DISTINCT time) AS d
			FROM blood_pressure WHERE device LIKE 'ovl-%%' GROUP BY ALL`, overloadBase.UnixMilli(), batch))
		if checkErr == nil {
			stored := map[key]int{}
			dupRows = 0
			for _, r := range rows {
				c, _ := strconv.Atoi(strings.TrimPrefix(r[0].(string), "ovl-"))
				k := key{c, int(r[1].(float64))}
				n, dn := int(r[2].(float64)), int(r[3].(float64))
				stored[k] = dn
				dupRows += n - dn
			}
			missing, storedUnsure = 0, 0
			for k := range acked {
				if stored[k] != batch {
					missing++
				}
			}
			for k := range unsure {
				if stored[k] > 0 {
					storedUnsure++
				}
			}
			if missing == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second) // polling the lake, bounded by the deadline
	}
	lakeWait := time.Since(t0) - loadEnd
	stopSampling()
	sampling.Wait()
	switch {
	case checkErr != nil:
		fmt.Printf("lake check failed: %v\n", checkErr)
	case missing > 0:
		fmt.Printf("lake: %d of %d acknowledged requests NOT complete in the lake 30 s after the load; %d duplicate rows\n", missing, len(acked), dupRows)
	default:
		fmt.Printf("lake: all %d acknowledged requests complete %.1fs after the load ended; %d duplicate rows; %d of %d unanswered/503 requests stored anyway\n",
			len(acked), lakeWait.Seconds(), dupRows, storedUnsure, len(unsure))
	}
	fb, _ := firstBad.Load().(string)
	fmt.Printf("/readyz: %d of %d samples not ready (first: %s)\n", readyBad.Load(), readyN.Load(), fb)
	fmt.Printf("serve peak RSS (VmHWM): %d MiB during the load, %d MiB until the lake check ended\n", rssLoad/1024, peakRSS(cmd.Process.Pid)/1024)
	fmt.Printf("load average after: %s", loadavg())

	// Restart: SIGTERM, then time until /readyz answers 200.
	t1 := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	stopTook := time.Since(t1)
	cmd, readyTook := start()
	if readyTook < 0 {
		fmt.Printf("restart: stopped in %.1fs, NOT ready 120 s after start\n", stopTook.Seconds())
	} else {
		fmt.Printf("restart: stopped in %.1fs, ready again %.1fs after start\n", stopTook.Seconds(), readyTook.Seconds())
	}
	// Watch the restarted serve for 10 s: it stays ready and its connection holds.
	bad := 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(url + "/readyz")
		if err != nil || resp.StatusCode != 200 {
			bad++
		}
		if err == nil {
			resp.Body.Close()
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	logData, _ := os.ReadFile(logPath)
	fmt.Printf("after restart: %d of 50 /readyz samples not ready in 10 s\n", bad)
	fmt.Printf("serve log (both runs): %d lines with \"slow consumer\", %d with \"reconnecting\", %d at level=ERROR\n",
		countLines(logData, "slow consumer"), countLines(logData, "reconnecting"), countLines(logData, "level=ERROR"))
	if keep {
		fmt.Printf("kept %s\n", dir)
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
