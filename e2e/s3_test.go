package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/google/uuid"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/lake"
)

// s3Count runs a one-number query with the pulselake query command and a config file.
func s3Count(t *testing.T, dir, cfgFile, sql string) (int64, string) {
	t.Helper()
	out, code := runBin(t, "query", "--data", dir, "--config", cfgFile, "--format", "json", sql)
	i := strings.Index(out, "{")
	if code != 0 || i < 0 {
		return -1, out
	}
	var res struct {
		Rows [][]json.Number `json:"rows"`
	}
	if err := json.Unmarshal([]byte(out[i:]), &res); err != nil || len(res.Rows) != 1 {
		return -1, out
	}
	n, _ := res.Rows[0][0].Int64()
	return n, out
}

// parquetUnder lists the .parquet files below dir.
func parquetUnder(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// TestLakeOnS3 runs serve with its warehouse on an S3-compatible server: readings posted to
// it are queryable with `pulselake query` from the S3-resident tables with exact counts, and
// `pulselake erase` removes a subject there too, down to the replaced objects and an object
// no snapshot refers to.
func TestLakeOnS3(t *testing.T) {
	endpoint, root := startVersitygwRoot(t)
	if _, err := buildOnce(); err != nil { // before serve starts: the waits below are not for the build
		t.Fatal(err)
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "pulselake.yaml")
	yaml := fmt.Sprintf(`lake:
  warehouse: s3://%s/warehouse
  flush_interval: 1s
  s3:
    endpoint: %s
    region: us-east-1
    access_key_id: %s
    secret_access_key: %s
log:
  level: warn
`, s3Bucket, endpoint, s3Access, s3Secret)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServerWith(t, dir, cfg)
	defer srv.stop()

	rng := rand.New(rand.NewPCG(11, 12))
	var lines [][]byte
	bp, bpErased, erasedAll := 0, 0, 0
	const erased = "patient-03"
	for i := range 1200 {
		raw, _ := genReading(rng, i, false)
		var r struct{ Subject, Kind string }
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if r.Kind == "blood_pressure" {
			bp++
			if r.Subject == erased {
				bpErased++
			}
		}
		if r.Subject == erased {
			erasedAll++
		}
		lines = append(lines, raw)
	}
	if bpErased == 0 {
		t.Fatal("fixture: no blood pressure reading of the erased subject")
	}
	for i := 0; i < len(lines); i += 400 {
		if code, body := postNDJSON(t, srv.HTTPURL, adminToken, lines[i:i+400]); code != http.StatusAccepted {
			t.Fatalf("post: %d %v", code, body)
		}
	}
	start := time.Now()
	var n int64
	var out string
	waitUntil(t, 40*time.Second, "the posted blood pressure readings to be queryable from S3", func() bool {
		n, out = s3Count(t, dir, cfgFile, "SELECT count(*) FROM blood_pressure")
		return n == int64(bp)
	})
	if n, out = s3Count(t, dir, cfgFile, fmt.Sprintf("SELECT count(*) FROM blood_pressure WHERE subject = '%s'", erased)); n != int64(bpErased) {
		t.Fatalf("blood pressure rows of %s: %d, want %d: %s", erased, n, bpErased, out)
	}
	// The data lives in the bucket, not in the data directory.
	if files := parquetUnder(t, filepath.Join(root, s3Bucket, "warehouse")); len(files) == 0 {
		t.Fatal("no data file in the bucket")
	}
	if files := parquetUnder(t, filepath.Join(dir, "lake")); len(files) != 0 {
		t.Fatalf("data files in the data directory: %v", files)
	}
	// Every row of the subject (all kinds and landing) must be gone after the flush; wait
	// until the landing zone holds every posted record so that nothing of the subject is
	// still on its way.
	waitUntil(t, 40*time.Second, "every record in landing.http", func() bool {
		n, _ = s3Count(t, dir, cfgFile, "SELECT count(*) FROM landing.http")
		return n == int64(len(lines))
	})

	t.Logf("queryable after %s", time.Since(start).Round(time.Millisecond))
	// The stream's consumers acknowledge right after their commits: wait until none of the
	// subject's messages is pending, so that --stream can delete them all.
	waitUntil(t, 40*time.Second, "every consumer to acknowledge the subject's messages", func() bool {
		held, pending := streamHeld(t, dir, cfgFile, erased)
		return held > 0 && pending == 0
	})
	// An object a failed flush left: a copy of a data object of blood_pressure under a new
	// name, referenced by no snapshot. Erase must delete it too (the check of the bucket
	// against the current snapshot below fails otherwise).
	var bpObjects []string
	for _, f := range parquetUnder(t, filepath.Join(root, s3Bucket, "warehouse")) {
		if strings.Contains(f, string(filepath.Separator)+"blood_pressure"+string(filepath.Separator)) {
			bpObjects = append(bpObjects, f)
		}
	}
	if len(bpObjects) == 0 {
		t.Fatal("no blood_pressure object in the bucket")
	}
	data, err := os.ReadFile(bpObjects[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(bpObjects[0]), "00000-9-"+uuid.NewString()+".parquet"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	out, code := runBin(t, "erase", "--data", dir, "--config", cfgFile, "--subject", erased, "--stream")
	t.Logf("erase took %s", time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("erase exited %d:\n%s", code, out)
	}
	// The proof table: every valid reading of the subject was one row in landing.http and
	// one in its trusted table; none is left.
	var landing, trusted int
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "lake" || f[2] != "(rows)" {
			continue
		}
		var before, after int
		fmt.Sscan(f[3], &before)
		fmt.Sscan(f[4], &after)
		if after != 0 {
			t.Errorf("erase left %d rows in %s", after, f[1])
		}
		switch {
		case f[1] == "landing.http":
			landing += before
		case strings.HasPrefix(f[1], "trusted."):
			trusted += before
		}
	}
	if landing != erasedAll || trusted != erasedAll || !strings.Contains(out, "erased subject") {
		t.Errorf("erase counted %d landing and %d trusted rows of %s, want %d each:\n%s", landing, trusted, erased, erasedAll, out)
	}
	if n, out = s3Count(t, dir, cfgFile, "SELECT count(*) FROM blood_pressure"); n != int64(bp-bpErased) {
		t.Errorf("blood pressure rows after erase: %d, want %d: %s", n, bp-bpErased, out)
	}
	if n, out = s3Count(t, dir, cfgFile, fmt.Sprintf("SELECT (SELECT count(*) FROM landing.http WHERE subject = '%[1]s') + (SELECT count(*) FROM heart_rate WHERE subject = '%[1]s')", erased)); n != 0 {
		t.Errorf("rows of %s after erase: %d: %s", erased, n, out)
	}

	// The replaced objects are deleted from the bucket: the table's data folder holds
	// exactly the files of its current snapshot.
	lc := cfg.Lake.WithDefaults(dir)
	st, err := lake.Open(context.Background(), quietLog(), lc)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tb, err := st.Load(context.Background(), lake.ZoneTrusted, "blood_pressure")
	if err != nil {
		t.Fatal(err)
	}
	current, err := lake.DataFiles(context.Background(), tb)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range current {
		current[i] = filepath.Join(root, strings.TrimPrefix(f, "s3://"))
	}
	slices.Sort(current)
	if onDisk := parquetUnder(t, filepath.Join(root, strings.TrimPrefix(tb.Location(), "s3://"))); !slices.Equal(onDisk, current) {
		t.Errorf("objects in the bucket %q, current snapshot %q", onDisk, current)
	}

	if held, _ := streamHeld(t, dir, cfgFile, erased); held != 0 {
		t.Errorf("the ingest stream still holds %d messages of %s", held, erased)
	}

	// The SQL engine's local copies of S3 files (filled by the queries above) hold no row of
	// the subject any more.
	cached := parquetUnder(t, filepath.Join(dir, "cache"))
	if len(cached) == 0 {
		t.Error("the query cache is empty; the check below would prove nothing")
	}
	for _, f := range cached {
		if n := subjectRowsInParquet(t, f, erased); n != 0 {
			t.Errorf("cached copy %s holds %d rows of %s", f, n, erased)
		}
	}

	// A dry run afterwards finds nothing; a bad call is a usage error.
	if out, code := runBin(t, "erase", "--data", dir, "--config", cfgFile, "--subject", erased, "--dry-run"); code != 0 || !strings.Contains(out, "nothing was changed") {
		t.Errorf("dry run: exit %d:\n%s", code, out)
	}
	if out, code := runBin(t, "erase", "--data", dir, "--config", cfgFile); code != 2 {
		t.Errorf("erase without --subject: exit %d:\n%s", code, out)
	}
}

// subjectRowsInParquet counts the rows of a Parquet file whose subject column equals subject.
func subjectRowsInParquet(t *testing.T, path, subject string) int {
	t.Helper()
	rdr, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	idx := tbl.Schema().FieldIndices("subject")
	if len(idx) == 0 {
		return 0
	}
	n := 0
	for _, chunk := range tbl.Column(idx[0]).Data().Chunks() {
		col, ok := chunk.(*array.String)
		if !ok {
			t.Fatalf("%s: subject column is %s", path, chunk.DataType())
		}
		for i := range col.Len() {
			if col.IsValid(i) && col.Value(i) == subject {
				n++
			}
		}
	}
	return n
}

// streamHeld runs a dry-run erase with --stream and returns how many ingest stream messages
// hold the subject and how many of them are pending.
func streamHeld(t *testing.T, dir, cfgFile, subject string) (held, pending int) {
	t.Helper()
	out, code := runBin(t, "erase", "--data", dir, "--config", cfgFile, "--subject", subject, "--stream", "--dry-run")
	if code != 0 {
		t.Fatalf("erase --stream --dry-run exited %d:\n%s", code, out)
	}
	for _, line := range strings.Split(out, "\n") {
		// "stream INGEST <held> [<pending> message(s) not yet processed ...]"
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "stream" && f[1] == "INGEST" {
			fmt.Sscan(f[2], &held)
			if len(f) > 3 {
				fmt.Sscan(f[3], &pending)
			}
			return held, pending
		}
	}
	t.Fatalf("no INGEST line in:\n%s", out)
	return 0, 0
}
