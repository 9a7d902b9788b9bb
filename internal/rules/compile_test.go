package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

func registry(t testing.TB) *reading.Registry {
	t.Helper()
	reg, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestDefaultRulesCompile(t *testing.T) {
	if _, errs := Compile(DefaultRules(), registry(t)); errs != nil {
		t.Fatal(errs)
	}
}

func TestCompileReportsEveryProblemWithPath(t *testing.T) {
	rules := []Rule{
		{Name: "ok", Kind: "heart_rate", When: "bpm > 120"},
		{Name: "ok", Kind: "heart_rate", When: "bpm > 120"},
		{Name: "bad-kind", Kind: "blood_presure", When: "systolic > 1"},
		{Name: "bad-var", Kind: "blood_pressure", When: "systolc >= 180"},
		{Name: "bad-window", Kind: "heart_rate", When: "avg(bpm, x) > 1"},
		{Name: "bad-tmpl", Kind: "heart_rate", When: "bpm > 1", Summary: "{{.bpm"},
		{Name: "not-bool", Kind: "heart_rate", When: "bpm + 1"},
		{Name: "nothing"},
		{Name: "reserved", Kind: "heart_rate", When: "bpm > 1", Labels: map[string]string{"device": "x"}, Severity: "loud"},
	}
	_, errs := Compile(rules, registry(t))
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{"rules[1].name:", "rules[2].kind: unknown kind", "rules[3].when:", "rules[4].when:", "rules[5].summary:",
		"rules[6].when:", "rules[7].kind: required", "rules[7].when: required", "rules[8].severity:", "rules[8].labels.device:"}
	all := strings.Join(got, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("missing %q in:\n%s", w, all)
		}
	}
	if strings.HasPrefix(all, "rules[0]") || strings.Contains(all, "\nrules[0]") {
		t.Errorf("valid rule reported:\n%s", all)
	}
}

func TestWindowFunctions(t *testing.T) {
	set, errs := Compile([]Rule{
		{Name: "avg", Kind: "heart_rate", When: "avg(bpm, 5m) > 100 && count(bpm, 5m) >= 3"},
		{Name: "minmax", Kind: "heart_rate", When: "max(bpm, 1m) - min(bpm, 1m) > 50 && max(bpm, 1.0) > 0"},
		{Name: "rate", Kind: "heart_rate", When: "rate(bpm, 2m) > 1.0"},
	}, registry(t))
	if errs != nil {
		t.Fatal(errs)
	}
	ev := newEvaluator(set)
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i, bpm := range []float64{90, 105, 110, 170} {
		r := &reading.Reading{Subject: "p", Device: "d", Kind: "heart_rate", Time: t0.Add(time.Duration(i) * 20 * time.Second), Values: map[string]float64{"bpm": bpm}}
		ev.observe(r, r.Time, true)
	}
	var fired []string
	for _, tr := range ev.takeTransitions() {
		if tr.Alert.State == StateFiring {
			fired = append(fired, tr.Alert.Rule)
		}
	}
	// avg over 4 = 118.75 (fires at the 3rd: 101.7); max-min = 80 at the 4th; rate = 80/60 at the 4th.
	if strings.Join(fired, ",") != "avg,minmax,rate" {
		t.Errorf("fired %v", fired)
	}
}

// A rule file's mistakes are all listed, each with the file's name, line and YAML path.
func TestParseListsEveryMistake(t *testing.T) {
	src := "rules:\n  - name: a\n    kind: heart_rate\n    when: bpm > 1\n    for: 5 minutes\n  - name: b\n    severty: critical\n    labels: [x]\n"
	_, err := Parse("crisis.yaml", []byte(src))
	got := ""
	if err != nil {
		got = err.Error()
	}
	for _, want := range []string{"crisis.yaml:5: rules[0].for: want a duration", "crisis.yaml:7: rules[1].severty: unknown field", "crisis.yaml:8: rules[1].labels: "} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}
