package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/token"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

// sqlAnswer is one answer of POST /v1/query.
type sqlAnswer struct {
	code  int
	rows  [][]any
	err   struct{ Code, Message string }
	plain string // the body as text
}

func postSQL(t *testing.T, baseURL, tok, sql string) sqlAnswer {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"sql": sql})
	req, _ := http.NewRequest(http.MethodPost, baseURL+"/v1/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := sqlAnswer{code: resp.StatusCode, plain: string(data)}
	var out struct {
		Rows  [][]any         `json:"rows"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s: answer %d is not JSON: %s", sql, resp.StatusCode, data)
	}
	a.rows = out.Rows
	if len(out.Error) > 0 {
		if err := json.Unmarshal(out.Error, &a.err); err != nil {
			t.Errorf("%s: error body is not {\"error\":{\"code\":...,\"message\":...}} (SPEC §13): %s", sql, data)
		}
	}
	return a
}

// authzLake starts serve and fills trusted.heart_rate, trusted.blood_pressure (over
// POST /v1/readings), ops.alerts and curated.cohort (no subject column; written with a
// pipeline session, as pipelines write) for two subjects.
func authzLake(t *testing.T) (*server, string) {
	t.Helper()
	cfg := config.Default()
	cfg.Lake.FlushInterval = yamlconf.Duration(500 * time.Millisecond)
	dir := t.TempDir()
	srv := startServerWith(t, dir, cfg)
	t.Cleanup(srv.stop)
	var lines [][]byte
	base := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC).UnixMilli()
	for i, subj := range []string{"patient-a", "patient-b", "patient-b"} {
		for j := range 3 {
			ms := base + int64(i*10+j)*1000
			lines = append(lines,
				[]byte(fmt.Sprintf(`{"subject":%q,"device":"hr-%d","kind":"heart_rate","time":%d,"values":{"bpm":%d}}`, subj, i, ms, 60+i*10+j)),
				[]byte(fmt.Sprintf(`{"subject":%q,"device":"bp-%d","kind":"blood_pressure","time":%d,"values":{"systolic":%d,"diastolic":80}}`, subj, i, ms, 120+i)))
		}
	}
	if code, body := postNDJSON(t, srv.HTTPURL, adminToken, lines); code != http.StatusAccepted {
		t.Fatalf("posting readings: %d %v", code, body)
	}
	waitUntil(t, 30*time.Second, "both kinds in the lake", func() bool {
		r := apiQuery(t, srv.HTTPURL, "SELECT (SELECT count(*) FROM heart_rate) + (SELECT count(*) FROM blood_pressure)")
		return len(r) == 1 && r[0][0] == float64(18)
	})
	var lc lake.Config
	lc = lc.WithDefaults(dir)
	ctx := context.Background()
	s, err := query.OpenSession(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), query.Options{Lake: lc, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for table, q := range map[string]string{
		"ops.alerts":     "SELECT * FROM (VALUES ('patient-a', 'hr-high', 'firing'), ('patient-b', 'hr-high', 'firing'), ('patient-b', 'bp-high', 'resolved')) v(subject, rule, state)",
		"curated.cohort": "SELECT * FROM (VALUES ('2026-11', 2, 'patient-b is the older one')) v(month, subjects, note)",
	} {
		if err := s.Append(ctx, table, q); err != nil {
			t.Fatal(err)
		}
	}
	return srv, dir
}

// lakeDataFiles lists the Parquet data files of a lake table.
func lakeDataFiles(t *testing.T, dir, zone, table string) []string {
	t.Helper()
	var out []string
	for _, ns := range []string{zone, zone + ".db"} {
		filepath.WalkDir(filepath.Join(dir, "lake", ns, table, "data"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
				out = append(out, p)
			}
			return nil
		})
	}
	if len(out) == 0 {
		t.Fatalf("no data files of %s.%s under %s", zone, table, dir)
	}
	return out
}

// TestQueryReadTokenCannotReadFiles: a read token's SQL reads registered tables only, not
// the lake's files (where orphaned files of erased subjects may lie).
func TestQueryReadTokenCannotReadFiles(t *testing.T) {
	srv, dir := authzLake(t)
	readTok, _, err := srv.Tokens.Create(context.Background(), token.ScopeRead, "", "analyst")
	if err != nil {
		t.Fatal(err)
	}
	files := lakeDataFiles(t, dir, "trusted", "heart_rate")
	folder := filepath.Dir(files[0])
	if a := postSQL(t, srv.HTTPURL, readTok, "SELECT count(*) FROM trusted.heart_rate"); a.code != http.StatusOK || a.rows[0][0] != float64(9) {
		t.Fatalf("registered table: %d %s", a.code, a.plain)
	}
	for _, q := range []string{
		fmt.Sprintf("SELECT * FROM read_parquet('%s')", files[0]),
		fmt.Sprintf("SELECT count(*) FROM read_parquet('%s/*.parquet')", folder),
		fmt.Sprintf("SELECT count(*) FROM read_parquet('%s/lake/**/*.parquet')", dir),
		fmt.Sprintf("SELECT count(*) FROM parquet_scan('%s')", files[0]),
		fmt.Sprintf("SELECT * FROM glob('%s/*')", folder),
		fmt.Sprintf("SELECT * FROM read_csv('%s', header = false)", files[0]),
		fmt.Sprintf("SELECT * FROM read_text('%s')", files[0]),
		fmt.Sprintf("SELECT * FROM read_blob('%s')", files[0]),
		fmt.Sprintf("SELECT * FROM parquet_metadata('%s')", files[0]),
		fmt.Sprintf("SELECT count(*) FROM '%s'", files[0]),
		fmt.Sprintf("SELECT count(*) FROM heart_rate WHERE subject IN (SELECT subject FROM read_parquet('%s'))", files[0]),
		fmt.Sprintf("FROM query('SELECT * FROM read_parquet(''%s'')')", files[0]),
		"SELECT * FROM duckdb_views()",
		"SELECT * FROM duckdb_settings()",
	} {
		a := postSQL(t, srv.HTTPURL, readTok, q)
		if a.code != http.StatusForbidden || a.err.Code != "forbidden" {
			t.Errorf("%s: %d %s, want 403 forbidden", q, a.code, a.plain)
		}
	}
	for _, q := range []string{
		fmt.Sprintf("COPY (SELECT 1) TO '%s/x.csv'", folder),
		fmt.Sprintf("ATTACH '%s/x.db' AS x", folder),
		"INSTALL httpfs", "LOAD parquet", "SET enable_external_access = true", "SET VARIABLE pulselake_subject = NULL",
	} {
		a := postSQL(t, srv.HTTPURL, readTok, q)
		if a.code != http.StatusBadRequest || a.err.Code != "not-read-only" {
			t.Errorf("%s: %d %s, want 400 not-read-only", q, a.code, a.plain)
		}
	}
	// The CLI over the API gets the same refusal.
	out, code := runBin(t, "query", "--server", srv.HTTPURL, "--token", readTok, fmt.Sprintf("SELECT count(*) FROM read_parquet('%s')", files[0]))
	if code == 0 || !strings.Contains(out, "reading files") && !strings.Contains(out, "not available over the API") {
		t.Errorf("pulselake query --server reading a lake file: exit %d: %s", code, out)
	}
}

// TestQuerySubjectBoundToken: a read token bound to a subject sees every table filtered to
// its subject, whatever the SQL; a table without a subject column is refused to it.
func TestQuerySubjectBoundToken(t *testing.T) {
	srv, dir := authzLake(t)
	ctx := context.Background()
	tokA, _, err := srv.Tokens.Create(ctx, token.ScopeRead, "patient-a", "patient a's app")
	if err != nil {
		t.Fatal(err)
	}
	file := lakeDataFiles(t, dir, "trusted", "heart_rate")[0]
	want := map[string]string{
		"SELECT count(*) FROM trusted.heart_rate":                                                                     "3",
		"SELECT count(*) FROM heart_rate":                                                                             "3",
		"SELECT count(*) FROM blood_pressure":                                                                         "3",
		"SELECT count(*) FROM ops.alerts":                                                                             "1",
		"SELECT string_agg(DISTINCT subject, ',') FROM heart_rate":                                                    "patient-a",
		"SELECT count(*) FROM heart_rate WHERE subject = 'patient-b'":                                                 "0",
		"SELECT count(*) FROM heart_rate WHERE subject <> 'patient-a' OR 1 = 1":                                       "3",
		"SELECT count(*) FROM (SELECT * FROM heart_rate h WHERE EXISTS (SELECT 1 FROM blood_pressure b))":             "3",
		"WITH hr AS (SELECT * FROM trusted.heart_rate) SELECT count(*) FROM hr":                                       "3",
		"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 2) SELECT count(*) FROM heart_rate": "3",
		"SELECT count(*) FROM (SELECT subject FROM heart_rate UNION ALL SELECT subject FROM blood_pressure)":          "6",
		"SELECT count(DISTINCT subject) FROM (SELECT subject FROM heart_rate UNION SELECT subject FROM ops.alerts)":   "1",
		"SELECT (SELECT count(*) FROM heart_rate) + (SELECT count(*) FROM ops.alerts)":                                "4",
		"SELECT max(bpm) FROM heart_rate":                                                                             "62",
	}
	for q, w := range want {
		a := postSQL(t, srv.HTTPURL, tokA, q)
		if a.code != http.StatusOK || len(a.rows) != 1 || fmt.Sprint(a.rows[0][0]) != w {
			t.Errorf("%s: %d %s, want [[%s]]", q, a.code, a.plain, w)
		}
	}
	// Rows themselves: only patient-a's.
	for _, q := range []string{"SELECT * FROM heart_rate", "SELECT * FROM blood_pressure", "SELECT * FROM ops.alerts",
		"SELECT h.*, b.* FROM heart_rate h, blood_pressure b", "SELECT * FROM information_schema.tables"} {
		a := postSQL(t, srv.HTTPURL, tokA, q)
		if a.code != http.StatusOK || len(a.rows) == 0 {
			t.Errorf("%s: %d %s", q, a.code, a.plain)
		}
		if strings.Contains(a.plain, "patient-b") {
			t.Errorf("%s: patient-b's data in patient-a's answer: %s", q, a.plain)
		}
	}
	// No name, function or file leads to more.
	for _, q := range []string{
		"SELECT * FROM curated.cohort",
		"SELECT count(*) FROM heart_rate JOIN curated.cohort ON true",
		"SELECT * FROM trusted.heart_rate_unfiltered",
		"SELECT * FROM memory.trusted.heart_rate",
		"SELECT * FROM duckdb_tables()",
		"SELECT * FROM query_table('trusted.heart_rate')",
		"SELECT * FROM information_schema.views",
		fmt.Sprintf("SELECT * FROM read_parquet('%s')", file),
		fmt.Sprintf("SELECT * FROM '%s'", file),
		"RESET VARIABLE pulselake_subject",
		"SET VARIABLE pulselake_subject = 'patient-b'",
	} {
		a := postSQL(t, srv.HTTPURL, tokA, q)
		if a.code == http.StatusOK || strings.Contains(a.plain, "patient-b") {
			t.Errorf("%s: %d %s, want a refusal", q, a.code, a.plain)
		}
	}
	a := postSQL(t, srv.HTTPURL, tokA, "SELECT * FROM curated.cohort")
	if a.code != http.StatusForbidden || a.err.Code != "forbidden" || !strings.Contains(a.err.Message, "curated.cohort") {
		t.Errorf("table without a subject column: %d %s, want 403 forbidden naming curated.cohort", a.code, a.plain)
	}
	// The binding stays with the token: an unbound read token and the admin see everyone.
	readTok, _, _ := srv.Tokens.Create(ctx, token.ScopeRead, "", "analyst")
	for _, tok := range []string{readTok, adminToken} {
		if a := postSQL(t, srv.HTTPURL, tok, "SELECT count(*) FROM heart_rate"); a.code != http.StatusOK || a.rows[0][0] != float64(9) {
			t.Errorf("unbound token after bound queries: %d %s", a.code, a.plain)
		}
	}
}

// TestQueryDamagedTableFailsOnlyItself truncates a data file of trusted.heart_rate: queries
// of other tables go on (over the API and from the CLI), queries of it fail naming it.
func TestQueryDamagedTableFailsOnlyItself(t *testing.T) {
	srv, dir := authzLake(t)
	readTok, _, _ := srv.Tokens.Create(context.Background(), token.ScopeRead, "", "analyst")
	for _, f := range lakeDataFiles(t, dir, "trusted", "heart_rate") {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f, st.Size()/2); err != nil {
			t.Fatal(err)
		}
	}
	if a := postSQL(t, srv.HTTPURL, readTok, "SELECT count(*) FROM blood_pressure"); a.code != http.StatusOK || a.rows[0][0] != float64(9) {
		t.Errorf("another table over the API: %d %s", a.code, a.plain)
	}
	a := postSQL(t, srv.HTTPURL, readTok, "SELECT count(*) FROM heart_rate")
	if a.code != http.StatusServiceUnavailable || a.err.Code != "table-unavailable" || !strings.Contains(a.err.Message, "trusted.heart_rate") {
		t.Errorf("the damaged table over the API: %d %s, want 503 table-unavailable naming trusted.heart_rate", a.code, a.plain)
	}
	// A fresh engine (the CLI) builds every view: the damaged one must not stop the others.
	if out, code := runBin(t, "query", "--data", dir, "--format", "csv", "SELECT count(*) AS n FROM blood_pressure"); code != 0 || !strings.Contains(out, "n\n9") {
		t.Errorf("CLI query of another table: exit %d: %s", code, out)
	}
	if out, code := runBin(t, "query", "--data", dir, "SELECT count(*) FROM heart_rate"); code != 1 || !strings.Contains(out, "trusted.heart_rate cannot be read") {
		t.Errorf("CLI query of the damaged table: exit %d: %s", code, out)
	}
}

// vmHWM is a process's peak resident set size in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("reading the peak RSS needs Linux's /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestQueryMemoryLimit runs a read token's string_agg over a large table on a separate serve
// with a small SQL memory limit: the query fails with a clear error, serve's peak RSS stays
// within the limit plus a margin, and spill files stay under the data directory (none in the
// working directory).
func TestQueryMemoryLimit(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	const limit = 256 << 20
	dir, work, addr := t.TempDir(), t.TempDir(), freeAddr(t)
	cfgFile := filepath.Join(dir, "pulselake.yaml")
	if err := os.WriteFile(cfgFile, []byte("query:\n  memory_limit: 256MiB\n  temp_dir_max_bytes: 134217728\n  threads: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A large table: 400,000 rows of 100-byte text, written as a pipeline writes.
	var lc lake.Config
	lc = lc.WithDefaults(dir)
	ctx := context.Background()
	s, err := query.OpenSession(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), query.Options{Lake: lc, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, "curated.notes", "SELECT 'patient-' || (i % 50) AS subject, md5(i::VARCHAR) || md5((i + 1)::VARCHAR) || md5((i + 2)::VARCHAR) AS note FROM range(400000) r(i)"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	out, code := runBin(t, "token", "create", "--scope", "read", "--name", "analyst", "--data", dir)
	if code != 0 {
		t.Fatalf("token create: exit %d: %s", code, out)
	}
	readTok := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])

	cmd := exec.Command(bin, "serve", "--data", dir, "--config", cfgFile, "--http", addr, "--mqtt", "off")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PULSELAKE_ADMIN_TOKEN="+adminToken)
	logf, _ := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	base := "http://" + addr
	waitUntil(t, 60*time.Second, "serve is ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if a := postSQL(t, base, readTok, "SELECT count(*) FROM curated.notes"); a.code != http.StatusOK {
		log, _ := os.ReadFile(logf.Name())
		t.Fatalf("querying the large table: %d %s\n%s", a.code, a.plain, log)
	}
	before := vmHWM(t, cmd.Process.Pid)
	// Each row's note repeated 20 times: about 800 MB of text in one aggregate.
	a := postSQL(t, base, readTok, "SELECT length(string_agg(repeat(note, 20), ',')) FROM curated.notes")
	after := vmHWM(t, cmd.Process.Pid)
	t.Logf("serve peak RSS before the query %d MiB, after %d MiB; answer %d %s", before>>20, after>>20, a.code, a.plain)
	if a.code != http.StatusUnprocessableEntity || a.err.Code != "memory-limit" || !strings.Contains(a.err.Message, "query.memory_limit") {
		t.Errorf("string_agg over the limit: %d %s, want 422 memory-limit", a.code, a.plain)
	}
	if after > before+limit+192<<20 {
		t.Errorf("serve's peak RSS grew from %d MiB to %d MiB with a memory limit of %d MiB", before>>20, after>>20, limit>>20)
	}
	// Spilling goes under the data directory, never the working directory.
	a = postSQL(t, base, readTok, "SELECT count(*) FROM (SELECT DISTINCT note || i FROM curated.notes, range(3) r(i))")
	if a.code != http.StatusOK && a.err.Code != "memory-limit" {
		t.Errorf("spilling query: %d %s", a.code, a.plain)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("serve wrote into its working directory: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(dir, "cache", "query-tmp")); err != nil {
		t.Errorf("no SQL temp folder under the data directory: %v", err)
	}
	// The server still answers.
	if a := postSQL(t, base, readTok, "SELECT count(*) FROM curated.notes"); a.code != http.StatusOK || a.rows[0][0] != float64(400000) {
		t.Errorf("after the failed query: %d %s", a.code, a.plain)
	}
}

// TestQueryEngineDefaults: with no query settings, serve's SQL engine has a bounded memory
// limit (a quarter of the machine's memory, at most 4 GiB, not DuckDB's 80 %) and spills
// under the data directory with a size cap (not into ./.tmp without one).
func TestQueryEngineDefaults(t *testing.T) {
	dir := t.TempDir()
	srv := startServerWith(t, dir, config.Default())
	defer srv.stop()
	a := postSQL(t, srv.HTTPURL, adminToken, "SELECT current_setting('memory_limit'), current_setting('temp_directory'), current_setting('max_temp_directory_size')")
	if a.code != http.StatusOK || len(a.rows) != 1 {
		t.Fatalf("reading the settings: %d %s", a.code, a.plain)
	}
	mem := duckSize(t, a.rows[0][0])
	var total int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &total)
		total <<= 10
	}
	if mem > 4<<30+64<<20 || total > 0 && mem > total*3/10 {
		t.Errorf("default SQL memory limit %s (machine %d MiB), want at most a quarter of memory and 4 GiB", a.rows[0][0], total>>20)
	}
	if tmp := fmt.Sprint(a.rows[0][1]); !strings.HasPrefix(tmp, filepath.Join(dir, "cache", "query-tmp")+string(filepath.Separator)) {
		t.Errorf("temp_directory %q, want a folder under %s", tmp, filepath.Join(dir, "cache", "query-tmp"))
	}
	if cap := duckSize(t, a.rows[0][2]); cap > 4<<30+64<<20 {
		t.Errorf("max_temp_directory_size %v, want 4 GiB", a.rows[0][2])
	}
}

// duckSize parses a size as DuckDB prints it ("3.7 GiB", "256.0 MiB").
func duckSize(t *testing.T, v any) int64 {
	t.Helper()
	var n float64
	var unit string
	if _, err := fmt.Sscanf(fmt.Sprint(v), "%g %s", &n, &unit); err != nil {
		t.Fatalf("size %v: %v", v, err)
	}
	mult := map[string]float64{"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
	if mult == 0 {
		t.Fatalf("size %v: unknown unit", v)
	}
	return int64(n * mult)
}
