package excerpt

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/pulselake/pulselake/internal/ecg"
)

var update = flag.Bool("update", false, "regenerate beats.csv from ../shared/data/mitdb-ds1")

const dataDir = "../../../../shared/data/mitdb-ds1"

// perClass is how many beats of each class the excerpt takes from each source record.
var selection = []struct {
	record string
	class  ecg.Class
	n      int
}{
	{"208", ecg.ClassN, 60}, {"208", ecg.ClassV, 80}, {"208", ecg.ClassF, 80},
	{"209", ecg.ClassN, 60}, {"209", ecg.ClassS, 80},
}

func TestGenerate(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate beats.csv")
	}
	if _, err := os.Stat(filepath.Join(dataDir, "208.hea")); err != nil {
		t.Fatalf("MIT-BIH data not found at %s: %v", dataDir, err)
	}
	var out []ecg.Beat
	for _, s := range selection {
		beats, _, err := ecg.RecordDetectedBeats(dataDir, s.record)
		if err != nil {
			t.Fatal(err)
		}
		var of []ecg.Beat
		for _, b := range beats {
			if b.Class == s.class {
				of = append(of, b)
			}
		}
		// Evenly spaced over the record, so the excerpt covers its whole length.
		for k := 0; k < s.n && k < len(of); k++ {
			out = append(out, of[k*len(of)/s.n])
		}
	}
	if err := os.WriteFile("beats.csv", []byte(Format(out)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDemoBeats(t *testing.T) {
	beats, err := DemoBeats()
	if err != nil {
		t.Fatal(err)
	}
	if len(beats) < 300 {
		t.Fatalf("%d demo beats, want a few hundred", len(beats))
	}
	var counts [ecg.NumClasses]int
	for _, b := range beats {
		counts[b.Class]++
		if b.Record == "" || b.Label == "" || b.RR.Pre <= 0 || b.RR.Post <= 0 {
			t.Fatalf("incomplete beat %+v", b)
		}
		for _, v := range b.Samples {
			if v < 0 || v > 1 {
				t.Fatalf("sample %v outside 0..1", v)
			}
		}
	}
	for _, c := range []ecg.Class{ecg.ClassN, ecg.ClassS, ecg.ClassV, ecg.ClassF} {
		if counts[c] < 50 {
			t.Errorf("only %d %s beats", counts[c], c)
		}
	}
	// The default model recognizes most of them (they come from its training data).
	m, err := ecg.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	right := 0
	for i := range beats {
		if m.ClassifyWindow(&beats[i].Samples, beats[i].RR).Class == beats[i].Class {
			right++
		}
	}
	if float64(right) < 0.9*float64(len(beats)) {
		t.Errorf("default model classifies %d of %d demo beats right", right, len(beats))
	}
	// Without RR features (ecg_beat readings carry none) the shape-only ensemble decides.
	right = 0
	for i := range beats {
		if m.ClassifyWindow(&beats[i].Samples, ecg.RRFeatures{}).Class == beats[i].Class {
			right++
		}
	}
	t.Logf("without RR features: %d of %d demo beats right", right, len(beats))
	if !m.HasShapeModel() || float64(right) < 0.8*float64(len(beats)) {
		t.Errorf("without RR features the default model classifies %d of %d demo beats right", right, len(beats))
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{"x,1,N,N,1,1,1,1\n", "record\n"} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Format([]ecg.Beat{{Record: "208", Label: "V", Class: ecg.ClassV}}))
	f.Fuzz(func(t *testing.T, s string) {
		beats, err := Parse(s)
		if err != nil {
			return
		}
		if _, err := Parse(Format(beats)); err != nil {
			t.Fatalf("re-parsing formatted beats: %v", err)
		}
	})
}
