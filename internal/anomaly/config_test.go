package anomaly

import (
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

func fieldCheck(kind, value string) error {
	if kind == "heart_rate" && value == "bpm" || kind == "activity" && (value == "hr" || value == "steps") {
		return nil
	}
	return errors.New("no numeric value " + value)
}

func TestCompileDetectorsDefaults(t *testing.T) {
	thr := 0.9
	ds, errs := CompileDetectors([]DetectorSpec{
		{Kind: "heart_rate", Value: "bpm", Method: "holt-winters"},
		{Name: "hr-if", Kind: "activity", Values: []string{"hr", "steps"}, Method: "iforest",
			Params: map[string]any{"contamination": 0.05, "window": 1000, "step": "10s"}, Threshold: &thr, Baseline: "device"},
		{Kind: "heart_rate", Value: "bpm", Method: "timeshift", Params: map[string]any{"shift": "1d", "step": "5min"}, MaxSubjects: 7},
	}, fieldCheck)
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
	bad := -1.0
	_, errs := CompileDetectors([]DetectorSpec{
		{Kind: "heart_rate", Value: "bpm", Method: "arima"},
		{Kind: "heart_rate", Value: "pulse", Method: "cv"},
		{Kind: "heart_rate", Value: "bpm", Method: "iforest", Params: map[string]any{"contamination": 0.9, "seasonality": "1d"}},
		{Kind: "heart_rate", Values: []string{"bpm", "bpm"}, Method: "cv"},
		{Kind: "heart_rate", Value: "bpm", Method: "holt-winters", Params: map[string]any{"seasonality": "1min"}},
		{Kind: "heart_rate", Value: "bpm", Method: "cv", Threshold: &bad, Baseline: "ward", Labels: map[string]string{"subject": "x"}},
		{Name: "dup", Kind: "heart_rate", Value: "bpm", Method: "cv"},
		{Name: "dup", Kind: "heart_rate", Value: "bpm", Method: "cv", ResolveAfter: "soon", MaxSubjects: -1},
		{Method: "cv"},
	}, fieldCheck)
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		`detectors[0].method: want one of online, iforest, holt-winters, cv, timeshift; got "arima"`,
		`detectors[1].value: no numeric value pulse`,
		`detectors[2].params.contamination: want 'auto' or a fraction in (0, 0.5]`,
		`detectors[2].params.seasonality: not a parameter of iforest`,
		`detectors[3].values: only iforest takes several values`,
		`detectors[4].params: invalid parameter: seasonality 1m0s must be at least two steps of 1m0s`,
		`detectors[5].threshold: want a score threshold between 0 and 1, got -1`,
		`detectors[5].baseline: want subject or device, got "ward"`,
		`detectors[5].labels: "subject" is set by the detector`,
		`detectors[7].resolve_after:`,
		`detectors[7].max_subjects:`,
		`detectors[8].kind: missing`,
		`detectors[8].value: missing`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("errors do not contain %q:\n%s", want, text)
		}
	}
	// A duplicate name is reported only when the rest of the detector is valid.
	_, errs = CompileDetectors([]DetectorSpec{
		{Name: "dup", Kind: "heart_rate", Value: "bpm", Method: "cv"},
		{Name: "dup", Kind: "heart_rate", Value: "bpm", Method: "timeshift"},
	}, fieldCheck)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `detectors[1].name: "dup" is also the name of detectors[0]`) {
		t.Errorf("duplicate names: %v", errs)
	}
}

// TestHoltWintersDetectorBootstrap: a holt-winters detector reports nothing during its first
// season (which the bare recurrence flags nearly everywhere), then the recurrence's verdicts.
func TestHoltWintersDetectorBootstrap(t *testing.T) {
	ds, errs := CompileDetectors([]DetectorSpec{{Kind: "heart_rate", Value: "bpm", Method: "holt-winters",
		Params: map[string]any{"seasonality": "10m", "step": "1m"}}}, fieldCheck)
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
