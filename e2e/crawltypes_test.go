package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// stediExports is where the real STEDI course exports are expected (customer/landing,
// step_trainer/landing, accelerometer/landing, folders of JSON-lines files).
const stediExports = "../../shared/data/stedi"

// TestCrawledStediTypedAsCatalog crawls STEDI JSON exports with the binary, checks that
// `catalog list` and DESCRIBE (through `pulselake query`) give the same types, serial numbers
// as VARCHAR although they look like UUIDs, and runs the example pipeline, whose step-trainer
// model compares landing serial numbers with a curated VARCHAR column without a cast.
func TestCrawledStediTypedAsCatalog(t *testing.T) {
	tests := []struct {
		name string
		// folders returns the folder of each landing table.
		folders func(t *testing.T) map[string]string
		// allOK requires every model to pass; the real exports may break the last model's
		// unique(reading_time) assertion (examples/stedi/README.md).
		allOK bool
	}{
		{name: "generated", allOK: true, folders: func(t *testing.T) map[string]string {
			out := filepath.Join(t.TempDir(), "stedi")
			if o, code := runBin(t, "simulate", "stedi", "--out", out, "--customers", "300", "--seed", "5"); code != 0 {
				t.Fatalf("simulate stedi exited %d: %s", code, o)
			}
			m := map[string]string{}
			for _, tbl := range []string{"customer", "step_trainer", "accelerometer"} {
				dir := filepath.Join(out, tbl)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(filepath.Join(out, tbl+".json"), filepath.Join(dir, tbl+".json")); err != nil {
					t.Fatal(err)
				}
				m[tbl] = dir
			}
			return m
		}},
		{name: "course exports", folders: func(t *testing.T) map[string]string {
			m := map[string]string{}
			for _, tbl := range []string{"customer", "step_trainer", "accelerometer"} {
				dir, _ := filepath.Abs(filepath.Join(stediExports, tbl, "landing"))
				if _, err := os.Stat(dir); err != nil {
					t.Skipf("the STEDI exports are not on this machine (%s: %v); put the course's customer/, step_trainer/ and accelerometer/ folders there", stediExports, err)
				}
				m[tbl] = dir
			}
			return m
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			folders := tt.folders(t)
			data := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(data, 0o700); err != nil { // commands refuse a missing data directory
				t.Fatal(err)
			}
			for tbl, dir := range folders {
				if out, code := runBin(t, "catalog", "crawl", "--data", data, "--source", dir, "--zone", "landing", "--table", tbl); code != 0 {
					t.Fatalf("crawl %s exited %d: %s", tbl, code, out)
				}
			}

			out, code := runBin(t, "catalog", "list", "--data", data, "--format", "json")
			if code != 0 {
				t.Fatalf("catalog list exited %d: %s", code, out)
			}
			var entries []struct {
				Zone, Name string
				Columns    []struct {
					Name    string `json:"name"`
					SQLType string `json:"sql_type"`
				}
			}
			if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &entries); err != nil {
				t.Fatalf("catalog list: %v\n%s", err, out)
			}
			for _, e := range entries {
				var listed []string
				for _, c := range e.Columns {
					listed = append(listed, c.Name+","+c.SQLType)
				}
				out, code := runBin(t, "query", "--data", data, "--format", "csv",
					"SELECT column_name, column_type FROM (DESCRIBE "+e.Zone+"."+e.Name+")")
				if code != 0 {
					t.Fatalf("DESCRIBE %s.%s exited %d: %s", e.Zone, e.Name, code, out)
				}
				described := strings.Split(strings.TrimSpace(out), "\n")[1:]
				if strings.Join(described, "\n") != strings.Join(listed, "\n") {
					t.Errorf("%s.%s: catalog list shows\n%s\nDESCRIBE shows\n%s", e.Zone, e.Name, strings.Join(listed, "\n"), strings.Join(described, "\n"))
				}
				if e.Name == "step_trainer" && !slices.Contains(listed, "serialNumber,VARCHAR") {
					t.Errorf("landing.step_trainer serialNumber is not VARCHAR: %v", listed)
				}
			}

			out, code = runBin(t, "pipeline", "run", "--data", data, "--dir", "../examples/stedi/pipeline")
			if strings.Contains(out, "Cannot compare") {
				t.Fatalf("the pipeline compared values of different types:\n%s", out)
			}
			for _, m := range []string{"trusted.customer_trusted", "curated.customer_curated", "trusted.step_trainer_trusted"} {
				if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(m) + `\s+ok\s+[1-9]\d*\s`).MatchString(out) {
					t.Fatalf("no ok line with rows for %s (exit %d):\n%s", m, code, out)
				}
			}
			if tt.allOK && code != 0 {
				t.Fatalf("pipeline run exited %d:\n%s", code, out)
			}
			// The query of the report, as a data engineer writes it.
			n, out := queryCount(t, data, `SELECT count(*) FROM landing.step_trainer s
				WHERE s.serialNumber IN (SELECT serial_number FROM curated.customer_curated)`)
			if n <= 0 {
				t.Fatalf("step-trainer readings of curated customers' devices: %d\n%s", n, out)
			}
		})
	}
}
