package main

import "math"

// Profile weighs true positives, false positives and missed windows as the Numenta Anomaly
// Benchmark's application profiles do.
type Profile struct {
	Name       string
	TP, FP, FN float64
}

// The NAB profiles (NAB config/profiles.json).
var profiles = []Profile{
	{Name: "standard", TP: 1, FP: 0.11, FN: 1},
	{Name: "low FP", TP: 1, FP: 0.22, FN: 1},
	{Name: "low FN", TP: 1, FP: 0.11, FN: 2},
}

// Window is an anomaly window: rows First..Last inclusive.
type Window struct{ First, Last int }

// probation is NAB's probationary period: the first 15% of a file's rows, at most 750, in
// which detections are not counted.
func probation(n int) int { return min(int(math.Floor(0.15*float64(n))), 750) }

// scaledSigmoid is NAB's reward curve: about 1 at the start of a window (y = -1), 0 at its end
// (y = 0), falling towards -1 after it; -1 beyond y = 3.
func scaledSigmoid(y float64) float64 {
	if y > 3 {
		return -1
	}
	return 2/(1+math.Exp(5*y)) - 1
}

// Score is one file's raw NAB score under a profile, with the scores of the null detector
// (no detection) and the perfect one (a detection at the start of every window).
type Score struct {
	Raw, Null, Perfect float64
	TP, FP, FN         int
}

func (s *Score) add(o Score) {
	s.Raw += o.Raw
	s.Null += o.Null
	s.Perfect += o.Perfect
	s.TP += o.TP
	s.FP += o.FP
	s.FN += o.FN
}

// Normalized is NAB's final score: 100·(raw - null)/(perfect - null); 0 is the null detector,
// 100 the perfect one.
func (s Score) Normalized() float64 {
	if s.Perfect == s.Null {
		return 0
	}
	return 100 * (s.Raw - s.Null) / (s.Perfect - s.Null)
}

// scoreFile scores the rows whose score is >= threshold as detections, as NAB's sweeper does:
// inside a window, the first detection earns TP·scaledSigmoid(position)/scaledSigmoid(-1) with
// position -(last - i + 1)/width, and later ones nothing; outside, a detection costs
// FP·scaledSigmoid(distance past the previous window in its widths - 1), or -FP before any
// window; a window without detection costs -FN. Rows of the probationary period are skipped.
// windows are sorted and disjoint.
func scoreFile(scores []float64, windows []Window, threshold float64, p Profile) Score {
	var s Score
	maxTP := scaledSigmoid(-1)
	w := 0 // next or current window
	prevLast, prevWidth := -1, 0
	detected := make([]bool, len(windows))
	for i := probation(len(scores)); i < len(scores); i++ {
		for w < len(windows) && i > windows[w].Last {
			prevLast, prevWidth = windows[w].Last, windows[w].Last-windows[w].First+1
			w++
		}
		if !(scores[i] >= threshold) {
			continue
		}
		if w < len(windows) && i >= windows[w].First {
			if !detected[w] {
				detected[w] = true
				width := float64(windows[w].Last - windows[w].First + 1)
				pos := -float64(windows[w].Last-i+1) / width
				s.Raw += scaledSigmoid(pos) * p.TP / maxTP
				s.TP++
			}
			continue
		}
		s.FP++
		if prevLast < 0 {
			s.Raw -= p.FP
			continue
		}
		past := math.Abs(float64(prevLast-i)) / float64(max(prevWidth-1, 1))
		s.Raw += scaledSigmoid(past) * p.FP
	}
	for _, d := range detected {
		if !d {
			s.FN++
			s.Raw -= p.FN
		}
	}
	s.Null = -p.FN * float64(len(windows))
	s.Perfect = p.TP * float64(len(windows))
	return s
}
