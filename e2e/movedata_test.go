package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// movedCounts are the row counts checked before and after the data directory moves: every
// zone, Iceberg tables written by serve and by the pipeline, and crawled tables.
var movedCounts = []struct{ name, sql string }{
	{"landing (Iceberg)", "SELECT count(*) FROM landing.http"},
	{"landing (crawled)", "SELECT count(*) FROM landing.step_trainer"},
	{"trusted", "SELECT count(*) FROM trusted.heart_rate"},
	{"trusted (pipeline)", "SELECT count(*) FROM trusted.customer_trusted"},
	{"curated", "SELECT count(*) FROM curated.machine_learning_curated"},
	{"quarantine", "SELECT count(*) FROM quarantine.readings"},
	{"ops", "SELECT count(*) FROM ops.pipeline_runs"},
}

// TestMovedDataDirStillWorks builds a data directory the way a user does (serve takes
// readings, exports inside the directory are crawled, the STEDI pipeline runs), stops, moves
// the directory with mv, and then queries every zone, reads the crawled tables, runs the
// pipeline again, erases a subject and serves again at the new place, while the old path
// does not exist.
func TestMovedDataDirStillWorks(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	dir := filepath.Join(base, "orig")
	conf := lfConfig(t, "")

	addr := freeAddr(t)
	srv := lfServe(t, bin, dir, addr, conf)
	day := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	lfPost(t, "http://"+addr, append(lfReadings("heart_rate", "p1", day, 30, 0), lfReadings("heart_rate", "p2", day, 20, 100)...))
	bad := []byte(fmt.Sprintf(`{"subject":"p3","device":"d","kind":"heart_rate","time":%d,"values":{"bpm":900}}`, day.UnixMilli()))
	postNDJSON(t, "http://"+addr, adminToken, [][]byte{bad})
	waitUntil(t, 30*time.Second, "the readings are in the lake", func() bool {
		return lfRows(t, dir, "trusted", "heart_rate") == 50 && lfRows(t, dir, "quarantine", "readings") == 1
	})
	lfStop(t, srv)

	// Exports kept inside the data directory, crawled as landing tables.
	landing := filepath.Join(dir, "exports")
	if out, code := runBin(t, "simulate", "stedi", "--out", landing, "--customers", "200", "--seed", "3"); code != 0 {
		t.Fatalf("simulate stedi exited %d: %s", code, out)
	}
	for _, tbl := range []string{"customer", "step_trainer", "accelerometer"} {
		folder := filepath.Join(landing, tbl)
		if err := os.MkdirAll(folder, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(landing, tbl+".json"), filepath.Join(folder, tbl+".json")); err != nil {
			t.Fatal(err)
		}
		if out, code := runBin(t, "catalog", "crawl", "--data", dir, "--source", folder, "--zone", "landing", "--table", tbl); code != 0 {
			t.Fatalf("crawl %s exited %d: %s", tbl, code, out)
		}
	}
	if out, code := runBin(t, "pipeline", "run", "--data", dir, "--dir", "../examples/stedi/pipeline"); code != 0 {
		t.Fatalf("pipeline run exited %d:\n%s", code, out)
	}
	before := map[string]int64{}
	for _, c := range movedCounts {
		n, out := queryCount(t, dir, c.sql)
		if n <= 0 {
			t.Fatalf("%s before the move: %s gives %d\n%s", c.name, c.sql, n, out)
		}
		before[c.name] = n
	}

	moved := filepath.Join(base, "elsewhere", "moved")
	if err := os.MkdirAll(filepath.Dir(moved), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mv", dir, moved).CombinedOutput(); err != nil {
		t.Fatalf("mv: %v %s", err, out)
	}

	for _, c := range movedCounts {
		if n, out := queryCount(t, moved, c.sql); n != before[c.name] {
			t.Errorf("%s after the move: %s gives %d, want %d\n%s", c.name, c.sql, n, before[c.name], out)
		}
	}
	out, code := runBin(t, "catalog", "list", "--data", moved, "--format", "json")
	if code != 0 {
		t.Fatalf("catalog list exited %d: %s", code, out)
	}
	var entries []struct{ Zone, Name, Kind, Location string }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &entries); err != nil {
		t.Fatalf("catalog list: %v\n%s", err, out)
	}
	for _, e := range entries {
		if strings.Contains(e.Location, dir+"/") {
			t.Errorf("catalog list: %s.%s is still at the old place %s", e.Zone, e.Name, e.Location)
		}
	}

	if out, code := runBin(t, "pipeline", "run", "--data", moved, "--dir", "../examples/stedi/pipeline"); code != 0 {
		t.Fatalf("pipeline run after the move exited %d:\n%s", code, out)
	}
	if n, out := queryCount(t, moved, "SELECT count(*) FROM curated.machine_learning_curated"); n != before["curated"] {
		t.Errorf("the pipeline run at the new place wrote %d rows, want %d\n%s", n, before["curated"], out)
	}
	if n, out := queryCount(t, moved, "SELECT count(*) FROM ops.pipeline_runs"); n != 2*before["ops"] {
		t.Errorf("run records after the second run: %d, want %d\n%s", n, 2*before["ops"], out)
	}

	if out, code := runBin(t, "erase", "--data", moved, "--subject", "p1", "--stream"); code != 0 {
		t.Fatalf("erase after the move exited %d:\n%s", code, out)
	}
	if n, out := queryCount(t, moved, "SELECT count(*) FROM trusted.heart_rate WHERE subject = 'p1'"); n != 0 {
		t.Errorf("p1 has %d heart-rate rows after erase\n%s", n, out)
	}
	if n, out := queryCount(t, moved, "SELECT count(*) FROM trusted.heart_rate"); n != 20 {
		t.Errorf("heart_rate has %d rows after erasing p1, want p2's 20\n%s", n, out)
	}

	// serve at the new place reads every kind of table over the API.
	addr = freeAddr(t)
	srv = lfServe(t, bin, moved, addr, conf)
	rows := apiQuery(t, "http://"+addr, "SELECT (SELECT count(*) FROM landing.step_trainer), (SELECT count(*) FROM trusted.heart_rate)")
	if len(rows) != 1 || rows[0][0].(float64) != float64(before["landing (crawled)"]) || rows[0][1].(float64) != 20 {
		t.Errorf("POST /v1/query at the new place: %v, want [%d 20]", rows, before["landing (crawled)"])
	}
	lfStop(t, srv)

	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the old path %s exists again after working at the new place (stat: %v)", dir, err)
	}
}
