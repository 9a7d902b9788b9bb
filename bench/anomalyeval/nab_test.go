package main

import (
	"math"
	"testing"
)

// TestScoreFileHandComputed checks the NAB scoring against examples computed by hand from
// NAB's formulas. Files are 100 rows (probation: the first 15), one window at rows 40..49
// (width 10) unless told otherwise.
func TestScoreFileHandComputed(t *testing.T) {
	std := profiles[0]
	maxTP := 2/(1+math.Exp(-5)) - 1 // scaledSigmoid(-1) = 0.986614...
	win := []Window{{40, 49}}
	at := func(rows ...int) []float64 {
		s := make([]float64, 100)
		for _, r := range rows {
			s[r] = 1
		}
		return s
	}
	for _, c := range []struct {
		name    string
		scores  []float64
		windows []Window
		p       Profile
		raw     float64
		tp, fp  int
	}{
		// Null detector: one missed window costs FN = 1.
		{"nothing", at(), win, std, -1, 0, 0},
		// At the window's first row: position -1, reward exactly TP.
		{"first row", at(40), win, std, 1, 1, 0},
		// Later detections in the same window add nothing.
		{"first row twice", at(40, 41, 49), win, std, 1, 1, 0},
		// At the last row: position -1/10, 2/(1+e^-0.5)-1 = 0.244919, divided by maxTP.
		{"last row", at(49), win, std, (2/(1+math.Exp(-0.5)) - 1) / maxTP, 1, 0},
		// In the middle (row 45): position -5/10, 2/(1+e^-2.5)-1 = 0.848284.
		{"middle", at(45), win, std, (2/(1+math.Exp(-2.5)) - 1) / maxTP, 1, 0},
		// A false positive before any window costs -FP = -0.11, and the window is missed.
		{"fp before", at(20), win, std, -0.11 - 1, 0, 1},
		// In probation: ignored.
		{"probation", at(10), win, std, -1, 0, 0},
		// Right after the window (row 50): |49-50|/9 past it, 2/(1+e^(5/9))-1 = -0.270747
		// times FP 0.11.
		{"just after", at(40, 50), win, std, 1 + 0.11*(2/(1+math.Exp(5.0/9))-1), 1, 1},
		// Far after (row 90): 41/9 > 3 past it, -1 times FP.
		{"far after", at(40, 90), win, std, 1 - 0.11, 1, 1},
		// Low FP profile doubles the cost; low FN doubles the miss.
		{"low FP", at(40, 90), win, profiles[1], 1 - 0.22, 1, 1},
		{"low FN", at(20), win, profiles[2], -0.11 - 2, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := scoreFile(c.scores, c.windows, 0.5, c.p)
			if math.Abs(s.Raw-c.raw) > 1e-9 || s.TP != c.tp || s.FP != c.fp {
				t.Errorf("raw %.6f tp %d fp %d, want %.6f %d %d", s.Raw, s.TP, s.FP, c.raw, c.tp, c.fp)
			}
			if s.Null != -c.p.FN || s.Perfect != c.p.TP {
				t.Errorf("null %g perfect %g", s.Null, s.Perfect)
			}
		})
	}
}

func TestNormalized(t *testing.T) {
	for _, c := range []struct {
		s    Score
		want float64
	}{
		{Score{Raw: -2, Null: -2, Perfect: 2}, 0},
		{Score{Raw: 2, Null: -2, Perfect: 2}, 100},
		{Score{Raw: 0, Null: -2, Perfect: 2}, 50},
		{Score{Raw: -3, Null: -2, Perfect: 2}, -25},
	} {
		if got := c.s.Normalized(); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%+v: %g, want %g", c.s, got, c.want)
		}
	}
}

func TestGeneratedSeriesLabels(t *testing.T) {
	s := generate("spike", 60e9, 4)
	if len(s.Windows) != perFile || len(s.Values) != genLength {
		t.Fatalf("%d windows, %d values", len(s.Windows), len(s.Values))
	}
	for _, w := range s.Windows {
		if w.Last-w.First+1 != int(windowShare*genLength/perFile) || w.First < probation(genLength) {
			t.Errorf("window %v: want %d rows after probation", w, int(windowShare*genLength/perFile))
		}
	}
	again := generate("spike", 60e9, 4)
	for i := range s.Values {
		if s.Values[i] != again.Values[i] {
			t.Fatalf("generation not deterministic at row %d", i)
		}
	}
}
