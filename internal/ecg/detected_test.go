package ecg

import (
	"slices"
	"testing"

	"github.com/pulselake/pulselake/internal/ecg/wfdb"
)

func TestMatchPeaks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ref, det []int64
		window   int64
		want     []int
	}{
		{"exact", []int64{100, 200, 300}, []int64{100, 200, 300}, 10, []int{0, 1, 2}},
		{"nearest of two", []int64{100}, []int64{92, 97}, 10, []int{1}},
		{"outside the window", []int64{100, 200}, []int64{111, 189}, 10, []int{-1, -1}},
		{"on the window's edge", []int64{100, 200}, []int64{110, 190}, 10, []int{0, 1}},
		{"one detection for two references", []int64{100, 104}, []int64{103}, 10, []int{0, -1}},
		{"false detection between beats", []int64{100, 200}, []int64{101, 150, 199}, 10, []int{0, 2}},
		{"missed beat", []int64{100, 200, 300}, []int64{100, 300}, 10, []int{0, -1, 1}},
		{"no detections", []int64{100}, nil, 10, []int{-1}},
		{"no references", nil, []int64{5}, 10, []int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := matchPeaks(tc.ref, tc.det, tc.window)
			if !slices.Equal(got, tc.want) {
				t.Errorf("matchPeaks = %v, want %v", got, tc.want)
			}
			m := MatchBeats(tc.ref, tc.det, tc.window)
			tp := 0
			for _, d := range tc.want {
				if d >= 0 {
					tp++
				}
			}
			if m.TP != tp || m.FN != len(tc.ref)-tp || m.FP != len(tc.det)-tp {
				t.Errorf("MatchBeats = %+v, want TP %d", m, tp)
			}
		})
	}
}

// TestRecordDetectedBeats checks that training beats are those BeatStream cuts (same windows,
// same features, at the same samples), labelled by the annotation within 150 ms, and that
// every stream beat and every reference beat is accounted for.
func TestRecordDetectedBeats(t *testing.T) {
	dir := needData(t)
	for _, name := range []string{"208", "207"} {
		beats, cnt, err := RecordDetectedBeats(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("record %s: %s", name, cnt)
		x := recordSignal(t, dir, name)
		s := NewBeatStream(360)
		var got []StreamBeat
		for _, v := range x {
			got = s.Push(v, got)
		}
		if n := cnt.Beats + cnt.Other + cnt.FalseQRS; n != len(got) {
			t.Errorf("record %s: %d labelled + %d other + %d false = %d, want the %d stream beats", name, cnt.Beats, cnt.Other, cnt.FalseQRS, n, len(got))
		}
		if cnt.Beats != len(beats) || cnt.Beats+cnt.Missed != cnt.Reference {
			t.Errorf("record %s: counts %+v for %d beats", name, cnt, len(beats))
		}
		rec, err := wfdb.ReadRecord(dir, name, "atr")
		if err != nil {
			t.Fatal(err)
		}
		classifiable := 0
		for _, a := range rec.Annotations {
			if _, ok := AAMIClass(a.Label()); ok && wfdb.IsBeat(a.Code) {
				classifiable++
			}
		}
		if cnt.Reference != classifiable {
			t.Errorf("record %s: %d classifiable reference beats, want %d", name, cnt.Reference, classifiable)
		}
		if float64(cnt.Beats) < 0.98*float64(classifiable) {
			t.Errorf("record %s: only %d of %d reference beats matched", name, cnt.Beats, classifiable)
		}
		j := 0
		for i := range beats {
			b := &beats[i]
			for j < len(got) && got[j].Sample < b.Sample {
				j++
			}
			if j == len(got) || got[j].Sample != b.Sample {
				t.Fatalf("record %s: beat at %d is not a stream beat", name, b.Sample)
			}
			if got[j].Samples != b.Samples || got[j].RR != b.RR {
				t.Fatalf("record %s: beat at %d: window or features differ from the stream's", name, b.Sample)
			}
			// The label is that of a beat annotation within 150 ms.
			found := false
			for _, a := range rec.Annotations {
				if wfdb.IsBeat(a.Code) && abs64(a.Sample-b.Sample) <= 54 && a.Label() == b.Label {
					found = true
					break
				}
			}
			if c, _ := AAMIClass(b.Label); !found || c != b.Class {
				t.Fatalf("record %s: beat at %d labelled %q (%v), no such annotation within 150 ms", name, b.Sample, b.Label, b.Class)
			}
		}
	}
}
