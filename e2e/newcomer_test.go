package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/logbuf"
)

// The first hour of a new user: the demo's data directory, commands run against the wrong data
// directory, mistyped subcommands, a simulator with a wrong token or no server, a busy MQTT port.

// cleanEnv is the environment without pulselake's variables, as a new user's shell has it.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PULSELAKE_") {
			env = append(env, kv)
		}
	}
	return env
}

// runIn runs the binary in dir with a clean environment and returns its combined output and exit code.
func runIn(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = dir, cleanEnv()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// TestDemoDataDirectory runs the demo as the README says and then the CLI against its data:
// with --data the directory is used, printed and kept; without it the printed temporary
// directory is removed when the demo stops.
func TestDemoDataDirectory(t *testing.T) {
	data := filepath.Join(t.TempDir(), "my demo") // created by the demo; a space to quote
	out, code := runIn(t, t.TempDir(), "demo", "--data", data, "--duration", "8s", "--http", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		"dashboard: http://127.0.0.1:", "/#token=plk_", "(admin token: plk_",
		"data:      " + data + "  (kept after the demo stops)",
		"CLI:       pulselake query --data '" + data + "' ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	admin, err := os.ReadFile(filepath.Join(data, "admin-token"))
	if err != nil || !strings.Contains(out, "(admin token: "+strings.TrimSpace(string(admin))+")") {
		t.Errorf("the printed admin token is not the one in %s/admin-token (%v)", data, err)
	}
	q, code := runIn(t, t.TempDir(), "query", "--data", data, "--format", "csv", "SELECT count(*) AS n FROM heart_rate")
	m := regexp.MustCompile(`n\n(\d+)`).FindStringSubmatch(q)
	if code != 0 || m == nil {
		t.Fatalf("query on the demo's data: exit %d\n%s", code, q)
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 {
		t.Errorf("no heart-rate rows in the demo's lake:\n%s", q)
	}
	if tl, code := runIn(t, t.TempDir(), "token", "list", "--data", data); code != 0 || !strings.Contains(tl, "demo devices") {
		t.Errorf("token list on the demo's data: exit %d\n%s", code, tl)
	}

	out, code = runIn(t, t.TempDir(), "demo", "--duration", "5s", "--http", "127.0.0.1:0")
	m = regexp.MustCompile(`data:      (\S+)  \(removed when the demo stops; --data DIR keeps it\)`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("demo without --data: exit %d, no temporary data line:\n%s", code, out)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the demo's temporary directory %s is still there after it stopped (%v)", m[1], err)
	}
}

// TestMissingDataDirectoryRefused runs the commands that read the data directory where it does
// not exist: each exits 2 naming it and how to get one, and none creates it. Commands that need
// no data directory still run.
func TestMissingDataDirectoryRefused(t *testing.T) {
	cwd := t.TempDir()
	missing := filepath.Join(t.TempDir(), "pulselake-dta") // a typo
	for _, args := range [][]string{
		{"query", "SELECT count(*) FROM heart_rate"},
		{"token", "list"},
		{"token", "create", "--scope", "read"},
		{"silence", "list"},
		{"erase", "--subject", "patient-1"},
		{"catalog", "list"},
		{"connect", "list"},
		{"pipeline", "run", "--dir", cwd},
		{"report", "heart", "--subject", "s", "--out", filepath.Join(cwd, "out")},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			for _, data := range []struct{ flag, dir string }{{missing, missing}, {"", filepath.Join(cwd, "pulselake-data")}} {
				a := args
				if data.flag != "" {
					a = append(append([]string(nil), args...), "--data", data.flag)
				}
				out, code := runIn(t, cwd, a...)
				if code != 2 || !strings.Contains(out, "data directory "+data.dir+" does not exist") || !strings.Contains(out, "--data DIR") || !strings.Contains(out, "pulselake serve --data") {
					t.Errorf("%v: exit %d, want 2 naming %s:\n%s", a, code, data.dir, out)
				}
				if _, err := os.Stat(data.dir); !os.IsNotExist(err) {
					t.Errorf("%v created %s (%v)", a, data.dir, err)
				}
			}
		})
	}
	if out, code := runIn(t, cwd, "rules", "test", "--data", missing, filepath.Join(cwd, "none.yaml")); strings.Contains(out, "data directory") || code == 0 {
		t.Errorf("rules test needs no data directory, and a missing file fails: exit %d\n%s", code, out)
	}
	if out, code := runIn(t, cwd, "version", "--data", missing); code != 0 {
		t.Errorf("version with a missing data directory: exit %d\n%s", code, out)
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
		t.Errorf("files created in the working directory: %v", entries)
	}
}

// TestUnknownSubcommand types subcommands wrong: exit 2, the mistake named, a suggestion.
func TestUnknownSubcommand(t *testing.T) {
	for _, c := range []struct {
		args    []string
		suggest string
	}{
		{[]string{"token", "crate"}, "create"},
		{[]string{"silence", "lsit"}, "list"},
		{[]string{"catalog", "dll"}, "ddl"},
		{[]string{"ecg", "evl"}, "eval"},
		{[]string{"pipeline", "rnu"}, "run"},
		{[]string{"check", "conifg"}, "config"},
		{[]string{"connect", "revok"}, "revoke"},
		{[]string{"rules", "tset"}, "test"},
		{[]string{"srve"}, "serve"},
	} {
		out, code := runIn(t, t.TempDir(), c.args...)
		want := ` command "` + c.args[len(c.args)-1] + `"` // "unknown command", or "unknown provider or command"
		if code != 2 || !strings.Contains(out, want) || !strings.Contains(out, "did you mean "+c.suggest) && !strings.Contains(out, "Did you mean this?\n\t"+c.suggest) {
			t.Errorf("%v: exit %d, want 2 with %s and the suggestion %q:\n%s", c.args, code, want, c.suggest, out)
		}
	}
	if out, code := runIn(t, t.TempDir(), "token"); code != 0 || !strings.Contains(out, "Available Commands") {
		t.Errorf("token without a subcommand: exit %d, want its help:\n%s", code, out)
	}
}

// TestSimulateRefusedToken runs the simulator with an unknown token (401) and a read token
// (403) against a serve process: it stops at once with one error saying what token it needs,
// instead of warning for the whole duration.
func TestSimulateRefusedToken(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	srv := startServe(t, bin, dir, addr)
	defer func() { srv.Process.Kill(); srv.Wait() }()
	out, code := runBin(t, "token", "create", "--scope", "read", "--name", "viewer", "--data", dir)
	read := regexp.MustCompile(`plk_\S+`).FindString(out)
	if code != 0 || read == "" {
		t.Fatalf("token create: exit %d\n%s", code, out)
	}
	for _, c := range []struct{ token, status string }{{"plk_not-a-real-token-000000", "401"}, {read, "403"}} {
		start := time.Now()
		out, code := runBin(t, "simulate", "bp", "--target", "http://"+addr, "--token", c.token, "--duration", "60s")
		took := time.Since(start)
		if code != 1 || !strings.Contains(out, "refused the token") || !strings.Contains(out, c.status) || !strings.Contains(out, "token create --scope ingest") {
			t.Errorf("status %s: exit %d, want 1 with the status and what token to use:\n%s", c.status, code, out)
		}
		if took > 15*time.Second {
			t.Errorf("status %s: simulate ran %s of its 60 s", c.status, took)
		}
		if n := strings.Count(out, "level=WARN"); n > 0 {
			t.Errorf("status %s: %d warnings besides the error:\n%s", c.status, n, out)
		}
	}
}

// TestSimulateServerDown starts the simulator before its server: it says once that the server
// is not reachable, waits quietly with back-off, and once serve is up sends everything, one line
// saying so.
func TestSimulateServerDown(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	var out logbuf.Buffer
	sim := exec.Command(bin, "simulate", "hr", "--target", "http://"+addr, "--token", adminToken, "--devices", "4", "--rate", "20", "--duration", "40s")
	sim.Stdout, sim.Stderr = &out, &out
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sim.Wait() }()
	defer func() {
		sim.Process.Kill()
		<-done
	}()
	waitUntil(t, 20*time.Second, "simulate to say the server is not reachable", func() bool {
		return strings.Contains(out.String(), "server not reachable")
	})
	// Let it retry a few seconds while the server is down: it must stay quiet.
	quiet := time.Now().Add(3 * time.Second)
	waitUntil(t, 10*time.Second, "three quiet seconds", func() bool { return time.Now().After(quiet) })
	srv := startServe(t, bin, dir, addr)
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var werr error
	select {
	case werr = <-done:
		done <- werr // for the deferred wait
	case <-time.After(90 * time.Second):
		t.Fatalf("simulate did not finish:\n%s", out.String())
	}
	got := out.String()
	if werr != nil {
		t.Fatalf("simulate failed: %v\n%s", werr, got)
	}
	if n := strings.Count(got, "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want the one saying the server is not reachable:\n%s", n, got)
	}
	if !strings.Contains(got, "server reachable again") {
		t.Errorf("no line saying the server is back:\n%s", got)
	}
	m := regexp.MustCompile(`sent (\d+) readings .*: (\d+) accepted, \d+ duplicates, \d+ rejected, (\d+) failed`).FindStringSubmatch(got)
	if m == nil || m[3] != "0" || m[1] != m[2] {
		t.Errorf("want every reading sent accepted and none failed:\n%s", got)
	}
}

// TestMQTTPortInUse starts serve on an MQTT port something else holds: it fails at once naming
// the address and the setting to change.
func TestMQTTPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "serve", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--mqtt", l.Addr().String())
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err == nil || !strings.Contains(string(out), "MQTT listen address "+l.Addr().String()+" is not available") || !strings.Contains(string(out), "--mqtt") {
		t.Errorf("serve with its MQTT port taken: %v\n%s", err, out)
	}
	if took > 10*time.Second {
		t.Errorf("serve took %s to say its MQTT port is taken", took)
	}
}

// TestCheckConfigEveryProblemWithBadKinds gives check config a file whose declared kind is
// invalid beside bad rules (in the file and in a rule file) and other mistakes: every problem is
// listed with file:line in one run, the rules' too, although they are checked against the kinds.
func TestCheckConfigEveryProblemWithBadKinds(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pulselake.yaml")
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pulselake.yaml", `http: {listen: 127.0.0.1:8080, bogus: 1}
kinds:
  - name: glucose
    values: [{name: mg_dl, min: 10, max: 1}]
rules:
  - name: crisis
    kind: blood_pressure
    when: systolic >=
  - name: sugar
    kind: glucose
    when: mg_dl > 300 && nope > 1
rule_files: [more.yaml]
`)
	write("more.yaml", "rules:\n  - name: fast\n    kind: heart_rate\n    when: bpm > 120\n    for: 5parsecs\n")
	out, code := runIn(t, dir, "check", "config", "--config", cfg)
	if code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", code, out)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(cfg) + `:\d+: kinds: declaring kind "glucose": value "mg_dl" has min 10 above max 1`).MatchString(out) {
		t.Errorf("the kind's problem is not listed with file:line:\n%s", out)
	}
	for _, want := range []string{
		cfg + ":1: http.bogus: unknown field",
		cfg + ":8: rules[0].when:",
		cfg + ":11: rules[1].when:",
		filepath.Join(dir, "more.yaml") + ":5: rules[0].for:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestECGEvalWarnsOnTrainingRecords evaluates models on records they were trained on: the
// default model on its own training record, and a model trained on record 101 on 101 and 106.
// The warning names exactly the overlapping records, and is absent when there are none.
func TestECGEvalWarnsOnTrainingRecords(t *testing.T) {
	records, err := filepath.Abs("../../shared/data/mitdb-ds1")
	if err == nil {
		_, err = os.Stat(filepath.Join(records, "101.hea"))
	}
	if err != nil {
		t.Skipf("MIT-BIH DS1 records not found at ../shared/data/mitdb-ds1 beside the checkout (README: Data for the tests): %v", err)
	}
	model := filepath.Join(t.TempDir(), "m101.json")
	if out, code := runIn(t, t.TempDir(), "ecg", "train", "--records", records, "--list", "101", "--out", model); code != 0 {
		t.Fatalf("ecg train: exit %d\n%s", code, out)
	}
	for _, c := range []struct {
		args []string
		warn string // "" for none
	}{
		{[]string{"--list", "101"}, "trained on 1 of the evaluated records (101)"},
		{[]string{"--list", "101,106", "--model", model}, "trained on 1 of the evaluated records (101)"},
		{[]string{"--list", "106", "--model", model}, ""},
	} {
		out, code := runIn(t, t.TempDir(), append([]string{"ecg", "eval", "--records", records}, c.args...)...)
		if code != 0 || !strings.Contains(out, "accuracy") {
			t.Fatalf("ecg eval %v: exit %d\n%s", c.args, code, out)
		}
		if got := strings.Contains(out, "warning: the model was trained on"); got != (c.warn != "") || !strings.Contains(out, c.warn) {
			t.Errorf("ecg eval %v: want warning %q:\n%s", c.args, c.warn, out)
		}
	}
}

// TestReadingsStatusCodes checks the status codes README gives for a body of which nothing is
// accepted: one malformed reading is rejected like any other (422 invalid-json), a body that
// cannot be split into records is 400.
func TestReadingsStatusCodes(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	good := `{"subject":"p1","device":"hr-1","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70}}`
	for _, c := range []struct {
		name, ctype, body string
		status            int
		code              string
	}{
		{"one malformed reading", "application/json", `{"subject":"p1","kind":`, 422, "invalid-json"},
		{"a malformed NDJSON line among good ones", "application/x-ndjson", good + "\n{oops\n", 207, "invalid-json"},
		{"an array that cannot be split", "application/json", "[" + good + ",", 400, "invalid-json"},
		{"an empty body", "application/json", "", 400, ""},
	} {
		status, body := post(t, srv.HTTPURL+"/v1/readings", adminToken, c.ctype, []byte(c.body))
		if status != c.status {
			t.Errorf("%s: status %d, want %d: %v", c.name, status, c.status, body)
			continue
		}
		if c.code != "" {
			rej, _ := body["rejected"].([]any)
			if len(rej) != 1 || rej[0].(map[string]any)["code"] != c.code {
				t.Errorf("%s: rejected %v, want one %s", c.name, body["rejected"], c.code)
			}
		}
	}
}

// TestSimulateMQTTRefusedToken sends over MQTT with a token the server does not know: the
// connection is refused (a CONNACK "not authorized", or the connection closed at CONNECT) and
// the simulator says which token it needs instead of retrying.
func TestSimulateMQTTRefusedToken(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	out, code := runBin(t, "simulate", "hr", "--target", "mqtt://"+srv.MQTTAddr, "--token", "plk_not-a-real-token-000000", "--duration", "30s")
	if code != 1 || !strings.Contains(out, "refused the token") || !strings.Contains(out, "token create --scope ingest") || !strings.Contains(out, srv.MQTTAddr) {
		t.Errorf("exit %d, want 1 saying the token was refused and which to use:\n%s", code, out)
	}
}
