package reading

import (
	"reflect"
	"testing"
	"time"
)

// TestCheckAgreesWithParse: a reading built by a format's reader and checked gives what
// parsing its wire JSON gives: the same normalized reading, or the same errors.
func TestCheckAgreesWithParse(t *testing.T) {
	p := newTestParser(t)
	at := time.Date(2026, 11, 23, 11, 0, 0, 123456789, time.FixedZone("", 3600))
	samples := make([]float64, beatLen)
	tests := []struct {
		name  string
		r     Reading
		valid bool
	}{
		{"heart rate with an id", Reading{ID: "ah-0123", Subject: "s", Device: "Alices-Apple-Watch.Watch6-1", Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": 61.5}}, true},
		{"blood pressure", Reading{Subject: "patient-17", Device: "bp", Kind: "blood_pressure", Time: at, Values: map[string]float64{"systolic": 142, "diastolic": 91, "pulse": 72}}, true},
		{"sleep", Reading{Subject: "s", Device: "d", Kind: "sleep", Time: at, Values: map[string]float64{"duration_s": 600}, Text: map[string]string{"stage": "deep"}}, true},
		{"ecg beat", Reading{Subject: "s", Device: "d", Kind: "ecg_beat", Time: at, Samples: samples, Text: map[string]string{"label": "N"}}, true},
		{"declared kind", Reading{Subject: "s", Device: "d", Kind: "glucose", Time: at, Values: map[string]float64{"mg_dl": 98}}, true},
		{"out of range", Reading{Subject: "s", Device: "d", Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": 900}}, false},
		{"diastolic above systolic", Reading{Subject: "s", Device: "d", Kind: "blood_pressure", Time: at, Values: map[string]float64{"systolic": 80, "diastolic": 91}}, false},
		{"missing value", Reading{Subject: "s", Device: "d", Kind: "blood_pressure", Time: at, Values: map[string]float64{"systolic": 120}}, false},
		{"unknown values", Reading{Subject: "s", Device: "d", Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": 60, "zeta": 1, "alpha": 2}}, false},
		{"text where a number is declared", Reading{Subject: "s", Device: "d", Kind: "heart_rate", Time: at, Text: map[string]string{"bpm": "x"}}, false},
		{"number where text is declared", Reading{Subject: "s", Device: "d", Kind: "sleep", Time: at, Values: map[string]float64{"duration_s": 600, "stage": 3}}, false},
		{"stage not allowed", Reading{Subject: "s", Device: "d", Kind: "sleep", Time: at, Values: map[string]float64{"duration_s": 600}, Text: map[string]string{"stage": "dreaming"}}, false},
		{"wrong number of samples", Reading{Subject: "s", Device: "d", Kind: "ecg_beat", Time: at, Samples: samples[:10]}, false},
		{"sample out of range", Reading{Subject: "s", Device: "d", Kind: "ecg_beat", Time: at, Samples: append([]float64{2}, samples[1:]...)}, false},
		{"samples of a kind without them", Reading{Subject: "s", Device: "d", Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": 60}, Samples: []float64{1}}, false},
		{"unknown kind", Reading{Subject: "s", Device: "d", Kind: "mood", Time: at, Values: map[string]float64{"x": 1}}, false},
		{"bad device", Reading{Subject: "s", Device: "-d", Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": 60}}, false},
		{"bad id", Reading{ID: "a\x01b", Subject: "s", Device: "d", Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": 60}}, false},
		{"too early", Reading{Subject: "s", Device: "d", Kind: "heart_rate", Time: time.Date(1975, 1, 1, 0, 0, 0, 0, time.UTC), Values: map[string]float64{"bpm": 60}}, false},
		{"in the future", Reading{Subject: "s", Device: "d", Kind: "heart_rate", Time: p.Now().Add(48 * time.Hour), Values: map[string]float64{"bpm": 60}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := tt.r.AppendJSON(nil)
			parsed, perrs := p.Parse(wire)
			r := tt.r
			errs := p.Check(&r)
			if (errs == nil) != tt.valid {
				t.Fatalf("Check: %v, want valid %v", errs, tt.valid)
			}
			if !reflect.DeepEqual(errs, perrs) {
				t.Errorf("Check:\n %v\nParse of %s:\n %v", errs, wire, perrs)
			}
			if errs == nil && !reflect.DeepEqual(r, parsed) {
				t.Errorf("Check normalized to\n %+v\nParse gives\n %+v", r, parsed)
			}
			if errs == nil && r.Identity() != parsed.Identity() {
				t.Error("identities differ")
			}
			again := r
			if errs2 := p.Check(&again); !reflect.DeepEqual(errs2, errs) || (errs == nil && !reflect.DeepEqual(again, r)) {
				t.Errorf("a second Check changed the outcome: %v", errs2)
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	p := newTestParser(b)
	r := Reading{ID: "ah-0123", Subject: "s", Device: "d", Kind: "heart_rate", Time: time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC), Values: map[string]float64{"bpm": 61.5}}
	b.ReportAllocs()
	for b.Loop() {
		if errs := p.Check(&r); errs != nil {
			b.Fatal(errs)
		}
	}
}
