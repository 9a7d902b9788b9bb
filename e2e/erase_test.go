package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/uuid"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/lake"
)

// TestEraseReachesEveryPlace erases a subject from a running serve (a separate process) whose
// lake holds, besides the committed rows, Parquet files of the subject that no snapshot
// refers to (left by a flush that failed after writing its files and was retried), and
// whose alerting holds a firing alert, a notification log entry and a silence of
// the subject. Afterwards no file anywhere under the lake holds the subject (every file on
// disk is read, not the catalog), GET /v1/alerts and GET /v1/silences no longer name it,
// erase's report shows 0 after for every place, and the other subject is untouched.
func TestEraseReachesEveryPlace(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	cfgFile := filepath.Join(t.TempDir(), "pulselake.yaml")
	if err := os.WriteFile(cfgFile, []byte("lake: {flush_interval: 500ms}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServeWith(t, bin, dir, addr, "--config", cfgFile)
	defer func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
	}()
	base := "http://" + addr
	const gone, kept = "erase-me-17", "keep-me-42"

	// Readings of both subjects (one crisis each, so both have a firing alert).
	now := time.Now().UTC().Truncate(time.Millisecond)
	var lines [][]byte
	n := 0
	for i := range 40 {
		for _, s := range []string{gone, kept} {
			sys := 120 + i%20
			if i == 39 {
				sys = 195
			}
			lines = append(lines, fmt.Appendf(nil, `{"subject":%q,"device":"bp-%s","kind":"blood_pressure","time":%q,"values":{"systolic":%d,"diastolic":80}}`,
				s, s[:4], now.Add(time.Duration(i-40)*time.Second).Format(time.RFC3339Nano), sys))
			n++
		}
	}
	if code, body := postNDJSON(t, base, adminToken, lines); code != http.StatusAccepted {
		t.Fatalf("post: %d %v", code, body)
	}
	count := func(subject string) int64 {
		rows := apiQuery(t, base, fmt.Sprintf("SELECT count(*) FROM blood_pressure WHERE subject = '%s'", subject))
		if len(rows) != 1 {
			return -1
		}
		v, _ := rows[0][0].(float64)
		return int64(v)
	}
	waitUntil(t, 30*time.Second, "both subjects' readings are in the lake", func() bool { return count(gone) == 40 && count(kept) == 40 })
	alertsOf := func(subject string) int {
		k := 0
		for _, a := range firingAlerts(t, base) {
			if a.Subject == subject || a.Labels["subject"] == subject {
				k++
			}
		}
		return k
	}
	waitUntil(t, 15*time.Second, "both subjects' crisis alerts fire", func() bool { return alertsOf(gone) > 0 && alertsOf(kept) > 0 })
	for _, s := range []string{gone, kept} {
		body := fmt.Sprintf(`{"matchers":[{"name":"subject","value":%q,"isEqual":true}],"endsAt":%q,"createdBy":"nurse","comment":"known"}`,
			s, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		if code, resp := post(t, base+"/v1/silences", adminToken, "application/json", []byte(body)); code/100 != 2 {
			t.Fatalf("creating a silence: %d %v", code, resp)
		}
	}

	// A flush that fails after writing its files, and is retried: the test holds the SQLite
	// catalog's write lock longer than the writer's busy timeout while more readings of both
	// subjects arrive. The writer writes their Parquet files, its commit fails, and the retry
	// (after the lock is released) writes and commits new files: the first attempt's files
	// stay in the table folder, referenced by no snapshot.
	lakeDir := filepath.Join(dir, "lake")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(lakeDir, "catalog.db")+"?_pragma=busy_timeout(15000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lock, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	lines = lines[:0]
	for i := range 40 {
		for _, s := range []string{gone, kept} {
			lines = append(lines, fmt.Appendf(nil, `{"subject":%q,"device":"bp-%s","kind":"blood_pressure","time":%q,"values":{"systolic":%d,"diastolic":80}}`,
				s, s[:4], now.Add(-time.Hour+time.Duration(i)*time.Second).Format(time.RFC3339Nano), 120+i%20))
		}
	}
	if code, body := postNDJSON(t, base, adminToken, lines); code != http.StatusAccepted {
		lock.Rollback()
		t.Fatalf("post: %d %v", code, body)
	}
	// The writer reloads the table and commits again a few times (each waiting out the busy
	// timeout) before it counts the flush as failed.
	waitUntil(t, 150*time.Second, "a lake flush fails", func() bool { return metric(t, base, "pulselake_lake_flush_failures_total") >= 1 })
	lock.Rollback()
	waitUntil(t, 60*time.Second, "the retried flush commits", func() bool { return count(gone) == 80 && count(kept) == 80 })
	committed := parquetFiles(t, lakeDir, "blood_pressure")
	referenced := referencedFiles(t, dir, "blood_pressure")
	orphans := 0
	for _, f := range committed {
		if !referenced[f] && fileHolds(t, f, gone) {
			orphans++
		}
	}
	if orphans == 0 {
		t.Fatalf("fixture: the failed flush left no unreferenced Parquet file of the subject (files %q, referenced %v)", committed, referenced)
	}
	t.Logf("the failed flush left %d unreferenced Parquet file(s) of the subject", orphans)
	// What a full disk leaves besides: a truncated Parquet file and an empty metadata file.
	tableDir := filepath.Dir(committed[0])
	for filepath.Base(tableDir) != "blood_pressure" {
		tableDir = filepath.Dir(tableDir)
	}
	os.WriteFile(filepath.Join(tableDir, "data", "00001-0-"+uuid.NewString()+".parquet"), []byte("PAR1"), 0o644)
	os.WriteFile(filepath.Join(tableDir, "metadata", "00099-"+uuid.NewString()+".metadata.json"), nil, 0o644)

	// Every consumer has processed the subject's messages, so --stream can delete them all.
	waitUntil(t, 40*time.Second, "every consumer to acknowledge the subject's messages", func() bool {
		held, pending := streamHeld(t, dir, cfgFile, gone)
		return held > 0 && pending == 0
	})
	out, code := runBin(t, "erase", "--data", dir, "--config", cfgFile, "--subject", gone, "--stream")
	t.Logf("erase:\n%s", out)
	if code != 0 {
		t.Fatalf("erase exited %d", code)
	}

	// The report: a row per place, 0 after everywhere; the lake tables, the unreferenced
	// file, the alert state in serve's memory and the silence each held something before.
	rows := eraseRows(t, out)
	held := map[string]bool{}
	for place, ba := range rows {
		if ba[1] != 0 {
			t.Errorf("erase reports %d left in %s", ba[1], place)
		}
		for _, p := range []string{"lake trusted.blood_pressure", "lake landing.http", "lake ops.alerts", "no snapshot refers to", "rules: alerts", "silences", "notification", "alert state", "stream INGEST"} {
			if strings.Contains(place, p) && ba[0] > 0 {
				held[p] = true
			}
		}
	}
	for _, p := range []string{"lake trusted.blood_pressure", "lake landing.http", "lake ops.alerts", "no snapshot refers to", "rules: alerts", "silences", "notification", "alert state"} {
		if !held[p] {
			t.Errorf("erase's report has no place %q that held the subject before", p)
		}
	}

	// Every file under the lake, read from disk.
	err = filepath.WalkDir(lakeDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(p, ".parquet") && fileHolds(t, p, gone) {
			t.Errorf("%s still holds rows of %s", p, gone)
		}
		if raw, err := os.ReadFile(p); err == nil && bytes.Contains(raw, []byte(gone)) {
			t.Errorf("%s still names %s", p, gone)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if k := alertsOf(gone); k != 0 {
		t.Errorf("GET /v1/alerts lists %d alerts of the erased subject", k)
	}
	if alertsOf(kept) == 0 {
		t.Error("the other subject's alert is gone")
	}
	sil := adminGet(t, base+"/v1/silences")
	if strings.Contains(sil, gone) || !strings.Contains(sil, kept) {
		t.Errorf("GET /v1/silences after erase: %s", sil)
	}
	if c := count(kept); c != 80 {
		t.Errorf("the other subject has %d readings after erase, want 80", c)
	}
	if c := count(gone); c != 0 {
		t.Errorf("the erased subject has %d readings after erase", c)
	}
	// A second erase finds nothing anywhere.
	out, code = runBin(t, "erase", "--data", dir, "--config", cfgFile, "--subject", gone, "--dry-run")
	if code != 0 {
		t.Fatalf("erase --dry-run exited %d:\n%s", code, out)
	}
	for _, line := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		for _, w := range f {
			if v, err := strconv.Atoi(w); err == nil && v != 0 {
				t.Errorf("after erase, the dry run still counts %d in %q", v, line)
				break
			}
		}
	}
}

// metric returns the value of an unlabelled metric of serve's /metrics (0 when absent).
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// referencedFiles lists (as local paths) every data file of every retained snapshot of
// trusted.<table>, read through the catalog.
func referencedFiles(t *testing.T, dir, table string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	lc := config.Default().Lake
	lc = lc.WithDefaults(dir)
	st, err := lake.Open(ctx, quietLog(), lc)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tb, err := st.Load(ctx, lake.ZoneTrusted, table)
	if err != nil {
		t.Fatal(err)
	}
	fio, err := tb.FS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, snap := range tb.Metadata().Snapshots() {
		mans, err := snap.Manifests(fio)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mans {
			for e, err := range m.Entries(fio, true) {
				if err != nil {
					t.Fatal(err)
				}
				out[strings.TrimPrefix(e.DataFile().FilePath(), "file://")] = true
			}
		}
	}
	return out
}

// eraseRows parses erase's report: place → {before, after}.
func eraseRows(t *testing.T, out string) map[string][2]int64 {
	t.Helper()
	rows := map[string][2]int64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// PLACE... BEFORE AFTER [NOTE...]: the place is the words before the first two
		// adjacent numbers.
		for i := 1; i+1 < len(f); i++ {
			b, err1 := strconv.ParseInt(f[i], 10, 64)
			a, err2 := strconv.ParseInt(f[i+1], 10, 64)
			if err1 == nil && err2 == nil {
				rows[strings.Join(f[:i], " ")] = [2]int64{b, a}
				break
			}
		}
	}
	if len(rows) == 0 {
		t.Fatalf("no place in erase's report:\n%s", out)
	}
	return rows
}

// parquetFiles lists the Parquet files under root whose path names table.
func parquetFiles(t *testing.T, root, table string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") && strings.Contains(p, string(filepath.Separator)+table+string(filepath.Separator)) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// fileHolds reads every string and binary value of a Parquet file and reports whether one
// contains s. A file that cannot be read counts as holding it (it cannot be proved not to).
func fileHolds(t *testing.T, path, s string) bool {
	t.Helper()
	rdr, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Logf("%s is not readable Parquet (%v): counted as holding the subject", path, err)
		return true
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
	if err != nil {
		return true
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		return true
	}
	defer tbl.Release()
	want := []byte(s)
	for i := range int(tbl.NumCols()) {
		for _, chunk := range tbl.Column(i).Data().Chunks() {
			switch a := chunk.(type) {
			case *array.String:
				for j := range a.Len() {
					if a.IsValid(j) && strings.Contains(a.Value(j), s) {
						return true
					}
				}
			case *array.Binary:
				for j := range a.Len() {
					if a.IsValid(j) && bytes.Contains(a.Value(j), want) {
						return true
					}
				}
			case *array.LargeString:
				for j := range a.Len() {
					if a.IsValid(j) && strings.Contains(a.Value(j), s) {
						return true
					}
				}
			case *array.LargeBinary:
				for j := range a.Len() {
					if a.IsValid(j) && bytes.Contains(a.Value(j), want) {
						return true
					}
				}
			default:
				if chunk.DataType().ID() == arrow.STRING_VIEW || chunk.DataType().ID() == arrow.BINARY_VIEW {
					if strings.Contains(fmt.Sprint(chunk), s) {
						return true
					}
				}
			}
		}
	}
	return false
}

// adminGet returns the body of a GET asked with the admin token.
func adminGet(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &v) != nil {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}
