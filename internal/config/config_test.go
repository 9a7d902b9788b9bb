package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pulselake.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadOverDefaults(t *testing.T) {
	c, err := Load(write(t, "http:\n  listen: 0.0.0.0:9000\ningest:\n  dedup_window: 30s\nkinds:\n  - name: glucose\n    values:\n      - {name: mg_dl, unit: mg/dL, min: 10, max: 1000, required: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "0.0.0.0:9000" || c.Ingest.DedupWindow.D() != 30*time.Second || c.Ingest.MaxBatch != 10000 || c.MQTT.Listen != "127.0.0.1:1883" {
		t.Errorf("got %+v", c)
	}
	reg, err := c.Registry()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Kind("glucose"); !ok {
		t.Error("declared kind glucose missing from the registry")
	}
}

func TestUnknownKeyHasLine(t *testing.T) {
	_, err := Load(write(t, "http:\n  listen: 127.0.0.1:8080\ningest:\n  max_bach: 5\n"))
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 {
		t.Fatalf("err = %v", err)
	}
	if ps[0].Line != 4 || !strings.Contains(ps[0].Msg, "max_bach") || !strings.HasSuffix(ps[0].File, "pulselake.yaml") {
		t.Errorf("problem = %+v", ps[0])
	}
}

func TestValidateReportsEveryProblemWithLine(t *testing.T) {
	c, err := Load(write(t, "http:\n  listen: localhost\nnats:\n  replicas: 9\ningest:\n  max_batch: 0\nlog:\n  level: loud\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	want := map[string]int{"http.listen": 2, "nats.replicas": 4, "ingest.max_batch": 6, "log.level": 8}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems: %v", len(ps), err)
	}
	for _, p := range ps {
		if want[p.Path] != p.Line {
			t.Errorf("%s at line %d, want %d (%s)", p.Path, p.Line, want[p.Path], p)
		}
	}
}

func TestBadDuration(t *testing.T) {
	_, err := Load(write(t, "ingest:\n  dedup_window: soon\n"))
	var ps Problems
	if !errors.As(err, &ps) || ps[0].Line != 2 || !strings.Contains(ps[0].Msg, "soon") {
		t.Fatalf("err = %v", err)
	}
}

func TestAlertingProblemsHaveLines(t *testing.T) {
	c, err := Load(write(t, "rules:\n  - name: x\n    kind: blood_pressure\n    when: systolc > 1\nnotify:\n  - name: n\n    webhook: {url: \"not a url\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var ps Problems
	if !errors.As(c.Validate(), &ps) {
		t.Fatal("invalid rule and channel accepted")
	}
	lines := map[int]bool{}
	for _, p := range ps {
		lines[p.Line] = true
	}
	if !lines[4] || !lines[7] {
		t.Errorf("want problems at lines 4 (when) and 7 (webhook url), got %v", ps)
	}
}

func TestOverloadKeys(t *testing.T) {
	c, err := Load(write(t, "ingest:\n  body_timeout: 5s\n  publish_wait: 250ms\nruntime:\n  memory_limit: 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Ingest.BodyTimeout.D() != 5*time.Second || c.Ingest.PublishWait.D() != 250*time.Millisecond || c.Runtime.MemoryLimitBytes() != 0 {
		t.Errorf("got %+v %+v", c.Ingest, c.Runtime)
	}
	if d := Default(); d.Ingest.BodyTimeout.D() != 30*time.Second || d.Ingest.PublishWait.D() != 5*time.Second || d.Runtime.MemoryLimitBytes() != 768<<20 {
		t.Errorf("defaults: %+v %+v", d.Ingest, d.Runtime)
	}
	c, err = Load(write(t, "ingest:\n  body_timeout: 0s\n  publish_wait: 2m\n  dedup_max_entries: 100000001\nruntime:\n  memory_limit: 1000\n"))
	if err != nil {
		t.Fatal(err)
	}
	var ps Problems
	if err := c.Validate(); !errors.As(err, &ps) || len(ps) != 4 {
		t.Fatalf("want 4 problems, got %v", err)
	}
	for i, want := range []int{2, 3, 4, 6} {
		if ps[i].Line != want {
			t.Errorf("problem %d at line %d, want %d: %+v", i, ps[i].Line, want, ps[i])
		}
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]int64{"": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "2GiB": 2 << 30, "2GB": 2e9,
		"1.5 GB": 1.5e9, "64 mib": 64 << 20, "10KB": 10000, "1TiB": 1 << 40, "100B": 100}
	for in, want := range good {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "2XB", "-1GB", "GB", "1..2GB", "9999999999TiB"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) accepted", in)
		}
	}
}

func TestQueryLimitsValidated(t *testing.T) {
	c, err := Load(write(t, "query:\n  memory_limit: 2 lots\n  temp_dir_max_bytes: -1\n  threads: -2\n"))
	if err != nil {
		t.Fatal(err)
	}
	var ps Problems
	if err := c.Validate(); !errors.As(err, &ps) {
		t.Fatalf("err = %v", err)
	}
	want := map[string]int{"query.memory_limit": 2, "query.temp_dir_max_bytes": 3, "query.threads": 4}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems: %v", len(ps), ps)
	}
	for _, p := range ps {
		if want[p.Path] != p.Line {
			t.Errorf("%s at line %d, want %d (%s)", p.Path, p.Line, want[p.Path], p)
		}
	}
	c, err = Load(write(t, "query:\n  memory_limit: 512MiB\n  temp_dir_max_bytes: 1073741824\n  threads: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.Query.MemoryLimitBytes() != 512<<20 {
		t.Fatalf("valid query limits: %v, %d", err, c.Query.MemoryLimitBytes())
	}
}

// Check lists every mistake of a file, of every kind, each once, with its line and path.
func TestCheckListsEveryMistake(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []Problem // File is the file's path
	}{
		{"none", "http:\n  listen: 127.0.0.1:9000\n", nil},
		{"syntax", "http:\n  listen: [1, 2\nnats:\n  replicas: 2\n", []Problem{{Line: 3}}},
		{"reading and values", "ingest:\n  colour: red\n  max_batch: lots\n  body_timeout: 30 seconds\nnats:\n  replicas: 9\nlake:\n  flush_interval: 5 seconds\n", []Problem{
			{Line: 2, Path: "ingest.colour"}, {Line: 3, Path: "ingest.max_batch"}, {Line: 4, Path: "ingest.body_timeout"},
			{Line: 6, Path: "nats.replicas"}, {Line: 8, Path: "lake.flush_interval"}}},
		{"a key that cannot be read is not also missing", "notify:\n  - name: [ward]\n    log: {}\n", []Problem{{Line: 2, Path: "notify[0].name"}}},
		{"rules", "rules:\n  - name: x\n    kind: heart_rate\n    when: bpm > 1\n    for: 5 minutes\n  - name: y\n    kind: nope\n    when: bpm > 1\n", []Problem{
			{Line: 5, Path: "rules[0].for"}, {Line: 7, Path: "rules[1].kind"}}},
		{"notify", "notify:\n  - name: ward\n    webhook: {url: 'http://x', timeout: later}\nroute:\n  receiver: pager\n  group_wait: -1s\n", []Problem{
			{Line: 3, Path: "notify[0].webhook.timeout"}, {Line: 5, Path: "route.receiver"}, {Line: 6, Path: "route.group_wait"}}},
		{"detectors", "detectors:\n  - kind: heart_rate\n    value: bpm\n    method: cv\n    params:\n      window: soon\n      shift: 1d\n      threshold: -2\n    idle_after: 5 seconds\n", []Problem{
			{Line: 6, Path: "detectors[0].params.window"}, {Line: 7, Path: "detectors[0].params.shift"},
			{Line: 8, Path: "detectors[0].params.threshold"}, {Line: 9, Path: "detectors[0].idle_after"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, tt.yaml)
			_, err := Check(path, nil)
			var ps Problems
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.As(err, &ps) {
				t.Fatalf("err = %v", err)
			}
			if len(ps) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(tt.want), err)
			}
			for i, p := range ps {
				w := tt.want[i]
				if p.File != path || p.Line != w.Line || p.Path != w.Path {
					t.Errorf("problem %d: %s; want line %d, path %q", i, p, w.Line, w.Path)
				}
			}
		})
	}
}

// TestMalformedListIsAProblem loads a config whose list item the YAML library cannot walk
// (it panicked on it): the load fails with a problem naming the line, not a crash.
func TestMalformedListIsAProblem(t *testing.T) {
	_, err := Load(write(t, "detectors:\n !- {kind: heart_rate, value: bpm, method: timeshift}\n"))
	if err == nil || !strings.Contains(err.Error(), "cannot be decoded") || !strings.Contains(err.Error(), ":2") {
		t.Fatalf("Load = %v; want a problem at line 2 saying the part cannot be decoded", err)
	}
}
