package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDetectCommandUnorderedRows runs every method on a file that is newest first and repeats a
// timestamp (like the home blood-pressure export): none refuses it, each warns on stderr, and
// the output is in time order.
func TestDetectCommandUnorderedRows(t *testing.T) {
	var b strings.Builder
	b.WriteString("DateTime,Sys\n")
	for i := 299; i >= 0; i-- {
		ts := fmt.Sprintf("2019-08-01 %02d:%02d:00", i/60, i%60)
		v := "120"
		if i%7 == 0 {
			v = "131"
		}
		b.WriteString(ts + "," + v + "\n")
		if i == 150 {
			b.WriteString(ts + ",140\n") // the same minute twice
		}
	}
	in := filepath.Join(t.TempDir(), "bp.csv")
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method  string
		sets    []string
		repeats bool // warns about the repeated timestamp
	}{
		{"online", nil, true},
		{"holt-winters", []string{"seasonality=1h"}, true},
		{"cv", []string{"window=10"}, true},
		{"timeshift", []string{"shift=1h"}, true},
		{"iforest", nil, false},
	} {
		t.Run(c.method, func(t *testing.T) {
			args := []string{"detect", "--method", c.method, "--input", in}
			for _, s := range c.sets {
				args = append(args, "--set", s)
			}
			code, out, errs := runCLI(t, args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if !strings.Contains(errs, "warning: 300 of 301 rows have a timestamp earlier than a row above them") {
				t.Errorf("stderr %q: no warning about the order", errs)
			}
			if got := strings.Contains(errs, "warning: 1 rows repeat the timestamp"); got != c.repeats {
				t.Errorf("stderr %q: warning about the repeated timestamp %v, want %v", errs, got, c.repeats)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 302 {
				t.Fatalf("%d output lines, want 302", len(lines))
			}
			for i := 2; i < len(lines); i++ {
				if lines[i][:19] < lines[i-1][:19] {
					t.Fatalf("line %d out of time order: %q after %q", i+1, lines[i], lines[i-1])
				}
			}
		})
	}
	code, _, errs := runCLI(t, "detect", "--method", "online", "--set", "window=3", "--input", in)
	if code != exitUsage || !strings.Contains(errs, "not a parameter of online") {
		t.Errorf("online with a parameter: exit %d, %q", code, errs)
	}
}

// TestDetectCommandSummary checks the summary line on stderr against the anomaly column of the
// output, that a given contamination flags at most that share, and that scikit-learn's 'auto'
// (the default) comes with a hint when it flags many rows.
func TestDetectCommandSummary(t *testing.T) {
	var b strings.Builder
	b.WriteString("timestamp,value\n")
	for i := range 2000 {
		// integer heart rates around 80 bpm, as a wearable reports them
		fmt.Fprintf(&b, "%d,%d\n", 1460460000+5*i, 80+(i*37%41)-20+(i*i%7))
	}
	in := filepath.Join(t.TempDir(), "hr.csv")
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	summary := regexp.MustCompile(`(\d+) points, (\d+) flagged \((\d+\.\d) %\) by (\S+)`)
	for _, c := range []struct {
		method     string
		sets       []string
		maxFlagged int
		hint       bool
	}{
		{"iforest", nil, 2000, true},
		{"iforest", []string{"contamination=0.1"}, 200, false},
		{"iforest", []string{"contamination=0.02"}, 40, false},
		{"online", nil, 2000, false},
		{"cv", []string{"window=20"}, 2000, false},
	} {
		t.Run(c.method+strings.Join(c.sets, ","), func(t *testing.T) {
			args := []string{"detect", "--method", c.method, "--input", in}
			for _, s := range c.sets {
				args = append(args, "--set", s)
			}
			code, out, errs := runCLI(t, args...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errs)
			}
			m := summary.FindStringSubmatch(errs)
			if m == nil {
				t.Fatalf("no summary line on stderr: %q", errs)
			}
			flagged := 0
			for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
				if strings.Split(line, ",")[3] == "1" { // timestamp,value,score,anomaly,...
					flagged++
				}
			}
			if m[1] != "2000" || m[2] != strconv.Itoa(flagged) || m[4] != c.method {
				t.Errorf("summary %q; the output has 2000 rows, %d flagged", m[0], flagged)
			}
			if want := fmt.Sprintf("%.1f", 100*float64(flagged)/2000); m[3] != want {
				t.Errorf("share %s %%, want %s", m[3], want)
			}
			if hinted := strings.Contains(errs, "--set contamination=0.05"); hinted != c.hint {
				t.Errorf("hint on stderr %v, want %v: %q", hinted, c.hint, errs)
			}
			if flagged > c.maxFlagged {
				t.Errorf("%s %v flagged %d of 2000 rows, want at most %d", c.method, c.sets, flagged, c.maxFlagged)
			}
		})
	}
}
