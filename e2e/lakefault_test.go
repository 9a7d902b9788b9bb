package e2e

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/lake"
)

// Faults of the lake writer and its health reports, each with a separate serve process.

// lfConfig writes a serve configuration with a short flush interval (plus extra YAML) and
// returns its path.
func lfConfig(t *testing.T, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "serve.yaml")
	if err := os.WriteFile(p, []byte("lake:\n  flush_interval: 1s\n"+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// lfReadings makes n readings of kind for subject, one second apart from start.
func lfReadings(kind, subject string, start time.Time, n, offset int) [][]byte {
	var lines [][]byte
	for i := range n {
		ts := start.Add(time.Duration(offset+i) * time.Second).UnixMilli()
		v := fmt.Sprintf(`{"bpm":%d}`, 60+i%40)
		if kind == "blood_pressure" {
			v = fmt.Sprintf(`{"systolic":%d,"diastolic":%d}`, 110+i%40, 70+i%20)
		}
		lines = append(lines, []byte(fmt.Sprintf(`{"subject":%q,"device":"dev-%s","kind":%q,"time":%d,"values":%s}`, subject, subject, kind, ts, v)))
	}
	return lines
}

// lfPost posts readings and fails unless all were accepted.
func lfPost(t *testing.T, url string, lines [][]byte) {
	t.Helper()
	code, body := postNDJSON(t, url, adminToken, lines)
	if code != http.StatusAccepted {
		t.Fatalf("POST /v1/readings: %d %v", code, body)
	}
}

// lfRows is the row count of a table's current snapshot, read from the catalog (not with
// SQL, so that it does not depend on the query engine); -1 while it cannot be read.
func lfRows(t *testing.T, dir, zone, name string) int64 {
	t.Helper()
	cfg := lake.Config{}
	cfg = cfg.WithDefaults(dir)
	st, err := lake.Open(context.Background(), quietLog(), cfg)
	if err != nil {
		return -1
	}
	defer st.Close()
	tb, err := st.Load(context.Background(), zone, name)
	if err != nil {
		return -1
	}
	return lake.Describe(zone, name, tb).Rows
}

// lfGet returns the status and body of a GET.
func lfGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// lfServe starts serve with lfConfig(extra) and prints the end of its log if the test fails.
func lfServe(t *testing.T, bin, dir, addr, conf string) *exec.Cmd {
	t.Helper()
	cmd := startServeWith(t, bin, dir, addr, "--config", conf)
	if f, ok := cmd.Stdout.(*os.File); ok {
		name := f.Name()
		t.Cleanup(func() {
			if t.Failed() {
				data, _ := os.ReadFile(name)
				if len(data) > 20000 {
					data = data[len(data)-20000:]
				}
				t.Logf("serve log (end):\n%s", data)
			}
		})
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd
}

// lfStop stops serve with SIGTERM and returns how long it took.
func lfStop(t *testing.T, cmd *exec.Cmd) time.Duration {
	t.Helper()
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve exited with %v", err)
		}
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatal("serve did not stop within 90s of SIGTERM")
	}
	return time.Since(start)
}

// TestLakeWriterAfterEraseWhileServing: `pulselake erase` run while
// serve runs expires the snapshots the lake writer has cached; the writer must reload the
// tables and go on, for a day it has not written before too, and shut down promptly.
func TestLakeWriterAfterEraseWhileServing(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	srv := lfServe(t, bin, dir, addr, lfConfig(t, ""))
	defer srv.Process.Kill()
	url := "http://" + addr
	day := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	for _, kind := range []string{"heart_rate", "blood_pressure"} {
		lfPost(t, url, append(lfReadings(kind, "a", day, 20, 0), lfReadings(kind, "b", day, 20, 100)...))
	}
	waitUntil(t, 30*time.Second, "both kinds are in the lake", func() bool {
		return lfRows(t, dir, "trusted", "heart_rate") == 40 && lfRows(t, dir, "trusted", "blood_pressure") == 40
	})

	out, code := runBin(t, "erase", "--data", dir, "--subject", "a")
	if code != 0 {
		t.Fatalf("erase exited %d:\n%s", code, out)
	}
	// Without --stream the stream keeps the subject's payloads: the report must say so.
	if !strings.Contains(out, "stream INGEST") || !strings.Contains(out, "everywhere but the stream") {
		t.Errorf("erase without --stream does not report what the stream still holds:\n%s", out)
	}

	// A day the writer has not written before: it has to read that day's identities.
	old := time.Date(2019, 6, 1, 12, 0, 0, 0, time.UTC)
	posted := time.Now()
	for _, kind := range []string{"heart_rate", "blood_pressure"} {
		lfPost(t, url, lfReadings(kind, "b", old, 3, 0))
	}
	waitUntil(t, 1*time.Second+15*time.Second, "the 2019 readings are queryable", func() bool {
		for _, kind := range []string{"heart_rate", "blood_pressure"} {
			rows := apiQuery(t, url, fmt.Sprintf("SELECT count(*) FROM %s WHERE time < TIMESTAMP '2020-01-01'", kind))
			if len(rows) != 1 || rows[0][0].(float64) != 3 {
				return false
			}
		}
		return true
	})
	t.Logf("2019 readings queryable %s after the post", time.Since(posted).Round(time.Millisecond))
	for _, kind := range []string{"heart_rate", "blood_pressure"} {
		rows := apiQuery(t, url, fmt.Sprintf("SELECT count(*) FILTER (subject = 'a'), count(*) FILTER (subject = 'b') FROM %s", kind))
		if len(rows) != 1 || rows[0][0].(float64) != 0 || rows[0][1].(float64) != 23 {
			t.Errorf("%s: rows of a and b = %v, want [0 23]", kind, rows)
		}
	}
	if code, body := lfGet(t, url+"/readyz"); code != http.StatusOK || strings.Contains(body, "degraded") {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if d := lfStop(t, srv); d > 15*time.Second {
		t.Errorf("shutdown took %s", d)
	}
}

// TestLakeBrokenTableIsolated: a damaged file of one
// table (its current manifest list) must not stop the lake writer for the others; /readyz
// and /metrics name the broken table; once the file is repaired the table catches up from
// the stream, every reading exactly once.
func TestLakeBrokenTableIsolated(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	srv := lfServe(t, bin, dir, addr, lfConfig(t, ""))
	defer srv.Process.Kill()
	url := "http://" + addr
	day := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	lfPost(t, url, append(lfReadings("heart_rate", "p1", day, 50, 0), lfReadings("blood_pressure", "p1", day, 50, 0)...))
	waitUntil(t, 30*time.Second, "both kinds are in the lake", func() bool {
		return lfRows(t, dir, "trusted", "heart_rate") == 50 && lfRows(t, dir, "trusted", "blood_pressure") == 50
	})

	// Damage trusted.heart_rate's current manifest list, keeping the original to repair.
	cfg := lake.Config{}
	cfg = cfg.WithDefaults(dir)
	st, err := lake.Open(context.Background(), quietLog(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := st.Load(context.Background(), "trusted", "heart_rate")
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	list := strings.TrimPrefix(tb.CurrentSnapshot().ManifestList, "file://")
	orig, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(list, []byte("this is not an Avro file"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Both kinds keep coming; blood pressure keeps landing.
	hr, bp := 50, 50
	for round := range 4 {
		lfPost(t, url, append(lfReadings("heart_rate", "p1", day, 10, 1000+round*10), lfReadings("blood_pressure", "p1", day, 10, 1000+round*10)...))
		hr, bp = hr+10, bp+10
		waitUntil(t, 30*time.Second, fmt.Sprintf("round %d of blood pressure is in the lake", round), func() bool {
			return lfRows(t, dir, "trusted", "blood_pressure") == int64(bp)
		})
	}
	// Tables commit side by side: landing.http may land a moment after blood_pressure.
	waitUntil(t, 30*time.Second, "every payload is in landing.http", func() bool {
		return lfRows(t, dir, "landing", "http") == int64(hr+bp)
	})
	code, body := lfGet(t, url+"/readyz")
	if code != http.StatusOK || !strings.Contains(body, "trusted.heart_rate") || !strings.Contains(body, "degraded") {
		t.Errorf("/readyz = %d %s; want 200 naming trusted.heart_rate as degraded", code, body)
	}
	_, metrics := lfGet(t, url+"/metrics")
	for _, want := range []string{`pulselake_lake_table_healthy{table="trusted.heart_rate"} 0`, `pulselake_lake_table_healthy{table="trusted.blood_pressure"} 1`,
		`pulselake_lake_table_errors_total{table="trusted.heart_rate"}`, "pulselake_lake_writer_lag_messages", "pulselake_lake_writer_lag_seconds"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Repair the file: heart rate catches up, each reading once.
	if err := os.WriteFile(list, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 90*time.Second, "heart rate caught up", func() bool {
		return lfRows(t, dir, "trusted", "heart_rate") >= int64(hr)
	})
	waitUntil(t, 30*time.Second, "/readyz no longer names the table", func() bool {
		code, body := lfGet(t, url+"/readyz")
		return code == http.StatusOK && !strings.Contains(body, "heart_rate")
	})
	lfPost(t, url, lfReadings("heart_rate", "p1", day, 5, 2000))
	hr += 5
	waitUntil(t, 30*time.Second, "new heart rate readings land", func() bool {
		return lfRows(t, dir, "trusted", "heart_rate") >= int64(hr)
	})
	lfStop(t, srv)
	if n := lfRows(t, dir, "trusted", "heart_rate"); n != int64(hr) {
		t.Errorf("trusted.heart_rate has %d rows, want %d", n, hr)
	}
	if n, out := queryCount(t, dir, "SELECT count(DISTINCT id) FROM heart_rate"); n != int64(hr) {
		t.Errorf("distinct heart rate identities = %d, want %d\n%s", n, hr, out)
	}
}

// TestLakeTruncatedParquetAfterRestart: a truncated Parquet data file
// of one table, found when serve starts again and reads that day's identities, degrades
// that table only.
func TestLakeTruncatedParquetAfterRestart(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	conf := lfConfig(t, "")
	srv := lfServe(t, bin, dir, addr, conf)
	url := "http://" + addr
	day := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	lfPost(t, url, append(lfReadings("heart_rate", "p1", day, 50, 0), lfReadings("blood_pressure", "p1", day, 50, 0)...))
	waitUntil(t, 30*time.Second, "both kinds are in the lake", func() bool {
		return lfRows(t, dir, "trusted", "heart_rate") == 50 && lfRows(t, dir, "trusted", "blood_pressure") == 50
	})
	lfStop(t, srv)
	files, _ := filepath.Glob(filepath.Join(dir, "lake", "trusted.db", "heart_rate", "data", "*", "*.parquet"))
	if len(files) != 1 {
		t.Fatalf("heart rate data files: %v", files)
	}
	if err := os.Truncate(files[0], 100); err != nil {
		t.Fatal(err)
	}
	srv = lfServe(t, bin, dir, addr, conf)
	for round := range 3 {
		lfPost(t, url, append(lfReadings("heart_rate", "p1", day, 10, 1000+round*10), lfReadings("blood_pressure", "p1", day, 10, 1000+round*10)...))
		want := int64(50 + 10*(round+1))
		waitUntil(t, 30*time.Second, fmt.Sprintf("round %d of blood pressure is in the lake", round), func() bool {
			return lfRows(t, dir, "trusted", "blood_pressure") == want
		})
	}
	waitUntil(t, 10*time.Second, "/readyz names the broken table", func() bool {
		code, body := lfGet(t, url+"/readyz")
		return code == http.StatusOK && strings.Contains(body, "trusted.heart_rate") && strings.Contains(body, "degraded")
	})
	if _, m := lfGet(t, url+"/metrics"); !strings.Contains(m, `pulselake_lake_table_healthy{table="trusted.heart_rate"} 0`) {
		t.Error("/metrics does not report trusted.heart_rate unhealthy")
	}
	if d := lfStop(t, srv); d > 20*time.Second {
		t.Errorf("shutdown took %s", d)
	}
}

// TestFullDiskRecovers: on a small real file system, filling the disk
// makes ingest answer 503 and /readyz not ready; freeing space makes ingest work again
// within seconds without a restart, nothing acknowledged is lost, and failed lake writes
// leave no empty or cut-short files.
func TestFullDiskRecovers(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("needs permission to mount a tmpfs (run as root): mount: %v %s", err, out)
	}
	defer exec.Command("umount", "-l", mnt).Run()
	dir, addr := filepath.Join(mnt, "data"), freeAddr(t)
	srv := lfServe(t, bin, dir, addr, lfConfig(t, "nats:\n  min_free_bytes: 4194304\n"))
	defer srv.Process.Kill()
	url := "http://" + addr
	day := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	acked := 0
	lfPost(t, url, lfReadings("heart_rate", "p1", day, 100, 0))
	acked += 100
	waitUntil(t, 30*time.Second, "the first readings are in the lake", func() bool {
		return lfRows(t, dir, "trusted", "heart_rate") == int64(acked)
	})

	// Readings accepted just before the disk fills: the lake flush that takes them fails.
	lfPost(t, url, lfReadings("heart_rate", "p1", day, 500, 100))
	acked += 500
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	for _, n := range []int{64 << 10, 4 << 10, 512, 1} { // the last bytes too
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	f.Close()
	waitUntil(t, 30*time.Second, "a lake flush failed on the full disk", func() bool {
		_, m := lfGet(t, url+"/metrics")
		return strings.Contains(m, "pulselake_lake_flush_failures_total ") && !strings.Contains(m, "pulselake_lake_flush_failures_total 0\n")
	})
	lfNoCutShortFiles(t, filepath.Join(dir, "lake"))

	got503 := false
	client := &http.Client{Timeout: 40 * time.Second}
	for i := 0; i < 20 && !got503; i++ {
		var body strings.Builder
		for _, l := range lfReadings("heart_rate", "p1", day, 200, 1000+i*200) {
			body.Write(l)
			body.WriteByte('\n')
		}
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/readings", strings.NewReader(body.String()))
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST with a full disk got no answer: %v", err)
		}
		resp.Body.Close()
		switch code := resp.StatusCode; code {
		case http.StatusAccepted:
			acked += 200
		case http.StatusServiceUnavailable:
			got503 = true
		default:
			t.Fatalf("POST with a full disk: %d", code)
		}
	}
	if !got503 {
		t.Fatal("ingest never answered 503 with a full disk")
	}
	waitUntil(t, 10*time.Second, "/readyz says not ready", func() bool {
		code, _ := lfGet(t, url+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	_, body := lfGet(t, url+"/readyz")
	t.Logf("readyz with a full disk: %s", body)

	// Free the space: serve is ready and ingest accepts readings again, without a restart.
	os.Remove(filler)
	freed := time.Now()
	waitUntil(t, 20*time.Second, "/readyz is ready", func() bool {
		code, _ := lfGet(t, url+"/readyz")
		return code == http.StatusOK
	})
	t.Logf("ready again %s after space was freed", time.Since(freed).Round(time.Millisecond))
	lfPost(t, url, lfReadings("heart_rate", "p1", day, 10, 50_000))
	acked += 10
	t.Logf("ingest accepted readings %s after space was freed", time.Since(freed).Round(time.Millisecond))
	waitUntil(t, 60*time.Second, "every acknowledged reading is in the lake", func() bool {
		return lfRows(t, dir, "trusted", "heart_rate") >= int64(acked)
	})
	lfStop(t, srv)
	if n := lfRows(t, dir, "trusted", "heart_rate"); n != int64(acked) {
		t.Errorf("trusted.heart_rate has %d rows, want the %d acknowledged", n, acked)
	}
	lfNoCutShortFiles(t, filepath.Join(dir, "lake"))
}

// lfNoCutShortFiles fails for empty metadata files and Parquet files too short to be whole
// under root (what a failed write to a full disk leaves unless it is cleaned up).
func lfNoCutShortFiles(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, _ := d.Info()
		if info != nil && (info.Size() == 0 && (strings.HasSuffix(p, ".json") || strings.HasSuffix(p, ".avro")) ||
			strings.HasSuffix(p, ".parquet") && info.Size() < 64) {
			t.Errorf("left by a failed write: %s (%d bytes)", p, info.Size())
		}
		return nil
	})
}

// TestLakeMovedDataDir: a data directory that was copied or moved is
// queried at its new place, with exact counts, and takes new readings there.
func TestLakeMovedDataDir(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	dir, addr := filepath.Join(base, "orig"), freeAddr(t)
	conf := lfConfig(t, "")
	srv := lfServe(t, bin, dir, addr, conf)
	url := "http://" + addr
	day := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	lfPost(t, url, append(lfReadings("heart_rate", "p1", day, 30, 0), lfReadings("blood_pressure", "p2", day, 20, 0)...))
	waitUntil(t, 30*time.Second, "the readings are in the lake", func() bool {
		return lfRows(t, dir, "trusted", "heart_rate") == 30 && lfRows(t, dir, "trusted", "blood_pressure") == 20
	})
	lfStop(t, srv)

	copied := filepath.Join(base, "copied")
	if out, err := exec.Command("cp", "-a", dir, copied).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v %s", err, out)
	}
	moved := filepath.Join(base, "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{moved, copied} {
		for kind, want := range map[string]int64{"heart_rate": 30, "blood_pressure": 20} {
			if n, out := queryCount(t, d, "SELECT count(*) FROM "+kind); n != want {
				t.Errorf("%s: %s has %d rows, want %d\n%s", filepath.Base(d), kind, n, want, out)
			}
		}
	}
	// The copy takes new readings, and the moved directory does not see them.
	addr2 := freeAddr(t)
	srv = lfServe(t, bin, copied, addr2, conf)
	lfPost(t, "http://"+addr2, lfReadings("heart_rate", "p1", day, 7, 500))
	waitUntil(t, 30*time.Second, "the copy takes new readings", func() bool {
		rows := apiQuery(t, "http://"+addr2, "SELECT count(*) FROM heart_rate")
		return len(rows) == 1 && rows[0][0].(float64) == 37
	})
	lfStop(t, srv)
	if n, out := queryCount(t, moved, "SELECT count(*) FROM heart_rate"); n != 30 {
		t.Errorf("moved: heart_rate has %d rows after the copy was written, want 30\n%s", n, out)
	}
	if n, out := queryCount(t, copied, "SELECT count(*) FROM heart_rate"); n != 37 {
		t.Errorf("copied: heart_rate has %d rows, want 37\n%s", n, out)
	}
}
