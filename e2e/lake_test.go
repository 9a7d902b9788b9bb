package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/token"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// lakeIdentities reads, with the query engine over the data directory's catalog, how many
// rows of every trusted table carry each reading identity.
func lakeIdentities(t testing.TB, dir string) map[string]int {
	t.Helper()
	eng, err := query.Open(context.Background(), quietLog(), nil, query.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	res, err := eng.Query(context.Background(), "SELECT table_name FROM information_schema.tables WHERE table_schema = 'trusted'", query.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, row := range res.Rows {
		r, err := eng.Query(context.Background(), fmt.Sprintf("SELECT id, count(*) FROM trusted.%q GROUP BY id", row[0]), query.Limits{MaxRows: 10_000_000})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range r.Rows {
			ids[x[0].(string)] += int(x[1].(int64))
		}
	}
	return ids
}

func mustRegistry(t testing.TB) *reading.Registry {
	reg, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// lakeCount runs a count query in-process over the data directory's lake; -1 when the query
// fails (e.g. a table that is not there yet).
func lakeCount(t testing.TB, dir, sql string) int64 {
	t.Helper()
	eng, err := query.Open(context.Background(), quietLog(), nil, query.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	res, err := eng.Query(context.Background(), sql, query.Limits{})
	if err != nil {
		return -1
	}
	return res.Rows[0][0].(int64)
}

// queryCount runs a one-number query with the pulselake query command.
func queryCount(t *testing.T, dir, sql string) (int64, string) {
	t.Helper()
	out, code := runBin(t, "query", "--data", dir, "--format", "json", sql)
	if code != 0 {
		return -1, out
	}
	var res struct {
		Rows [][]json.Number `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil || len(res.Rows) != 1 {
		return -1, out
	}
	n, _ := res.Rows[0][0].Int64()
	return n, out
}

// TestLakeQueryAfterPost posts readings to a running server and finds exactly them in the
// lake's zones with `pulselake query` (reading the catalog while serve runs) and
// POST /v1/query.
func TestLakeQueryAfterPost(t *testing.T) {
	cfg := config.Default()
	cfg.Lake.FlushInterval = yamlconf.Duration(time.Second)
	dir := t.TempDir()
	srv := startServerWith(t, dir, cfg)
	defer srv.stop()

	rng := rand.New(rand.NewPCG(7, 7))
	want := map[string]int{}
	var lines [][]byte
	invalid := 0
	for i := range 3000 {
		bad := i%50 == 0
		raw, _ := genReading(rng, i, bad)
		if bad {
			invalid++
		} else {
			var r struct{ Kind string }
			json.Unmarshal(raw, &r)
			want[r.Kind]++
		}
		lines = append(lines, raw)
	}
	for i := 0; i < len(lines); i += 500 {
		code, body := postNDJSON(t, srv.HTTPURL, adminToken, lines[i:i+500])
		if code != http.StatusAccepted && code != http.StatusMultiStatus {
			t.Fatalf("post: %d %v", code, body)
		}
	}
	// The same batch again: de-duplicated at the door, and the lake holds each reading once.
	postNDJSON(t, srv.HTTPURL, adminToken, lines[:500])

	quarantined := invalid
	for _, l := range lines[:500] { // the re-sent batch's invalid records are received again
		if _, err := reading.NewParser(mustRegistry(t)).Parse(l); err != nil {
			quarantined++
		}
	}
	waitUntil(t, 30*time.Second, "every reading queryable", func() bool {
		// landing holds what the stream stored: every record once, plus the re-sent batch's
		// rejected records (duplicates of accepted readings are dropped at the door).
		return lakeCount(t, dir, "SELECT count(*) FROM landing.http") == int64(len(lines)+quarantined-invalid)
	})
	// One CLI call checks every zone: exact counts, no duplicate identities.
	var sel []string
	for kind := range want {
		sel = append(sel, fmt.Sprintf("(SELECT count(*) FROM %s) - %d", kind, want[kind]))
	}
	sel = append(sel, fmt.Sprintf("(SELECT count(*) FROM quarantine.readings) - %d", quarantined),
		"(SELECT count(*) - count(DISTINCT id) FROM heart_rate)",
		fmt.Sprintf("(SELECT count(DISTINCT raw) FROM landing.http) - %d", len(lines)))
	n, out := queryCount(t, dir, "SELECT abs("+strings.Join(sel, ") + abs(")+")")
	if n != 0 {
		t.Errorf("lake contents differ from what was posted (sum of differences %d): %s", n, out)
		for kind, w := range want {
			t.Logf("%s: %d rows, want %d", kind, lakeCount(t, dir, "SELECT count(*) FROM "+kind), w)
		}
		t.Logf("quarantine: %d rows, want %d", lakeCount(t, dir, "SELECT count(*) FROM quarantine.readings"), quarantined)
	}

	// POST /v1/query: scope read; read-only statements only.
	readTok, _, _ := srv.Tokens.Create(context.Background(), token.ScopeRead, "", "reader")
	ingestTok, _, _ := srv.Tokens.Create(context.Background(), token.ScopeIngest, "", "device")
	code, body := post(t, srv.HTTPURL+"/v1/query", readTok, "application/json", []byte(`{"sql":"SELECT count(*) AS n FROM trusted.blood_pressure"}`))
	if code != http.StatusOK {
		t.Fatalf("POST /v1/query: %d %v", code, body)
	}
	if rows := body["rows"].([]any); len(rows) != 1 || rows[0].([]any)[0].(float64) != float64(want["blood_pressure"]) {
		t.Errorf("POST /v1/query rows %v, want [[%d]]", body["rows"], want["blood_pressure"])
	}
	if code, body := post(t, srv.HTTPURL+"/v1/query", ingestTok, "application/json", []byte(`{"sql":"SELECT 1"}`)); code != http.StatusForbidden {
		t.Errorf("query with an ingest token: %d %v", code, body)
	}
	for _, bad := range []string{`DROP VIEW trusted.blood_pressure`, `SELECT 1; SELECT 2`, `COPY (SELECT 1) TO '/tmp/x.csv'`, `SELECT * FROM read_csv('/etc/passwd')`} {
		body, _ := json.Marshal(map[string]string{"sql": bad})
		if code, resp := post(t, srv.HTTPURL+"/v1/query", readTok, "application/json", body); code/100 != 4 {
			t.Errorf("%q: %d %v, want a 4xx", bad, code, resp)
		}
	}
	if out, code := runBin(t, "query", "--data", dir, "DELETE FROM blood_pressure"); code != 2 || !strings.Contains(out, "read-only") {
		t.Errorf("query DELETE: exit %d: %s", code, out)
	}
}

// TestLakeNoDuplicatesAfterKill kills serve with SIGKILL several times while readings
// stream in and the lake writer flushes, and checks that afterwards the lake's trusted zone
// holds every reading of the stream exactly once.
func TestLakeNoDuplicatesAfterKill(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	cfgFile := filepath.Join(dir, "pulselake.yaml")
	if err := os.WriteFile(cfgFile, []byte("lake:\n  flush_interval: 300ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
	)
	next := 0
	rng := rand.New(rand.NewPCG(3, 4))
	client := &http.Client{Timeout: 5 * time.Second}
	for round := range 3 {
		srv := startServeWith(t, bin, dir, addr, "--config", cfgFile)
		// Kill at a random moment of the writer's flush cycle, after a bounded number of batches.
		stop := time.After(time.Duration(300+rng.IntN(900)) * time.Millisecond)
	send:
		for range 30 {
			select {
			case <-stop:
				break send
			default:
			}
			var lines [][]byte
			var ids []string
			for range 200 {
				raw, _ := genReading(rng, next, false)
				next++
				r, _ := p.Parse(raw)
				lines, ids = append(lines, raw), append(ids, r.Identity().String())
			}
			if code, err := tryPost(client, "http://"+addr, lines); err == nil && code == http.StatusAccepted {
				mu.Lock()
				for _, id := range ids {
					acked[id] = true
				}
				mu.Unlock()
			}
		}
		if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		srv.Wait()
		t.Logf("round %d: killed serve with %d readings acknowledged", round, len(acked))
	}
	srv := startServeWith(t, bin, dir, addr, "--config", cfgFile)
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	}()
	conn, closeConn, err := app.Dial(context.Background(), quietLog(), dir, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	inStream, _, _ := streamContents(t, conn)
	closeConn()
	var got map[string]int
	waitUntil(t, 60*time.Second, "the lake to hold every reading of the stream", func() bool {
		got = lakeIdentities(t, dir)
		return len(got) >= len(inStream)
	})
	for id, n := range got {
		if n != 1 {
			t.Errorf("reading %s is %d times in the lake", id, n)
		}
	}
	for id := range inStream {
		if got[id.String()] == 0 {
			t.Errorf("reading %s of the stream is not in the lake", id)
		}
	}
	for id := range acked {
		if got[id] == 0 {
			t.Errorf("acknowledged reading %s is not in the lake", id)
		}
	}
	t.Logf("%d readings acknowledged, %d in the stream, %d in the lake", len(acked), len(inStream), len(got))
}
