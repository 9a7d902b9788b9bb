package anomaly

import (
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

func fieldCheck(kind, value string) error {
	if kind == "heart_rate" && value == "bpm" || kind == "activity" && (value == "hr" || value == "steps") {
		return nil
	}
	return errors.New("no numeric value " + value)
}

// compileYAML decodes a detectors: list as the configuration file does and compiles it,
// returning the problems of both with their lines.
func compileYAML(t *testing.T, text string) ([]*Detector, yamlconf.Problems) {
	t.Helper()
	f, err := yamlconf.Parse("d.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	type file struct {
		Detectors []DetectorSpec `yaml:"detectors"`
	}
	v, ps := yamlconf.Decode("d.yaml", f, func() *file { return &file{} })
	ds, cps := CompileDetectors(v.Detectors, fieldCheck)
	cps.Locate("d.yaml", f)
	return ds, append(ps, cps...)
}

func TestCompileDetectorsDefaults(t *testing.T) {
	ds, errs := compileYAML(t, `detectors:
  - {kind: heart_rate, value: bpm, method: holt-winters}
  - name: hr-if
    kind: activity
    values: [hr, steps]
    method: iforest
    params: {contamination: 0.05, window: 1000, step: 10s}
    threshold: 0.9
    baseline: device
  - {kind: heart_rate, value: bpm, method: timeshift, params: {shift: 1d, step: 5min}, max_subjects: 7}
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	hw, ifo, ts := ds[0], ds[1], ds[2]
	if hw.Name != "holt-winters-heart_rate-bpm" || hw.Step != time.Minute || hw.Severity != "warning" || hw.ResolveAfter != 5*time.Minute ||
		hw.IdleAfter != 24*time.Hour || !math.IsNaN(hw.Threshold) || hw.PerDevice {
		t.Errorf("holt-winters defaults %+v", hw)
	}
	// Season 1d / 1m = 1440 points, two rings of float64: 23,040 bytes + 512.
	if b := hw.BaselineBytes(); b != 23552 {
		t.Errorf("holt-winters baseline bytes %d", b)
	}
	if hw.MaxSubjects != 10000 {
		t.Errorf("holt-winters max subjects %d", hw.MaxSubjects)
	}
	// iforest: window 1000 of 2 values (16,000 B) + 2 forests of 100 trees of 511 nodes · 24 B.
	if b, want := ifo.BaselineBytes(), int64(512+2*16000+2*100*511*24); b != want {
		t.Errorf("iforest baseline bytes %d, want %d", b, want)
	}
	if ifo.MaxSubjects != int(DefaultBaselineBudget/ifo.BaselineBytes()) || ifo.Threshold != 0.9 || !ifo.PerDevice || ifo.Step != 10*time.Second {
		t.Errorf("iforest %+v", ifo)
	}
	if ts.MaxSubjects != 7 || ts.BaselineBytes() != 512+16*(288+1) {
		t.Errorf("timeshift %+v bytes %d", ts, ts.BaselineBytes())
	}
	// Flag: the configured threshold, else the method's rule.
	if !ifo.Flag(0.9, false) || ifo.Flag(0.89, true) || !hw.Flag(0.1, true) || hw.Flag(0.99, false) {
		t.Error("Flag")
	}
	// Detectors built from the specs run.
	det, err := ifo.New()
	if err != nil {
		t.Fatal(err)
	}
	defer det.(io.Closer).Close()
	if s, a := det.Observe(time.Unix(0, 0), []float64{60, 100}); s != 0 || a {
		t.Errorf("unfitted forest scored %g %v", s, a)
	}
}

func TestCompileDetectorsErrors(t *testing.T) {
	_, errs := compileYAML(t, `detectors:
  - {kind: heart_rate, value: bpm, method: arima}
  - {kind: heart_rate, value: pulse, method: cv}
  - kind: heart_rate
    value: bpm
    method: iforest
    params:
      contamination: 0.9
      seasonality: 1d
      n_estimators: -3
      max_samples: 2.5
  - {kind: heart_rate, values: [bpm, bpm], method: cv}
  - {kind: heart_rate, value: bpm, method: holt-winters, params: {seasonality: 1min}}
  - kind: heart_rate
    value: bpm
    method: cv
    threshold: -1
    baseline: ward
    labels: {subject: x}
  - {name: dup, kind: heart_rate, value: bpm, method: cv}
  - {name: dup, kind: heart_rate, value: bpm, method: cv, resolve_after: soon, max_subjects: -1}
  - {method: cv}
  - {kind: heart_rate, value: bpm, method: cv, params: {window: [1, 2], threshold: many}}
`)
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		`d.yaml:2: detectors[0].method: want one of online, iforest, holt-winters, cv, timeshift; got "arima"`,
		`d.yaml:3: detectors[1].value: no numeric value pulse`,
		`d.yaml:8: detectors[2].params.contamination: want 'auto' or a fraction in (0, 0.5]`,
		`d.yaml:9: detectors[2].params.seasonality: "seasonality" is not a parameter of iforest`,
		`d.yaml:10: detectors[2].params.n_estimators: want a positive number, got -3`,
		`d.yaml:11: detectors[2].params.max_samples: want a positive integer or a fraction in (0, 1], got 2.5`,
		`d.yaml:12: detectors[3].values: only iforest takes several values`,
		`d.yaml:13: detectors[4].params: invalid parameter: seasonality 1m0s must be at least two steps of 1m0s`,
		`d.yaml:17: detectors[5].threshold: want a score threshold between 0 and 1, got -1`,
		`d.yaml:18: detectors[5].baseline: want subject or device, got "ward"`,
		`d.yaml:19: detectors[5].labels: "subject" is set by the detector`,
		`d.yaml:21: detectors[7].resolve_after: "soon" is not a positive duration`,
		`d.yaml:21: detectors[7].max_subjects:`,
		`d.yaml:22: detectors[8].kind: missing`,
		`d.yaml:22: detectors[8].value: missing`,
		`d.yaml:23: detectors[9].params.window: want a number of points or a duration`,
		`d.yaml:23: detectors[9].params.threshold: want a number`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("errors do not contain %q:\n%s", want, text)
		}
	}
	// A duplicate name is reported only when the rest of the detector is valid.
	_, errs = compileYAML(t, `detectors:
  - {name: dup, kind: heart_rate, value: bpm, method: cv}
  - {name: dup, kind: heart_rate, value: bpm, method: timeshift}
`)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `detectors[1].name: "dup" is also the name of detectors[0]`) {
		t.Errorf("duplicate names: %v", errs)
	}
}

// TestHoltWintersDetectorBootstrap: a holt-winters detector reports nothing during its first
// season (which the bare recurrence flags nearly everywhere), then the recurrence's verdicts.
func TestHoltWintersDetectorBootstrap(t *testing.T) {
	ds, errs := compileYAML(t, "detectors:\n  - {kind: heart_rate, value: bpm, method: holt-winters, params: {seasonality: 10m, step: 1m}}\n")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	det, err := ds[0].New()
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := NewStreamHoltWinters(10*time.Minute, time.Minute, HoltWintersOptions{})
	t0 := time.Unix(1_700_000_000, 0)
	refFlags := 0
	for i := range 30 {
		at := t0.Add(time.Duration(i) * time.Minute)
		v := []float64{70 + float64(i%3)}
		s, a := det.Observe(at, v)
		rs, ra := ref.Observe(at, v)
		if ra {
			refFlags++
		}
		switch {
		case i < 10 && (s != 0 || a):
			t.Errorf("point %d in the bootstrap season: %g %v", i, s, a)
		case i >= 10 && (s != rs || a != ra):
			t.Errorf("point %d: %g %v, recurrence %g %v", i, s, a, rs, ra)
		}
	}
	if refFlags == 0 {
		t.Error("the bare recurrence flagged nothing; the test shows nothing")
	}
}
