package ecg

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestSignalHelpers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a, b     []float64
		wantCorr float64
		wantSpan float64
		wantTV   float64
	}{
		{"proportional", []float64{1, 2, 3}, []float64{2, 4, 6}, 1, 2, 2},
		{"reversed", []float64{1, 2, 3}, []float64{3, 2, 1}, -1, 2, 2},
		{"orthogonal", []float64{1, 0, -1, 0}, []float64{0, 1, 0, -1}, 0, 2, 3},
		{"constant", []float64{5, 5, 5}, []float64{1, 2, 3}, 0, 0, 0},
		// a = (1,3,2,4): mean 2.5, deviations (-1.5,.5,-.5,1.5); b = (1,2,3,4): (-1.5,-.5,.5,1.5);
		// cov = 2.25-.25-.25+2.25 = 4, var = 5 each: r = 0.8.
		{"partial", []float64{1, 3, 2, 4}, []float64{1, 2, 3, 4}, 0.8, 3, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pearson(tc.a, tc.b); !near(got, tc.wantCorr, 1e-12) {
				t.Errorf("pearson = %v, want %v", got, tc.wantCorr)
			}
			if got := span(tc.a); got != tc.wantSpan {
				t.Errorf("span = %v, want %v", got, tc.wantSpan)
			}
			if got := totalVariation(tc.a); got != tc.wantTV {
				t.Errorf("totalVariation = %v, want %v", got, tc.wantTV)
			}
		})
	}
	if safeDiv(1, 0) != 0 || safeDiv(3, 2) != 1.5 {
		t.Error("safeDiv")
	}
}

func TestCutSegment(t *testing.T) {
	x := make([]float64, 1000)
	for i := range x {
		x[i] = float64(i)
	}
	at := func(i int64) float64 { return x[i] }
	var seg [segLen]float64
	// At 250 Hz a segment sample is 2 signal samples: seg[k] = r + 2(k-32); its mean is
	// r + 2(39.5-32) = r + 15, so after removing it seg[k] = 2(k-32) - 15.
	cutSegment(&seg, at, 0, int64(len(x)), 500, 250)
	for k, v := range seg {
		if want := 2*float64(k-segPre) - 15; !near(v, want, 1e-9) {
			t.Fatalf("seg[%d] = %v, want %v", k, v, want)
		}
	}
	// Near the start the samples before 0 take x[0]: r=10 covers 10-64..10+94, clamped to 0.
	cutSegment(&seg, at, 0, int64(len(x)), 10, 250)
	if seg[0] != seg[1] || seg[0] != seg[27] || seg[27] == seg[28] {
		t.Fatalf("clamped start: %v", seg[:30])
	}
}

// shapeSeg is a beat-like segment: a narrow R wave at the peak and a P wave 160 ms before.
func shapeSeg(scale float64) [segLen]float64 {
	var s [segLen]float64
	var sum float64
	for k := range s {
		d := float64(k - segPre)
		s[k] = scale * (math.Exp(-d*d/4) + 0.2*math.Exp(-(d+20)*(d+20)/8))
		sum += s[k]
	}
	for k := range s {
		s[k] -= sum / segLen
	}
	return s
}

func TestBeatTrackerRR(t *testing.T) {
	seg := shapeSeg(1)
	var tr beatTracker
	type step struct {
		pre, post                                float64
		wantPre, wantLocal, wantMedian, wantPrev float64
	}
	for i, s := range []step{
		{0, 1.0, 1.0, 1.0, 1.0, 1.0},       // first beat: pre := post, history empty
		{1.0, 1.0, 1.0, 1.0, 1.0, 1.0},     // history [1]
		{1.0, 0.6, 1.0, 1.0, 1.0, 1.0},     // history [1 1]
		{0.6, 1.4, 0.6, 2.6 / 3, 1.0, 1.0}, // history [1 1 .6]: mean .8667, median 1
		{1.4, 1.0, 1.4, 4.0 / 4, 1.0, 0.6}, // history [1 1 .6 1.4]: median of sorted [.6 1 1 1.4] = v[2] = 1
	} {
		rr, _ := tr.next(s.pre, s.post, &seg)
		if !near(rr.Pre, s.wantPre, 1e-12) || !near(rr.Local, s.wantLocal, 1e-12) ||
			!near(rr.Median, s.wantMedian, 1e-12) || !near(rr.Prev, s.wantPrev, 1e-12) || rr.Post != s.post {
			t.Errorf("beat %d: %+v; want pre %v local %v median %v prev %v", i, rr, s.wantPre, s.wantLocal, s.wantMedian, s.wantPrev)
		}
		if i == 3 {
			var f [NumFeatures]float32
			var w [WindowLen]float32
			Features(f[:], &w, rr)
			names := FeatureNames()
			want := map[string]float64{"pre/median": 0.6, "post/median": 1.4, "prev/local": 1 / (2.6 / 3), "pre/local": 0.6 / (2.6 / 3)}
			for name, v := range want {
				j := slices.Index(names, name)
				if j < 0 || !near(float64(f[j]), v, 1e-6) {
					t.Errorf("feature %s (index %d) = %v, want %v", name, j, f[j], v)
				}
			}
		}
	}
}

// TestNormalTracker checks the patient's normal rhythm: premature beats, pauses and runs of
// ectopic beats stay out of it, a lasting new rate replaces it, and the spread measures how
// irregular the rhythm is.
func TestNormalTracker(t *testing.T) {
	rep := func(v float64, n int) []float64 { return slices.Repeat([]float64{v}, n) }
	cat := func(s ...[]float64) []float64 { return slices.Concat(s...) }
	for _, c := range []struct {
		name       string
		rr         []float64
		wantNormal float64
		wantSpread float64
	}{
		{"empty", nil, 0, 0},
		{"regular", rep(0.8, 40), 0.8, 0},
		{"isolated premature beats", cat(rep(1, 20), []float64{0.6, 1.4}, rep(1, 5), []float64{0.6, 1.4}), 1, 0},
		// A run of 12 ectopic beats at 0.5 s is no new rhythm: the median of all of the
		// last 32 intervals would be 0.5 by now.
		{"run of ectopic beats", cat(rep(1, 20), rep(0.5, 12)), 1, 0},
		{"pauses", cat(rep(1, 20), []float64{2.0}, rep(1, 3), []float64{1.8}), 1, 0},
		// A slower rate (every interval a pause) is adopted after normalReset intervals; so is
		// a faster one that is irregular (atrial fibrillation: 0.5, 0.6, 0.7, ...).
		{"lasting slower rate", cat(rep(1, 10), rep(1.6, normalReset)), 1.6, 0},
		{"lasting irregular faster rate", cat(rep(1, 10), func() (v []float64) {
			for i := 0; i < normalReset; i++ {
				v = append(v, 0.5+0.1*float64(i%3))
			}
			return v
		}()), 0.6, 1.0 / 6},
		// A faster regular run (a supraventricular tachycardia) keeps the rhythm before it, so
		// that its beats stay premature, for normalHold intervals; then it is the new rhythm.
		{"regular run", cat(rep(1, 10), rep(0.6, normalHold)), 1, 0},
		{"lasting regular faster rate", cat(rep(1, 10), rep(0.6, normalHold+normalReset)), 0.6, 0},
		{"after a regular run", cat(rep(1, 10), rep(0.6, 100), rep(1, 40)), 1, 0},
		{"irregular rhythm", func() (v []float64) {
			for i := 0; i < 100; i++ {
				v = append(v, 1+0.1*float64(i%3-1)) // 0.9, 1, 1.1: changes 1/9, 1/10, 2/11
			}
			return v
		}(), 1, 1.0 / 9},
		{"gradual change is followed", func() (v []float64) {
			for i := 0; i < 100; i++ {
				v = append(v, 1-0.004*float64(i))
			}
			return v
		}(), 1 - 0.004*83, 0.00546}, // the median of the last 32 lags 16 beats behind
		// The changes are 1 (1 after 0.5) and 0 (1 after 1).
		{"warm-up takes the first intervals", []float64{0.5, 1, 1}, 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var tr normalTracker
			for _, v := range c.rr {
				tr.add(v)
			}
			if got := tr.normal(); !near(got, c.wantNormal, 1e-9) {
				t.Errorf("normal %v, want %v", got, c.wantNormal)
			}
			if got := tr.spread(); !near(got, c.wantSpread, 1e-3) {
				t.Errorf("spread %v, want %v", got, c.wantSpread)
			}
		})
	}
}

func TestMorphFeatures(t *testing.T) {
	base := shapeSeg(1)
	std := math.Sqrt(meanSquare(base[:]))
	var tr beatTracker
	for i := 0; i < templateMin; i++ {
		rr, _ := tr.next(1, 1, &base)
		if rr.Morph.Known {
			t.Fatalf("beat %d: morphology known before the template holds %d beats", i, templateMin)
		}
	}
	double, flipped := shapeSeg(2), shapeSeg(-1)
	names := morphNames()
	for _, tc := range []struct {
		name  string
		seg   [segLen]float64
		want  map[string]float64
		extra map[string]float64
	}{
		{"same", base, map[string]float64{"corr": 1, "corr_qrs": 1, "corr_p": 1, "dist": 0, "amp_qrs": 1, "tv_qrs": 1, "d0": 0},
			map[string]float64{"corr_t": 1, "pos_qrs": 1, "neg_qrs": 1, "corr_qrs_shift": 1, "noise": 1, "ect_qrs": 0, "ect": 0}},
		// Twice as tall: same shape, double QRS amplitude and variation; the difference is the
		// template itself, whose RMS is its std, so dist = 1 and d0 = T[R]/std.
		{"double", double, map[string]float64{"corr": 1, "corr_qrs": 1, "dist": 1, "amp_qrs": 2, "tv_qrs": 2, "d0": base[segPre] / std},
			map[string]float64{"corr_t": 1, "pos_qrs": 2, "neg_qrs": 2, "corr_qrs_shift": 1, "noise": 2}},
		{"flipped", flipped, map[string]float64{"corr": -1, "corr_qrs": -1, "corr_p": -1, "dist": 2, "amp_qrs": 1, "d0": -2 * base[segPre] / std},
			map[string]float64{"corr_t": -1, "noise": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tr // the template stays as trained above
			// Premature (pre/median 0.6): the beat must not enter the template.
			rr, _ := tr.next(0.6, 1.4, &tc.seg)
			if !rr.Morph.Known {
				t.Fatal("morphology unknown")
			}
			for name, want := range tc.want {
				j := slices.Index(names, name)
				if got := float64(rr.Morph.Values[j]); !near(got, want, 1e-5) {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			for name, want := range tc.extra {
				j := slices.Index(extraMorphNames[:], name)
				if got := float64(rr.Morph.Extra[j]); !near(got, want, 1e-5) {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			if tr.tplN != templateMin {
				t.Errorf("a premature beat entered the template (%d beats)", tr.tplN)
			}
		})
	}
	// A regular beat unlike the template (correlation < 0.9) is not averaged in either; a
	// regular beat like it is.
	// Cut 2 samples (16 ms) late, the usual beat's QRS correlates less with the template's, but
	// fully at the best shift (corr_qrs_shift).
	var late [segLen]float64
	for k := range late {
		late[k] = base[max(k-2, 0)]
	}
	trL := tr
	if rr, _ := trL.next(0.6, 1.4, &late); rr.Morph.Values[1] > 0.99 || !near(float64(rr.Morph.Extra[3]), 1, 1e-5) {
		t.Errorf("a beat cut late: corr_qrs %v, corr_qrs_shift %v, want below 0.99 and 1", rr.Morph.Values[1], rr.Morph.Extra[3])
	}
	// Beats unlike the template, premature or not, build the ectopic template; once it holds
	// ectMin of them a beat is compared with it too: ect_qrs and ect are its correlation with
	// the ectopic template minus that with the template (0 before).
	trE := tr
	for i := 0; i < ectMin; i++ {
		if rr, _ := trE.next(0.6, 1.4, &flipped); rr.Morph.Extra[5] != 0 || rr.Morph.Extra[6] != 0 {
			t.Fatalf("unlike beat %d: ect_qrs %v, ect %v before the ectopic template holds %d beats", i, rr.Morph.Extra[5], rr.Morph.Extra[6], ectMin)
		}
	}
	for _, c := range []struct {
		name string
		pre  float64
		seg  *[segLen]float64
		want float64
	}{{"ectopic", 0.6, &flipped, 2}, {"usual", 1, &base, -2}, {"usual, taller", 1, &double, -2}} {
		rr, _ := trE.next(c.pre, 1, c.seg)
		if e := rr.Morph.Extra; !near(float64(e[5]), c.want, 1e-5) || !near(float64(e[6]), c.want, 1e-5) {
			t.Errorf("%s beat: ect_qrs %v, ect %v, want %v", c.name, e[5], e[6], c.want)
		}
	}
	if trE.ectN != ectMin+1 {
		t.Errorf("ectopic template holds %d beats, want %d (the unlike ones)", trE.ectN, ectMin+1)
	}
	tr2 := tr
	tr2.next(1, 1, &flipped)
	if tr2.tplN != templateMin {
		t.Errorf("an unlike beat entered the template")
	}
	tr2.next(1, 1, &double)
	if tr2.tplN != templateMin+1 {
		t.Errorf("a like regular beat did not enter the template")
	}
	// The usual beat itself changes (the QRS turns over): after templateReset unlike beats in
	// a row at the usual rhythm the template starts over and learns the new shape. Premature
	// unlike beats (ectopic beats) never restart it, however many.
	tr3 := tr
	for i := 0; i < 3*templateReset; i++ {
		tr3.next(0.6, 1, &flipped)
		tr3.next(1, 1, &base)
	}
	if tr3.tplN != templateMin+3*templateReset {
		t.Errorf("ectopic beats restarted the template (%d beats)", tr3.tplN)
	}
	tr4 := tr
	for i := 0; i < templateReset; i++ {
		rr, _ := tr4.next(1, 1, &flipped)
		if !rr.Morph.Known || !near(float64(rr.Morph.Values[0]), -1, 1e-5) {
			t.Fatalf("beat %d of the new shape: %+v, want correlation -1 with the old template", i, rr.Morph)
		}
	}
	if rr, _ := tr4.next(1, 1, &flipped); !rr.Morph.Known || !near(float64(rr.Morph.Values[0]), 1, 1e-5) {
		t.Errorf("after the restart: %+v, want correlation 1 with the new template", rr.Morph)
	}
	// Unlike beats that are unlike each other too (noise, multiform beats) do not.
	tr5 := tr
	for i := 0; i < 2*templateReset; i++ {
		seg := flipped
		if i%2 == 1 {
			seg = shapeSeg(1)
			slices.Reverse(seg[:])
		}
		tr5.next(1, 1, &seg)
	}
	if tr5.tpl != tr.tpl {
		t.Errorf("beats unlike each other replaced the template")
	}
	// Trigeminy with couplets (record 208): two ectopic beats, then a usual one after a long
	// interval. The 32-interval median becomes the ectopic beats' interval, so they are on the
	// usual rhythm and the usual beat is off it; the usual beat still restarts the candidate,
	// so the ectopic beats never replace the template.
	tr6 := tr
	for i := 0; i < 4*templateReset; i++ {
		tr6.next(1, 1, &flipped)
		tr6.next(1, 2, &flipped)
		if rr, _ := tr6.next(2, 1, &base); i > 2 && !near(float64(rr.Morph.Values[0]), 1, 1e-5) {
			t.Fatalf("cycle %d: the usual beat's correlation %v, want 1 (the template was replaced)", i, rr.Morph.Values[0])
		}
		if tr6.candN >= templateReset {
			t.Fatalf("cycle %d: %d candidates", i, tr6.candN)
		}
	}
	if tr6.tpl != tr.tpl {
		t.Errorf("ectopic beats on the usual rhythm replaced the template")
	}
	// Wide beats shaped like the template (a ventricular run whose complexes correlate with the
	// usual beat, record 223) neither enter the template nor replace it, however many.
	wide := wideSeg()
	tr7 := tr
	rr, _ := tr7.next(1, 1, &wide)
	if c, w := rr.Morph.Values[0], rr.Morph.WidthRatio; c < 0.9 || w <= templateWidth {
		t.Fatalf("test shape: correlation %v, width ratio %v; want ≥ 0.9 and > %v", c, w, templateWidth)
	}
	for i := 0; i < 3*templateReset; i++ {
		tr7.next(1, 1, &wide)
	}
	if tr7.tpl != tr.tpl || tr7.tplN != templateMin {
		t.Errorf("wide beats entered or replaced the template (%d beats)", tr7.tplN)
	}
}

// wideSeg is shapeSeg(1) with an R wave √2 times as wide (correlation 0.97 with it, QRS width
// ratio 1.57).
func wideSeg() [segLen]float64 {
	var s [segLen]float64
	var sum float64
	for k := range s {
		d := float64(k - segPre)
		s[k] = math.Exp(-d*d/8) + 0.2*math.Exp(-(d+20)*(d+20)/8)
		sum += s[k]
	}
	for k := range s {
		s[k] -= sum / segLen
	}
	return s
}

func TestFeatureLayout(t *testing.T) {
	names := FeatureNames()
	if len(names) != NumFeatures {
		t.Fatalf("%d names for %d features", len(names), NumFeatures)
	}
	if names[numV1Features-1] != "width" || names[numV1Features] != "pre/median" || names[numV2Features-1] != "d40" ||
		names[numV2Features] != "amp_p" || names[numV3Features-1] != "spread" || names[numV4Features-1] != "prev/normal" ||
		names[numV4Features] != "corr_t" || names[numV7Features-1] != "noise" || names[len(names)-1] != "ect" {
		t.Fatalf("layout: %v", names[numV1Features-2:])
	}
	var f [NumFeatures]float32
	for i := range f {
		f[i] = -1
	}
	var w [WindowLen]float32
	Features(f[:], &w, RRFeatures{Pre: 1, Post: 1, Local: 1, Average: 1})
	// Unknown morphology reads as a beat identical to the template; an unknown normal rhythm
	// gives zero ratios.
	for j := numV1Features + numRRFeat; j < NumFeatures; j++ {
		want := float32(0)
		switch names[j] {
		case "corr", "corr_qrs", "corr_p", "amp_qrs", "tv_qrs", "amp_p", "width/template",
			"corr_t", "pos_qrs", "neg_qrs", "corr_qrs_shift", "noise":
			want = 1
		}
		if f[j] != want {
			t.Fatalf("unknown morphology: feature %s = %v, want %v", names[j], f[j], want)
		}
	}
	if f[numV1Features+2] != 0 {
		t.Fatalf("unknown prev: prev/local = %v", f[numV1Features+2])
	}
}

// TestStreamFeaturesMatchBatch checks that BeatStream (serve) computes the same RR and
// morphology features as BeatsFromPeaks (training, evaluation) at the same R peaks.
func TestStreamFeaturesMatchBatch(t *testing.T) {
	x := syntheticECG(360 * 60)
	for i := range x {
		if (i/300)%5 == 3 { // some beats taller, to vary the morphology
			x[i] *= 1.5
		}
	}
	bs := NewBeatStream(360)
	var got []StreamBeat
	for _, v := range x {
		got = bs.Push(v, got)
	}
	if len(got) < 60 {
		t.Fatalf("%d stream beats", len(got))
	}
	peaks := make([]int64, len(got)+1)
	for i, b := range got {
		peaks[i] = b.Sample
	}
	peaks[len(got)] = got[len(got)-1].Sample + int64(got[len(got)-1].RR.Post*360+0.5)
	want := BeatsFromPeaks(x, 360, peaks, nil, "syn")
	if len(want) != len(got) {
		t.Fatalf("%d batch beats, %d stream beats", len(want), len(got))
	}
	known := 0
	for i := range got {
		if got[i].RR.Morph.Known {
			known++
		}
		a, b := got[i].RR, want[i].RR
		if !near(a.Pre, b.Pre, 1e-9) || !near(a.Median, b.Median, 1e-9) || !near(a.Prev, b.Prev, 1e-9) ||
			!near(a.Normal, b.Normal, 1e-9) || !near(a.Spread, b.Spread, 1e-9) || a.Morph.Known != b.Morph.Known {
			t.Fatalf("beat %d: stream %+v, batch %+v", i, a, b)
		}
		for k := range a.Morph.Values {
			if !near(float64(a.Morph.Values[k]), float64(b.Morph.Values[k]), 1e-5) {
				t.Fatalf("beat %d morph %d: stream %v, batch %v", i, k, a.Morph.Values[k], b.Morph.Values[k])
			}
		}
		if got[i].Samples != want[i].Samples {
			t.Fatalf("beat %d: windows differ", i)
		}
	}
	if known < len(got)-templateMin-1 {
		t.Errorf("morphology known for %d of %d beats", known, len(got))
	}
}

func TestTuneOffsets(t *testing.T) {
	// N beats score S 3 below N, S beats 1 below: an S offset in (1, 3) separates them all;
	// the smallest on the grid is 1.25. V, F and Q never win and keep offset 0.
	var scores [][NumClasses]float64
	var y []Class
	for i := 0; i < 100; i++ {
		scores = append(scores, [NumClasses]float64{0, -3, -20, -20, -20})
		y = append(y, ClassN)
	}
	for i := 0; i < 10; i++ {
		scores = append(scores, [NumClasses]float64{0, -1, -20, -20, -20})
		y = append(y, ClassS)
	}
	off := tuneOffsets(scores, y)
	if off != [NumClasses]float32{0, 1.25, 0, 0, 0} {
		t.Fatalf("offsets %v, want [0 1.25 0 0 0]", off)
	}
	// The offsets are the decision rule of predict: class = arg max(score + offset).
	m := &ensemble{Base: [NumClasses]float32{0, -1, -20, -20, -20}, Offset: off, Trees: []tree{{Class: 0, Nodes: []node{{Feat: -1}}}}}
	m.flatten()
	var f [NumFeatures]float32
	if p := m.predict(&f); p.Class != ClassS || !near(p.Probs[ClassS], 1/(1+math.Exp(-0.25)), 1e-6) {
		t.Fatalf("prediction with offsets: %+v", p)
	}
	m.Offset = [NumClasses]float32{}
	if p := m.predict(&f); p.Class != ClassN {
		t.Fatalf("prediction without offsets: %+v", p)
	}
}

// TestModelV1File reads a version 1 model file written by the previous format (70 features,
// no decision offsets) and checks its predictions against those it gave then.
func TestModelV1File(t *testing.T) {
	m, err := LoadModel("testdata/model_v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 1 || m.NumFeatures != numV1Features || len(m.Meta.Records) != 1 {
		t.Fatalf("version %d, %d features, records %v", m.Version, m.NumFeatures, m.Meta.Records)
	}
	check := func(m *Model) {
		t.Helper()
		var out bytes.Buffer
		if _, err := ClassifyFile(m, "testdata/beats_v1.csv", &out); err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile("testdata/model_v1_predictions.ndjson")
		if err != nil {
			t.Fatal(err)
		}
		if out.String() != string(want) {
			t.Fatalf("predictions differ from those of the version 1 reader:\n%s\nwant:\n%s", out.String(), want)
		}
	}
	check(m)
	// Written again, it stays a version 1 file.
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	m2, err := ReadModel(&b)
	if err != nil || m2.Version != 1 {
		t.Fatalf("rewritten: %v, %+v", err, m2)
	}
	check(m2)
}

func TestModelRoundTrip(t *testing.T) {
	beats := syntheticBeats(600)
	for i := range beats {
		beats[i].Record = []string{"a", "b", "c"}[i%3]
	}
	m, err := Train(context.Background(), beats, TrainOptions{Rounds: 5, MaxDepth: 3, Seed: 1, TuneFolds: 3})
	if err != nil {
		t.Fatal(err)
	}
	m.ens[0].Offset = [NumClasses]float32{0, 0.5, -0.25, 1, 0} // distinct values survive the trip
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	m2, err := ReadModel(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if m2.Version != ModelVersion || m2.ens[0].Offset != m.ens[0].Offset || !m2.HasShapeModel() || m2.Meta.Options.TuneFolds != 3 {
		t.Fatalf("read back: version %d offsets %v options %+v", m2.Version, m2.ens[0].Offset, m2.Meta.Options)
	}
	for i := range beats {
		p, q := m.ClassifyWindow(&beats[i].Samples, beats[i].RR), m2.ClassifyWindow(&beats[i].Samples, beats[i].RR)
		if p != q {
			t.Fatalf("beat %d: %+v before, %+v after", i, p, q)
		}
	}
	// Tuning needs at least as many training records as folds.
	if _, err := Train(context.Background(), beats, TrainOptions{Rounds: 2, TuneFolds: 4}); err == nil {
		t.Error("tuning with 4 folds over 3 records succeeded")
	}
}

func TestTrainingOverlap(t *testing.T) {
	m := &Model{Meta: ModelMeta{Records: []string{"101", "106", "208"}}}
	for _, tc := range []struct {
		eval, want []string
	}{
		{[]string{"208", "209"}, []string{"208"}},
		{[]string{"100", "232"}, nil},
		{[]string{"106", "101"}, []string{"106", "101"}},
	} {
		if got := TrainingOverlap(m, tc.eval); !slices.Equal(got, tc.want) {
			t.Errorf("TrainingOverlap(%v) = %v, want %v", tc.eval, got, tc.want)
		}
	}
	if got := TrainingOverlap(&Model{}, []string{"101"}); got != nil {
		t.Errorf("model without records: %v", got)
	}
}

// TestModelV2File checks that a version 2 model file (89 features, written by the version 2
// code: three ensembles trained on record 208, an S offset) still reads and gives the
// predictions the version 2 code gave on the first 300 beats of record 101, with all features,
// without morphology and without RR features (one ensemble each).
func TestModelV2File(t *testing.T) {
	checkOldModelFile(t, 2, numV2Features, 0.5)
}

// TestModelV3File does the same for a version 3 file (95 features, written by the version 3
// code: three ensembles of 3 rounds trained on record 208, an S offset).
func TestModelV3File(t *testing.T) {
	checkOldModelFile(t, 3, numV3Features, 0.5)
}

// TestModelV4File reads a version 4 file (98 features, as now, but no linear model), made with
// the version 4 code, and checks that it gives the predictions that code gave.
func TestModelV4File(t *testing.T) {
	checkOldModelFile(t, 4, numV4Features, 0.5)
}

// setV6Features gives the first 300 beats of record 101 the normal rhythm, spread and
// morphology that the version 6 code computed for them (testdata/rr101_v6.ndjson; the code of
// versions 2 to 5 computed the same). The template's width limit and candidate restart and the
// beat-to-beat spread changed them since; the old model files are checked on the inputs their
// predictions were saved for, so that a difference is the reader's, not the features'.
func setV6Features(t *testing.T, beats []Beat) {
	t.Helper()
	data, err := os.ReadFile("testdata/rr101_v6.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for i := 0; dec.More(); i++ {
		var v struct {
			Normal, Spread float64
			Known          bool
			Values         [NumMorph]float32
			Width          float32
		}
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		rr := &beats[i].RR
		rr.Normal, rr.Spread = v.Normal, v.Spread
		rr.Morph = MorphFeatures{Known: v.Known, Values: v.Values, WidthRatio: v.Width}
		if i == 299 {
			return
		}
	}
	t.Fatal("testdata/rr101_v6.ndjson: fewer than 300 beats")
}

func checkOldModelFile(t *testing.T, version, nf int, offS float32) {
	dir := needData(t)
	name := "testdata/model_v" + strconv.Itoa(version)
	m, err := LoadModel(name + ".bin")
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != version || m.NumFeatures != nf || len(m.ens) != 3 || m.ens[0].Offset[ClassS] != offS {
		t.Fatalf("version %d, %d features, %d ensembles, offsets %v", m.Version, m.NumFeatures, len(m.ens), m.ens[0].Offset)
	}
	beats, err := LoadBeats(dir, []string{"101"})
	if err != nil {
		t.Fatal(err)
	}
	setV6Features(t, beats)
	data, err := os.ReadFile(name + "_predictions.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	n := 0
	for i := 0; dec.More(); i++ {
		b := &beats[i/3]
		rr := b.RR
		switch i % 3 {
		case 1:
			rr.Morph = MorphFeatures{}
		case 2:
			rr = RRFeatures{}
		}
		var want Prediction
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		got := m.ClassifyWindow(&b.Samples, rr)
		if got.Class != want.Class || !slices.EqualFunc(got.Probs[:], want.Probs[:], func(a, b float64) bool { return near(a, b, 1e-9) }) {
			t.Fatalf("beat %d, case %d: %+v, the version %d code gave %+v", i/3, i%3, got, version, want)
		}
		n++
	}
	if n != 900 {
		t.Fatalf("%d predictions compared, want 900", n)
	}
	// Written again, it stays a file of its version.
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if m2, err := ReadModel(&b); err != nil || m2.Version != version {
		t.Fatalf("rewritten: %v, %+v", err, m2)
	}
}
