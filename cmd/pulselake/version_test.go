package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// TestVersionCommand runs `pulselake version` and checks each line: the dependency versions
// are those go.mod requires, and DuckDB's engine reports the library version the duckdb-go
// module version names (v2.MMmmpp.x links DuckDB vM.m.p).
func TestVersionCommand(t *testing.T) {
	code, out, errs := runCLI(t, "version")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			t.Fatalf("line %q has no value", sc.Text())
		}
		lines[f[0]] = strings.Join(f[1:], " ")
	}
	required := goModRequires(t, "../../go.mod")
	duckdbGo := required["github.com/duckdb/duckdb-go/v2"]
	for _, tt := range []struct{ label, want string }{
		{"pulselake", "devel"}, // a test binary is built from the checkout
		{"go", runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH},
		{"duckdb", duckdbLibrary(t, duckdbGo)},
		{"duckdb-go", duckdbGo},
		{"nats-server", required["github.com/nats-io/nats-server/v2"]},
		{"iceberg-go", required["github.com/apache/iceberg-go"]},
	} {
		if tt.want == "" {
			t.Fatalf("go.mod does not require the module of %s", tt.label)
		}
		if got, ok := lines[tt.label]; !ok || got != tt.want {
			t.Errorf("%s: got %q (present %v), want %q; output:\n%s", tt.label, got, ok, tt.want, out)
		}
	}
}

// goModRequires maps each module go.mod requires to its version.
func goModRequires(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	req := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && strings.HasPrefix(f[1], "v") {
			req[f[0]] = f[1]
		}
	}
	return req
}

// duckdbLibrary is the DuckDB version a duckdb-go module version links: v2.10506.0 → v1.5.6.
func duckdbLibrary(t *testing.T, module string) string {
	t.Helper()
	m := regexp.MustCompile(`^v2\.(\d+)\.`).FindStringSubmatch(module)
	if m == nil {
		t.Fatalf("duckdb-go version %q is not v2.MMmmpp.x", module)
	}
	n, _ := strconv.Atoi(m[1])
	return fmt.Sprintf("v%d.%d.%d", n/10000, n/100%100, n%100)
}

// TestWriteVersionStamped checks the lines of a binary built from a tagged, stamped checkout.
func TestWriteVersionStamped(t *testing.T) {
	info := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/pulselake/pulselake", Version: "v1.4.0"},
		Deps: []*debug.Module{
			{Path: "github.com/nats-io/nats-server/v2", Version: "v2.15.2"},
			{Path: "github.com/apache/iceberg-go", Version: "v0.7.0", Replace: &debug.Module{Path: "../iceberg-go", Version: "v0.7.1"}},
		},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3b99886f"}, {Key: "vcs.time", Value: "2026-12-03T13:11:33Z"}, {Key: "vcs.modified", Value: "true"},
		},
	}
	var out strings.Builder
	if err := writeVersion(&out, info, "v1.5.6"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"pulselake    v1.4.0",
		"commit       3b99886f (modified)",
		"commit-time  2026-12-03T13:11:33Z",
		"duckdb       v1.5.6",
		"duckdb-go    not linked",
		"nats-server  v2.15.2",
		"iceberg-go   v0.7.1 (replaces v0.7.0)",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("no line %q in:\n%s", want, out.String())
		}
	}
}
