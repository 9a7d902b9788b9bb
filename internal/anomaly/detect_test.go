package anomaly

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
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
		{"online", nil, gappy, "timestamp,value,score,anomaly,expected,scale,p,component"},
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
			tab, err := ReadCSV(bytes.NewReader(out.Bytes()), ReadOptions{Columns: []string{"score", "anomaly"}})
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
	_, err = ParseDetectConfig("online", []string{"seasonality=1d"})
	if !errors.Is(err, ErrInvalidParam) {
		t.Errorf("online takes no seasonality: %v", err)
	}
}

// TestDetectUnorderedRows checks every method on rows out of time order and with repeated
// timestamps: each gives the result of the sorted input with repeated timestamps merged into
// their mean, the rows are written in time order, and the warnings count the rows.
func TestDetectUnorderedRows(t *testing.T) {
	const n = 2000
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	values, _ := syntheticHR(n, 11)
	var sorted strings.Builder
	sorted.WriteString("timestamp,value\n")
	type row struct{ ts, line string }
	var rows []row
	for i, v := range values {
		ts := t0.Add(time.Duration(i) * time.Minute).Format("2006-01-02 15:04:05")
		fmt.Fprintf(&sorted, "%s,%g\n", ts, v)
		rows = append(rows, row{ts, fmt.Sprintf("%s,%g", ts, v)})
		if i%100 == 50 {
			// A repeated timestamp: two rows whose mean is the sorted input's value.
			rows[len(rows)-1].line = fmt.Sprintf("%s,%g", ts, v-1)
			rows = append(rows, row{ts, fmt.Sprintf("%s,%g", ts, v+1)})
		}
	}
	// Swap neighbours every 7 rows (not within a repeated pair): out of order, not shuffled.
	for i := 3; i+1 < len(rows); i += 7 {
		if rows[i].ts != rows[i+1].ts {
			rows[i], rows[i+1] = rows[i+1], rows[i]
		}
	}
	var messy strings.Builder
	messy.WriteString("timestamp,value\n")
	for _, r := range rows {
		messy.WriteString(r.line + "\n")
	}
	for _, c := range []struct {
		method string
		sets   []string
	}{
		{"online", nil},
		{"holt-winters", []string{"seasonality=1h"}},
		{"cv", []string{"window=10"}},
		{"timeshift", []string{"shift=1h"}},
		{"iforest", []string{"seed=1"}},
	} {
		t.Run(c.method, func(t *testing.T) {
			cfg, err := ParseDetectConfig(c.method, c.sets)
			if err != nil {
				t.Fatal(err)
			}
			var want, got, warn bytes.Buffer
			if err := RunDetect(cfg, strings.NewReader(sorted.String()), &want); err != nil {
				t.Fatal(err)
			}
			if err := RunDetectWarn(cfg, strings.NewReader(messy.String()), &got, &warn); err != nil {
				t.Fatalf("unordered rows refused: %v", err)
			}
			if !strings.Contains(warn.String(), "rows are sorted by time") {
				t.Errorf("no warning about the order: %q", warn.String())
			}
			repeated := strings.Contains(warn.String(), "20 rows repeat the timestamp")
			if repeated == (c.method == "iforest") {
				t.Errorf("warning about repeated timestamps %v for %s: %q", repeated, c.method, warn.String())
			}
			wt, err := ReadCSV(&want, ReadOptions{Columns: []string{"score"}})
			if err != nil {
				t.Fatal(err)
			}
			gt, err := ReadCSV(&got, ReadOptions{Columns: []string{"score"}})
			if err != nil {
				t.Fatal(err)
			}
			if gt.Rows() != n+20 {
				t.Fatalf("%d rows written, want %d", gt.Rows(), n+20)
			}
			for i := 1; i < gt.Rows(); i++ {
				if gt.Times[i] < gt.Times[i-1] {
					t.Fatalf("row %d written out of time order", i)
				}
			}
			if c.method == "iforest" {
				return // it scores every row as it is; its forest differs with the rows
			}
			j := 0
			for i := range gt.Rows() {
				for wt.Times[j] != gt.Times[i] {
					j++
				}
				a, b := gt.Values[i], wt.Values[j]
				if a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
					t.Fatalf("row %d (%s): score %g, want the sorted input's %g", i, time.Unix(0, gt.Times[i]).UTC(), a, b)
				}
			}
		})
	}
}

// TestIForestDefaultContamination checks what `detect --method iforest` flags without
// parameters: scikit-learn's 'auto' rule, which flags a large part of integer heart rates, and
// a given contamination flags that share.
func TestIForestDefaultContamination(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var in strings.Builder
	in.WriteString("timestamp,value\n")
	const n = 2000
	for i := range n {
		fmt.Fprintf(&in, "%d,%d\n", i*5, int(math.Round(80+18*rng.NormFloat64())))
	}
	for _, c := range []struct {
		sets     []string
		min, max int
	}{
		{nil, n / 5, n},
		{[]string{"contamination=0.1"}, n * 5 / 100, n / 10},
		{[]string{"contamination=0.02"}, n / 100, n * 2 / 100},
		{[]string{"contamination=auto"}, n / 5, n},
	} {
		cfg, err := ParseDetectConfig("iforest", append(c.sets, "seed=1"))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := RunDetect(cfg, strings.NewReader(in.String()), &out); err != nil {
			t.Fatal(err)
		}
		flagged := 0
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
			if strings.Split(line, ",")[3] == "1" { // timestamp,value,score,anomaly,decision
				flagged++
			}
		}
		if flagged < c.min || flagged > c.max {
			t.Errorf("%v: flagged %d of %d rows, want %d..%d", c.sets, flagged, n, c.min, c.max)
		}
	}
}
