package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestStediPipelineCommands runs the commands of examples/stedi/README.md with the built
// binary: generate the exports, crawl each into landing, run the pipeline twice, query the
// curated table and the run records.
func TestStediPipelineCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o700); err != nil { // the README's mkdir -p: commands refuse a missing data directory
		t.Fatal(err)
	}
	landing := filepath.Join(t.TempDir(), "stedi-landing")
	out, code := runBin(t, "simulate", "stedi", "--out", landing, "--customers", "300", "--seed", "1")
	if code != 0 {
		t.Fatalf("simulate stedi exited %d: %s", code, out)
	}
	for _, tbl := range []string{"customer", "step_trainer", "accelerometer"} {
		dir := filepath.Join(landing, tbl)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(landing, tbl+".json"), filepath.Join(dir, tbl+".json")); err != nil {
			t.Fatal(err)
		}
		if out, code := runBin(t, "catalog", "crawl", "--data", data, "--source", dir, "--zone", "landing", "--table", tbl); code != 0 {
			t.Fatalf("crawl %s exited %d: %s", tbl, code, out)
		}
	}
	models := []string{"trusted.customer_trusted", "trusted.accelerometer_trusted", "curated.customer_curated", "trusted.step_trainer_trusted", "curated.machine_learning_curated"}
	var mlRows string
	for run := range 2 {
		out, code := runBin(t, "pipeline", "run", "--data", data, "--dir", "../examples/stedi/pipeline")
		if code != 0 {
			t.Fatalf("pipeline run %d exited %d:\n%s", run+1, code, out)
		}
		for _, m := range models {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m) + `\s+ok\s+[1-9]\d*\s+\d+(\.\d+)?m?s$`).MatchString(out) {
				t.Fatalf("run %d: no ok line with rows and time for %s:\n%s", run+1, m, out)
			}
		}
		mlRows = regexp.MustCompile(`curated\.machine_learning_curated\s+ok\s+(\d+)`).FindStringSubmatch(out)[1]
	}
	out, code = runBin(t, "query", "--data", data, "--format", "csv", "SELECT count(*) AS n FROM curated.machine_learning_curated")
	if code != 0 || !strings.Contains(out, "n\n"+mlRows+"\n") {
		t.Fatalf("query exited %d, want %s rows:\n%s", code, mlRows, out)
	}
	out, code = runBin(t, "query", "--data", data, "--format", "csv",
		"SELECT count(DISTINCT run_id) AS runs, count(*) FILTER (WHERE status = 'ok') AS ok FROM ops.pipeline_runs")
	if code != 0 || !strings.Contains(out, "runs,ok\n2,10\n") {
		t.Fatalf("run records: exit %d:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(data, "master.key")); err != nil {
		t.Fatalf("pseudonymize() did not create the secret store's master key: %v", err)
	}
}
