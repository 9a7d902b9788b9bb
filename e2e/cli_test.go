package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pulselake/pulselake/internal/token"
)

func runBin(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestDemoRunsAndStops(t *testing.T) {
	out, code := runBin(t, "demo", "--duration", "7s", "--http", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s", code, out)
	}
	for _, want := range []string{"dashboard: http://127.0.0.1:", "#token=plk_", "MQTT:", "demo stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`accepted (\d+)`).FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		t.Fatalf("no live summary line:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[len(m)-1][1]); n < 500 {
		t.Errorf("demo accepted only %d readings in 7 s:\n%s", n, out)
	}
}

func TestSimulateHTTPAndMQTT(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	tok, _, _ := srv.Tokens.Create(context.Background(), token.ScopeIngest, "", "sim")
	out, code := runBin(t, "simulate", "bp", "--target", srv.HTTPURL, "--token", tok, "--devices", "5", "--rate", "400", "--duration", "2s", "--invalid", "0.1", "--seed", "3")
	if code != 0 {
		t.Fatalf("simulate bp exited %d: %s", code, out)
	}
	m := regexp.MustCompile(`sent (\d+) readings \((\d+) abnormal, (\d+) invalid\): (\d+) accepted, (\d+) duplicates, (\d+) rejected, (\d+) failed`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("unexpected output: %s", out)
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	if n(1) < 400 || n(4)+n(6) != n(1) || n(5) != 0 || n(6) != n(3) || n(7) != 0 {
		t.Errorf("sent %d, invalid %d: accepted %d, duplicates %d, rejected %d, failed %d", n(1), n(3), n(4), n(5), n(6), n(7))
	}
	out, code = runBin(t, "simulate", "hr", "--target", "mqtt://"+srv.MQTTAddr, "--token", tok, "--devices", "4", "--rate", "200", "--duration", "2s")
	if code != 0 || !strings.Contains(out, "0 failed") {
		t.Fatalf("simulate hr over MQTT exited %d: %s", code, out)
	}
	out, code = runBin(t, "simulate", "bp", "--target", srv.HTTPURL, "--token", "plk_not-a-real-token-000000", "--duration", "1s")
	if code != 1 || !strings.Contains(out, "401") {
		t.Errorf("simulate with a bad token: exit %d, output %s", code, out)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("http:\n  listen: 127.0.0.1:9999\n"), 0o600)
	os.WriteFile(bad, []byte("http:\n  listen: nowhere\ningest:\n  max_batch: -1\n  colour: red\n"), 0o600)
	if out, code := runBin(t, "check", "config", "--config", good); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("good config: exit %d: %s", code, out)
	}
	out, code := runBin(t, "check", "config", "--config", bad)
	if code != 2 || !strings.Contains(out, "bad.yaml:5") || !strings.Contains(out, "colour") {
		t.Errorf("unknown key: exit %d: %s", code, out)
	}
	os.WriteFile(bad, []byte("http:\n  listen: nowhere\ningest:\n  max_batch: -1\n"), 0o600)
	out, code = runBin(t, "check", "config", "--config", bad)
	if code != 2 || !strings.Contains(out, "bad.yaml:2: http.listen") || !strings.Contains(out, "bad.yaml:4: ingest.max_batch") {
		t.Errorf("invalid values: exit %d: %s", code, out)
	}
	if out, code := runBin(t, "serve", "--no-such-flag"); code != 2 {
		t.Errorf("unknown flag: exit %d: %s", code, out)
	}
}

// check config lists every mistake of a file in one run, each with file:line and YAML path,
// whatever its kind: an unknown key, a value of the wrong type, a bad duration (of the
// file's own type and of a time.Duration setting), a value out of range and a reference to a
// receiver that does not exist.
func TestCheckConfigListsEveryProblem(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "five.yaml")
	os.WriteFile(cfg, []byte(`http:
  listen: 127.0.0.1:8080
ingest:
  colour: red
  max_batch: lots
  body_timeout: 30 seconds
nats:
  replicas: 9
notify:
  - name: ward
    log: {}
route:
  receiver: pager
lake:
  flush_interval: 5 seconds
`), 0o600)
	out, code := runBin(t, "check", "config", "--config", cfg)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	want := []string{
		"five.yaml:4: ingest.colour: unknown field",
		"five.yaml:5: ingest.max_batch: want a whole number",
		"five.yaml:6: ingest.body_timeout: want a duration",
		"five.yaml:8: nats.replicas: must be 1..5",
		"five.yaml:13: route.receiver: no channel named \"pager\"",
		"five.yaml:15: lake.flush_interval:",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in:\n%s", w, out)
		}
	}
	if n := strings.Count(out, "five.yaml:"); n != len(want) {
		t.Errorf("%d problems listed, want %d:\n%s", n, len(want), out)
	}
}

// check config reads the rule files the configuration names and the detectors' parameters
// too: a YAML syntax error in a rule file, an unknown key, a bad duration, a value out of
// range, a route to a channel that does not exist and a bad detector parameter are listed
// in one run, each with its file:line, and it exits 2.
func TestCheckConfigRuleFilesAndDetectors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pulselake.yaml")
	os.WriteFile(filepath.Join(dir, "ward.rules.yaml"), []byte(`rules:
  - name: fever
    kind: body_temperature
    when: celsius > 38.5
    for: [5m
`), 0o600)
	os.WriteFile(cfg, []byte(`rule_files: [ward.rules.yaml]
ingest:
  colour: red
lake:
  flush_interval: 5 seconds
nats:
  replicas: 9
notify:
  - name: ward
    log: {}
route:
  receiver: pager
detectors:
  - kind: heart_rate
    value: bpm
    method: iforest
    params:
      contamination: 0.9
`), 0o600)
	out, code := runBin(t, "check", "config", "--config", cfg)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	want := []string{
		"pulselake.yaml:3: ingest.colour: unknown field",
		"pulselake.yaml:5: lake.flush_interval: want a duration",
		"pulselake.yaml:7: nats.replicas: must be 1..5",
		"pulselake.yaml:12: route.receiver: no channel named \"pager\"",
		"pulselake.yaml:18: detectors[0].params.contamination: want 'auto' or a fraction in (0, 0.5]",
		"ward.rules.yaml:5: ",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in:\n%s", w, out)
		}
	}
	if n := strings.Count(out, ".yaml:"); n != len(want) {
		t.Errorf("%d problems listed, want %d:\n%s", n, len(want), out)
	}
}

// serve checks its flags together with the file: a bad --http and the file's own mistakes
// are listed in one run (not the file's first, then the flag's on the next try), exit 2.
func TestCheckConfigServeFlagsInOnePass(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte("ingest:\n  colour: red\nnats:\n  replicas: 9\n"), 0o600)
	out, code := runBin(t, "serve", "--data", filepath.Join(dir, "data"), "--config", cfg, "--http", "nowhere", "--mqtt", "off")
	if code != 2 {
		t.Errorf("exit %d, want 2:\n%s", code, out)
	}
	for _, w := range []string{"bad.yaml:2: ingest.colour: unknown field", "bad.yaml:4: nats.replicas: must be 1..5", "--http: want host:port"} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in:\n%s", w, out)
		}
	}
}

func TestTokenCommands(t *testing.T) {
	dir := t.TempDir()
	out, code := runBin(t, "token", "create", "--scope", "ingest", "--name", "cuffs", "--data", dir)
	if code != 0 || !strings.HasPrefix(out, token.Prefix) {
		t.Fatalf("create: exit %d: %s", code, out)
	}
	out, _ = runBin(t, "token", "list", "--data", dir)
	fields := strings.Fields(strings.Split(out, "\n")[1])
	if len(fields) < 4 || fields[1] != "ingest" || fields[3] != "cuffs" {
		t.Fatalf("list: %s", out)
	}
	if out, code := runBin(t, "token", "revoke", fields[0], "--data", dir); code != 0 || !strings.Contains(out, "revoked") {
		t.Errorf("revoke: exit %d: %s", code, out)
	}
	if out, code := runBin(t, "token", "create", "--scope", "root", "--data", dir); code != 2 {
		t.Errorf("bad scope: exit %d: %s", code, out)
	}
}
