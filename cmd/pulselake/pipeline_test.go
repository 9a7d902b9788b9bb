package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func modelDir(t *testing.T, models map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, sql := range models {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPipelineCommand(t *testing.T) {
	data := t.TempDir()
	ok := modelDir(t, map[string]string{
		"trusted.numbers.sql": "-- expect: unique(n)\nSELECT range AS n, range % 3 AS bucket FROM range(10)",
		"curated.buckets.sql": "-- expect: rows = 3\nSELECT bucket, count(*) AS n FROM trusted.numbers GROUP BY bucket",
	})
	code, out, errs := runCLI(t, "pipeline", "run", "--data", data, "--dir", ok)
	if code != exitOK {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"trusted.numbers  ok      10", "curated.buckets  ok      3"} {
		if !strings.Contains(out, want) {
			t.Fatalf("run output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, "pipeline", "list", "--dir", ok)
	if code != exitOK || !strings.Contains(out, "2  curated.buckets  replace  trusted.numbers") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}

	// A failing assertion: exit 1, the offending rows shown, the table kept.
	bad := modelDir(t, map[string]string{
		"curated.buckets.sql": "-- expect: unique(bucket)\nSELECT n % 3 AS bucket FROM trusted.numbers",
	})
	code, out, errs = runCLI(t, "pipeline", "run", "--data", data, "--dir", bad)
	if code != exitFailure || !strings.Contains(errs, "expect unique(bucket) failed: 3 duplicated values") || !strings.Contains(out, "curated.buckets  failed") {
		t.Fatalf("failing assertion: exit %d\n%s\n%s", code, out, errs)
	}

	// A cycle is a usage error naming it.
	cyc := modelDir(t, map[string]string{
		"curated.a.sql": "SELECT * FROM curated.b",
		"curated.b.sql": "SELECT * FROM curated.a",
	})
	code, _, errs = runCLI(t, "pipeline", "run", "--data", data, "--dir", cyc)
	if code != exitUsage || !strings.Contains(errs, "dependency cycle: curated.a → curated.b → curated.a") {
		t.Fatalf("cycle: exit %d\n%s", code, errs)
	}
	code, _, errs = runCLI(t, "pipeline", "run", "--data", data, "--dir", ok, "curated.nope")
	if code != exitUsage || !strings.Contains(errs, `no model "curated.nope"`) {
		t.Fatalf("unknown model: exit %d\n%s", code, errs)
	}
}
