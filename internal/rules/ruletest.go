package rules

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

// TestFile is a rule unit-test file for `pulselake rules test` (like promtool's):
//
//	rule_files: [rules.yaml]       # relative to the test file; or inline rules:
//	evaluation_interval: 10s       # how often time-based transitions are checked (default 10s)
//	tests:
//	  - name: crisis fires at once
//	    input:
//	      - subject: p1
//	        device: bp-1
//	        kind: blood_pressure
//	        readings:
//	          - {at: 0s, values: {systolic: 185, diastolic: 95}}
//	    expect:
//	      - at: 1m
//	        rule: hypertensive-crisis           # only this rule's alerts (optional)
//	        alerts:                             # exactly these pending/firing alerts
//	          - {subject: p1, device: bp-1, state: firing, labels: {severity: critical}, annotations: {summary: "..."}}
type TestFile struct {
	RuleFiles          []string          `yaml:"rule_files"`
	Rules              []Rule            `yaml:"rules"`
	EvaluationInterval yamlconf.Duration `yaml:"evaluation_interval"`
	Tests              []TestCase        `yaml:"tests"`
}

// TestCase is one scenario.
type TestCase struct {
	Name   string        `yaml:"name"`
	Input  []TestSeries  `yaml:"input"`
	Expect []Expectation `yaml:"expect"`
}

// TestSeries is the readings of one device.
type TestSeries struct {
	Subject  string        `yaml:"subject"`
	Device   string        `yaml:"device"`
	Kind     string        `yaml:"kind"`
	Readings []TestReading `yaml:"readings"`
}

// TestReading is one reading at a time offset from the start of the test.
type TestReading struct {
	At     yamlconf.Duration  `yaml:"at"`
	Values map[string]float64 `yaml:"values"`
	Text   map[string]string  `yaml:"text"`
}

// Expectation lists the alerts expected at a time.
type Expectation struct {
	At     yamlconf.Duration `yaml:"at"`
	Rule   string            `yaml:"rule"`
	Alerts []ExpectedAlert   `yaml:"alerts"`
}

// ExpectedAlert is an alert expected pending or firing (default firing).
type ExpectedAlert struct {
	Subject     string            `yaml:"subject"`
	Device      string            `yaml:"device"`
	State       string            `yaml:"state"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// testStart is the time offsets in test files count from.
var testStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// RunTestFile runs a test file, writes a report to w and returns the number of failures;
// an error means the file (or its rules) could not be used.
func RunTestFile(path string, reg *reading.Registry, w io.Writer) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading test file: %w", err)
	}
	tf, err := yamlconf.Unmarshal[TestFile](path, data)
	if err != nil {
		return 0, err
	}
	if reg == nil {
		if reg, err = reading.NewRegistry(); err != nil {
			return 0, err
		}
	}
	rules := tf.Rules
	if len(tf.RuleFiles) > 0 {
		more, err := LoadFiles(filepath.Dir(path), tf.RuleFiles)
		if err != nil {
			return 0, err
		}
		rules = append(rules, more...)
	}
	set, errs := Compile(rules, reg)
	if errs != nil {
		var b strings.Builder
		for _, e := range errs {
			b.WriteString("\n  " + e.Error())
		}
		return 0, fmt.Errorf("%s: invalid rules:%s", path, b.String())
	}
	step := tf.EvaluationInterval.D()
	if step <= 0 {
		step = 10 * time.Second
	}
	failures := 0
	for i, tc := range tf.Tests {
		name := tc.Name
		if name == "" {
			name = fmt.Sprintf("tests[%d]", i)
		}
		problems := runCase(set, tc, step)
		if len(problems) == 0 {
			fmt.Fprintf(w, "ok    %s\n", name)
			continue
		}
		failures++
		fmt.Fprintf(w, "FAIL  %s\n", name)
		for _, p := range problems {
			fmt.Fprintf(w, "      %s\n", p)
		}
	}
	return failures, nil
}

func runCase(set *RuleSet, tc TestCase, step time.Duration) []string {
	ev := newEvaluator(set)
	var problems []string
	ev.evalErrors = func(rule string, err error) {
		problems = append(problems, fmt.Sprintf("rule %s: evaluation failed: %v", rule, err))
	}
	type event struct {
		at time.Duration
		r  *reading.Reading
	}
	var events []event
	for _, s := range tc.Input {
		for _, in := range s.Readings {
			r := &reading.Reading{Subject: s.Subject, Device: s.Device, Kind: s.Kind, Time: testStart.Add(in.At.D()), Values: in.Values, Text: in.Text}
			if r.Values == nil {
				r.Values = map[string]float64{}
			}
			events = append(events, event{in.At.D(), r})
		}
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].at < events[j].at })
	expects := slices.Clone(tc.Expect)
	sort.SliceStable(expects, func(i, j int) bool { return expects[i].At < expects[j].At })
	var end time.Duration
	if len(expects) > 0 {
		end = expects[len(expects)-1].At.D()
	}
	for t := time.Duration(0); ; t += step {
		for len(events) > 0 && events[0].at <= t {
			now := testStart.Add(events[0].at)
			ev.observe(events[0].r, now, true)
			events = events[1:]
		}
		for len(expects) > 0 && expects[0].At.D() <= t {
			ev.tick(testStart.Add(expects[0].At.D()))
			problems = append(problems, check(ev, expects[0])...)
			expects = expects[1:]
		}
		ev.tick(testStart.Add(t))
		if t >= end && len(events) == 0 {
			break
		}
	}
	return problems
}

func check(ev *evaluator, x Expectation) []string {
	var got []Alert
	for _, a := range ev.alerts {
		if (a.State == StatePending || a.State == StateFiring) && (x.Rule == "" || a.Rule == x.Rule) {
			got = append(got, *a)
		}
	}
	var problems []string
	at := x.At.D().String()
	matched := make([]bool, len(got))
	for _, want := range x.Alerts {
		state := want.State
		if state == "" {
			state = StateFiring
		}
		found := false
		for i, a := range got {
			if matched[i] || a.Subject != want.Subject || a.Device != want.Device || a.State != state {
				continue
			}
			if x.Rule == "" && want.Labels["alertname"] != "" && want.Labels["alertname"] != a.Rule {
				continue
			}
			found = true
			matched[i] = true
			for k, v := range want.Labels {
				if a.Labels[k] != v {
					problems = append(problems, fmt.Sprintf("at %s: %s %s/%s: label %s = %q, want %q", at, a.Rule, a.Subject, a.Device, k, a.Labels[k], v))
				}
			}
			for k, v := range want.Annotations {
				if a.Annotations[k] != v {
					problems = append(problems, fmt.Sprintf("at %s: %s %s/%s: %s = %q, want %q", at, a.Rule, a.Subject, a.Device, k, a.Annotations[k], v))
				}
			}
			break
		}
		if !found {
			rule := x.Rule
			if rule == "" {
				rule = want.Labels["alertname"]
			}
			problems = append(problems, strings.Replace(fmt.Sprintf("at %s: missing %s alert %s for %s/%s", at, state, rule, want.Subject, want.Device), "  ", " ", 1))
		}
	}
	for i, a := range got {
		if !matched[i] {
			problems = append(problems, fmt.Sprintf("at %s: unexpected %s alert %s for %s/%s (labels %v)", at, a.State, a.Rule, a.Subject, a.Device, sortedLabels(a.Labels)))
		}
	}
	return problems
}

func sortedLabels(l map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}
