package anomaly

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDetectConfig(t *testing.T) {
	cfg, err := ParseDetectConfig("iforest", []string{"contamination=0.08", "seed=1", "n_estimators=50", "max_samples=0.5", "max_features=1"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IForest.Contamination != 0.08 || cfg.IForest.Seed != 1 || cfg.IForest.NEstimators != 50 || cfg.IForest.MaxSamplesFraction != 0.5 || cfg.IForest.MaxFeatures != 1 {
		t.Errorf("iforest options %+v", cfg.IForest)
	}
	cfg, err = ParseDetectConfig("holt-winters", []string{"seasonality=1h", "delta=2.5"})
	if err != nil || cfg.Seasonality != time.Hour || cfg.HoltWinters.Delta != 2.5 {
		t.Errorf("holt-winters: %+v, %v", cfg, err)
	}
	cfg, err = ParseDetectConfig("timeshift", nil)
	if err != nil || cfg.Shift != 7*24*time.Hour {
		t.Errorf("timeshift default shift %v, %v", cfg.Shift, err)
	}
	for _, c := range []struct {
		method string
		sets   []string
	}{
		{"prophet", nil},
		{"iforest", []string{"contamination=0.7"}},
		{"iforest", []string{"seasonality=1d"}},
		{"iforest", []string{"novalue"}},
		{"holt-winters", []string{"seasonality=soon"}},
		{"cv", []string{"window=-3"}},
		{"cv", []string{"threshold=0"}},
		{"timeshift", []string{"shift=7d", "shift=1d"}},
	} {
		if _, err := ParseDetectConfig(c.method, c.sets); !errors.Is(err, ErrInvalidParam) {
			t.Errorf("%s %v: err = %v, want ErrInvalidParam", c.method, c.sets, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30s": 30 * time.Second, "5min": 5 * time.Minute, "5m": 5 * time.Minute, "1h": time.Hour,
		"1d": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1h30m": 90 * time.Minute,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "0s", "-1h", "soon"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q): no error", in)
		}
	}
}

func TestRunDetect(t *testing.T) {
	in := string(syntheticCSV(3000))
	// Blank out a few values: holt-winters, cv and timeshift treat them as missing points.
	lines := strings.Split(in, "\n")
	for _, i := range []int{100, 101, 2000} {
		lines[i] = lines[i][:strings.IndexByte(lines[i], ',')+1]
	}
	gappy := strings.Join(lines, "\n")
	for _, c := range []struct {
		method string
		sets   []string
		input  string
		header string
	}{
		{"iforest", []string{"contamination=0.08", "seed=1"}, in, "timestamp,value,score,anomaly,decision"},
		{"holt-winters", []string{"seasonality=1h"}, gappy, "timestamp,value,score,anomaly,forecast,lower,upper,aberration"},
		{"cv", []string{"window=10min", "threshold=0.05"}, gappy, "timestamp,value,score,anomaly,cv"},
		{"timeshift", []string{"shift=1h"}, gappy, "timestamp,value,score,anomaly,shifted,change"},
	} {
		t.Run(c.method, func(t *testing.T) {
			cfg, err := ParseDetectConfig(c.method, c.sets)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := RunDetect(cfg, strings.NewReader(c.input), &out); err != nil {
				t.Fatal(err)
			}
			tab, err := ReadCSV(&out, ReadOptions{Columns: []string{"score", "anomaly"}})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(tab.Header, ","); got != c.header {
				t.Errorf("header %q, want %q", got, c.header)
			}
			if tab.Rows() != 3000 {
				t.Fatalf("%d rows, want 3000", tab.Rows())
			}
			flagged := 0
			for i := range tab.Rows() {
				s, a := tab.Values[2*i], tab.Values[2*i+1]
				if s < 0 || s > 1 {
					t.Fatalf("row %d: score %g outside 0..1", i, s)
				}
				if a == 1 {
					flagged++
				}
			}
			// Values repeat (one decimal), so rows tied with the offset are not flagged,
			// as in scikit-learn (decision_function < 0).
			if c.method == "iforest" && (flagged > 240 || flagged < 220) {
				t.Errorf("flagged %d rows at contamination 0.08, want 220..240", flagged)
			}
			if flagged == 0 {
				t.Errorf("nothing flagged")
			}
		})
	}
}

func TestRunDetectErrors(t *testing.T) {
	cfg, _ := ParseDetectConfig("holt-winters", []string{"seasonality=5s"})
	err := RunDetect(cfg, strings.NewReader("timestamp,value\n1,1\n6,2\n"), &bytes.Buffer{})
	if !errors.Is(err, ErrInvalidParam) || !strings.Contains(err.Error(), "season length") {
		t.Errorf("season of one step: %v", err)
	}
	cfg, _ = ParseDetectConfig("cv", nil)
	err = RunDetect(cfg, strings.NewReader("timestamp,a,b\n1,1,2\n"), &bytes.Buffer{})
	if !errors.Is(err, ErrInvalidParam) || !strings.Contains(err.Error(), "--set columns=") {
		t.Errorf("two columns for cv: %v", err)
	}
	cfg, _ = ParseDetectConfig("iforest", nil)
	err = RunDetect(cfg, strings.NewReader("timestamp,value\n1,1\n2,\n"), &bytes.Buffer{})
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 3 {
		t.Errorf("missing value for iforest: %v", err)
	}
	cfg, _ = ParseDetectConfig("timeshift", nil)
	err = RunDetect(cfg, strings.NewReader("timestamp,value\n5,1\n2,1\n"), &bytes.Buffer{})
	if !errors.As(err, &pe) || pe.Line != 3 {
		t.Errorf("backwards time for timeshift: %v", err)
	}
}
