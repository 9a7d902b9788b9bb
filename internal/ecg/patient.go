package ecg

import (
	"math"
	"slices"
	"strconv"
)

// Patient-relative features. A beat is described against the same patient's own recent
// rhythm and own dominant beat, which is what lets a classifier trained on some patients
// hold on a new one (de Chazal et al. 2004; Llamedo & Martínez 2011; Mondéjar-Guerra et al.
// 2019): an ectopic beat is premature for this patient and shaped unlike this patient's
// usual beat, whatever the usual rhythm and shape are. Everything here is computed online
// from the past (and the next R peak, which the post-RR interval needs anyway), by the same
// code in training (BeatsFromPeaks), evaluation and streaming (BeatStream).

// Raw-signal segment around the R peak, resampled to WindowFs: segPre samples before the
// peak (P wave and PR segment) and segPost from it (QRS and the start of the T wave).
const (
	segPre  = 32 // 256 ms
	segPost = 48 // 384 ms
	segLen  = segPre + segPost
	// Parts of the segment compared separately with the template.
	pLo, pHi     = 0, segPre - 10           // R-256 ms .. R-80 ms: P wave
	qrsLo, qrsHi = segPre - 10, segPre + 15 // R-80 ms .. R+120 ms: QRS complex
	// segStride is the spacing of the per-sample template differences.
	segStride  = 8
	numSegDiff = segLen / segStride

	// NumMorph is the number of morphology features (MorphFeatures.Values); the last one,
	// amp_p, is new in model version 3.
	NumMorph = 6 + numSegDiff + 1

	// templateMin is how many beats the template averages before its features are used.
	templateMin = 4
	// templateMaxWeight caps the template's memory: beats enter with weight at least 1/32.
	templateMaxWeight = 32
	// templateReset is how many beats in a row at the usual rhythm, unlike the template but
	// like each other, replace it.
	templateReset = 8
	// templateWidth is the largest QRS width, relative to the template's (WidthRatio), of a
	// beat that may enter the template or replace it.
	templateWidth = 1.25
	// rrMedianLen is the number of recent intervals whose median is the patient's rhythm.
	rrMedianLen = 32

	// The normal rhythm (RRFeatures.Normal): the median of the last normalLen intervals that
	// were neither premature (below prematureRatio of the estimate before them) nor pauses
	// (above pauseRatio of it). The first normalWarmup intervals are all taken; normalReset
	// rejected intervals in a row mean the rhythm itself changed (a new sustained rate), and the
	// estimate starts over from them, unless they are a run: faster than the normal rhythm
	// (median below prematureRatio of it) and regular (median |interval/their median − 1| below
	// runIrregularity), the signature of a supraventricular (or ventricular) tachycardia, whose
	// beats stay premature against the rhythm before it. Sinus rhythm speeds up gradually and
	// is followed interval by interval; atrial fibrillation is irregular and is adopted. A run
	// holds the estimate for at most normalHold intervals (then it is the new rhythm).
	normalLen       = 32
	normalWarmup    = 8
	normalReset     = 16
	prematureRatio  = 0.85
	pauseRatio      = 1.5
	runIrregularity = 0.1
	normalHold      = 256
	// spreadLen is the number of recent intervals whose median change from the interval
	// before, |rr_i/rr_(i−1) − 1|, is RRFeatures.Spread.
	spreadLen = 64
	// minSpread bounds the spread that standardises the prematurity, so that a perfectly
	// regular rhythm does not turn tiny deviations into large ones.
	minSpread = 0.02
)

// MorphFeatures compare a beat with the running template of the same patient's dominant
// beats. Known is false until the template holds templateMin beats (and for beats that do not
// come from a raw signal, such as ecg_beat readings or CSV input); the values are then zero.
type MorphFeatures struct {
	Known  bool
	Values [NumMorph]float32
	// WidthRatio is the beat's QRS width (see qrsWidth) divided by the template's (a version 4
	// feature; 1 when unknown).
	WidthRatio float32
	// Extra are the morphology features new in version 7 (extraMorphNames).
	Extra [numExtraMorph]float32
}

// The morphology features of version 7 (MorphFeatures.Extra; read by the trees and the linear
// model), aimed at ventricular beats whose complex correlates with the usual one and at normal
// beats that noise or a shifted fiducial point makes look unlike it:
//   - corr_t: the correlation with the template after the QRS (+120…+384 ms, the ST segment and
//     the start of the T wave; a ventricular beat's repolarisation is discordant);
//   - pos_qrs, neg_qrs: the QRS's largest positive and negative deflection (from the segment's
//     mean) against the template's (a ventricular beat's dominant deflection often has the
//     other sign);
//   - corr_qrs_shift: the largest QRS correlation with the template over shifts of up to
//     ±3 samples (±24 ms): a normal beat cut a little off its fiducial point still matches;
//   - noise: the total variation outside the QRS against the template's (noise, not shape).
//
// And of version 8, against the patient's ectopic template (beatTracker.ect), the running
// average of the beats unlike the usual one: a patient's ectopic beats are like each other
// more often than like another patient's (a ventricular couplet's first beat, premature with
// a short interval after it, is like the patient's other ventricular beats, not like another
// patient's supraventricular runs):
//   - ect_qrs: the QRS correlation with the ectopic template minus that with the template
//     (0 until the ectopic template holds ectMin beats);
//   - ect: the same over the whole segment.
const numExtraMorph = 7

// numV7Extra is the number of Extra features of version 7 files, a prefix.
const numV7Extra = 5

var extraMorphNames = [numExtraMorph]string{"corr_t", "pos_qrs", "neg_qrs", "corr_qrs_shift", "noise", "ect_qrs", "ect"}

// neutralExtra are the Extra values of a beat identical to the template.
var neutralExtra = [numExtraMorph]float32{1, 1, 1, 1, 1, 0, 0}

// ectMin is the number of beats the ectopic template holds before it is compared with.
const ectMin = 4

// maxShift is the largest shift, in samples, of corr_qrs_shift.
const maxShift = 3

// morphNames are the names of MorphFeatures.Values, in order.
func morphNames() []string {
	out := []string{"corr", "corr_qrs", "corr_p", "dist", "amp_qrs", "tv_qrs"}
	for k := 0; k < numSegDiff; k++ {
		out = append(out, "d"+strconv.Itoa(k*segStride-segPre))
	}
	return append(out, "amp_p")
}

// sampleFunc returns sample i of a signal; callers clamp i to the samples they hold.
type sampleFunc func(i int64) float64

// cutSegment fills seg with the signal around the R peak r (sampled at fs Hz), resampled to
// WindowFs by linear interpolation; positions outside [lo, hi) take the nearest held sample.
// The segment's mean is subtracted.
func cutSegment(seg *[segLen]float64, at sampleFunc, lo, hi int64, r int64, fs float64) {
	step := fs / WindowFs
	var sum float64
	for k := range seg {
		t := float64(r) + float64(k-segPre)*step
		i := int64(math.Floor(t))
		f := t - float64(i)
		a := at(min(max(i, lo), hi-1))
		b := at(min(max(i+1, lo), hi-1))
		seg[k] = a*(1-f) + b*f
		sum += seg[k]
	}
	mean := sum / segLen
	for k := range seg {
		seg[k] -= mean
	}
}

// beatTracker holds one patient's (one signal's) recent rhythm and dominant beat.
type beatTracker struct {
	rr      rrTracker
	normal  normalTracker
	prevPre float64 // pre-RR of the previous beat
	tpl     [segLen]float64
	tplN    int
	// cand averages the last candN beats, in a row, at the usual rhythm that were unlike the
	// template but like each other: a possible new usual beat.
	cand  [segLen]float64
	candN int
	// ect averages the beats unlike the template (weight 1/n up to templateMaxWeight, then
	// an exponential average): the patient's ectopic beats.
	ect  [segLen]float64
	ectN int
	med  [rrMedianLen]float64 // scratch for medians
}

// next returns the features of the beat whose R peak is preceded by pre seconds (0 for the
// first beat) and followed by post seconds, with seg its raw segment, and the local median
// RR interval that sets its window length; then it updates the tracker with the beat.
func (t *beatTracker) next(pre, post float64, seg *[segLen]float64) (RRFeatures, float64) {
	// The normal rhythm and its spread are those before this beat: the beat is judged
	// against them, then taken into them if it is normal.
	normal, spread := t.normal.normal(), t.normal.spread()
	if pre > 0 {
		t.rr.add(pre)
		t.normal.add(pre)
	}
	if pre == 0 {
		pre = post
	}
	rr := RRFeatures{Pre: pre, Post: post, Local: t.rr.last(10), Average: t.rr.average(),
		Prev: t.prevPre, Median: t.median(rrMedianLen), Normal: normal, Spread: spread}
	if rr.Local == 0 {
		rr.Local, rr.Average, rr.Median = post, post, post
	}
	if rr.Normal == 0 {
		rr.Normal = rr.Median
	}
	period := t.median(9)
	if period == 0 {
		period = post
	}
	var corr float64
	if t.tplN >= templateMin {
		rr.Morph = t.morph(seg)
		corr = float64(rr.Morph.Values[0])
	}
	// The template follows beats of the usual rhythm that look like it (any beat of the usual
	// rhythm while it is still young), so that ectopic beats do not pull it away. Looking like
	// it includes a QRS no wider than templateWidth times the template's: a ventricular beat
	// whose shape correlates with the usual one (record 223's runs) would otherwise pull the
	// template towards it, beat after beat, until the ventricular beats look normal.
	established := t.tplN >= templateMin
	wide := established && rr.Morph.WidthRatio > templateWidth
	like := established && corr >= 0.9 && !wide
	regular := rr.Pre/rr.Median >= 0.85 && rr.Pre/rr.Median <= 1.2
	switch {
	case !regular:
		// A beat like the template, at whatever rhythm, shows that the usual beat is still
		// there: the candidate for a new one starts over. Without this, in bigeminy or
		// trigeminy with couplets (record 208), the usual beats, long after the ectopic ones,
		// are off the usual rhythm (the 32-interval median is the ectopic beats' interval),
		// the ectopic beats are on it, and 8 of them in a row replaced the template.
		if like {
			t.candN = 0
		}
	case wide:
		// Neither the template nor a candidate to replace it: wide beats at the usual rhythm
		// are those of a ventricular run (a sustained ventricular rhythm, alternating forms),
		// which would otherwise become the template after 8 beats.
	case !established || like:
		t.candN = 0
		t.tplN++
		w := 1 / float64(min(t.tplN, templateMaxWeight))
		for k := range t.tpl {
			t.tpl[k] += w * (seg[k] - t.tpl[k])
		}
	default:
		// A beat at the usual rhythm but unlike the template. When templateReset of them come
		// in a row and look like each other, the patient's usual beat itself changed (the QRS
		// axis turned, an electrode moved): their average becomes the template, rather than
		// every later beat being called ectopic.
		if t.candN > 0 && pearson(seg[:], t.cand[:]) < 0.9 {
			t.candN = 0
		}
		t.candN++
		w := 1 / float64(t.candN)
		for k := range t.cand {
			t.cand[k] += w * (seg[k] - t.cand[k])
		}
		if t.candN == templateReset {
			t.tpl, t.tplN, t.candN = t.cand, t.candN, 0
		}
	}
	if established && !like {
		t.ectN++
		w := 1 / float64(min(t.ectN, templateMaxWeight))
		for k := range t.ect {
			t.ect[k] += w * (seg[k] - t.ect[k])
		}
	}
	if rr.Prev == 0 {
		rr.Prev = pre
	}
	t.prevPre = pre
	return rr, period
}

// normalTracker estimates a patient's normal rhythm, robust to ectopic beats and runs of them,
// and how irregular the rhythm is; its memory is bounded.
type normalTracker struct {
	hist      [normalLen]float64 // accepted intervals, a ring
	n, pos    int
	rejected  [normalReset]float64 // intervals rejected in a row
	nRejected int
	held      int                // intervals of a run rejected without restarting, since the last accepted one
	last      float64            // the last interval
	dev       [spreadLen]float64 // |rr/last − 1| of recent intervals, a ring
	nDev, pD  int
	scratch   [spreadLen]float64
}

// normal returns the median of the accepted intervals, 0 before the first.
func (t *normalTracker) normal() float64 {
	return medianOf(t.scratch[:t.n], t.hist[:t.n])
}

// spread returns the median relative change of recent intervals from the interval before
// each (beat-to-beat irregularity: small in sinus rhythm and in a regular run, large in atrial
// fibrillation), 0 before the second interval.
func (t *normalTracker) spread() float64 {
	return medianOf(t.scratch[:t.nDev], t.dev[:t.nDev])
}

// add judges the interval rr against the normal rhythm and keeps it when it is normal.
func (t *normalTracker) add(rr float64) {
	ref := t.normal()
	if t.last > 0 {
		t.dev[t.pD] = math.Abs(rr/t.last - 1)
		t.pD = (t.pD + 1) % spreadLen
		t.nDev = min(t.nDev+1, spreadLen)
	}
	t.last = rr
	if t.n < normalWarmup || (rr >= prematureRatio*ref && rr <= pauseRatio*ref) {
		t.accept(rr)
		t.nRejected, t.held = 0, 0
		return
	}
	t.rejected[t.nRejected] = rr
	t.nRejected++
	if t.nRejected == normalReset && t.held < normalHold && t.isRun(ref) {
		t.held += normalReset
		t.nRejected = 0
		return
	}
	if t.nRejected == normalReset {
		t.held = 0
		t.n, t.pos, t.nRejected = 0, 0, 0
		for _, v := range t.rejected {
			t.accept(v)
		}
	}
}

// isRun reports whether the rejected intervals are faster than the normal rhythm ref and
// regular (see runIrregularity).
func (t *normalTracker) isRun(ref float64) bool {
	m := medianOf(t.scratch[:normalReset], t.rejected[:])
	if m >= prematureRatio*ref {
		return false
	}
	var d [normalReset]float64
	for i, v := range t.rejected {
		d[i] = math.Abs(v/m - 1)
	}
	return medianOf(t.scratch[:normalReset], d[:]) < runIrregularity
}

func (t *normalTracker) accept(rr float64) {
	t.hist[t.pos] = rr
	t.pos = (t.pos + 1) % normalLen
	t.n = min(t.n+1, normalLen)
}

// medianOf returns the median of v (the upper one for an even count), using scratch (of
// len(v)) so that v keeps its order; 0 for no values.
func medianOf(scratch, v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	copy(scratch, v)
	slices.Sort(scratch)
	return scratch[len(scratch)/2]
}

// median returns the median of the last k intervals (without allocating).
func (t *beatTracker) median(k int) float64 {
	k = min(k, t.rr.n, len(t.med))
	if k == 0 {
		return 0
	}
	v := t.med[:k]
	for i := 1; i <= k; i++ {
		v[i-1] = t.rr.hist[(t.rr.pos-i+len(t.rr.hist))%len(t.rr.hist)]
	}
	slices.Sort(v)
	return v[k/2]
}

// morph compares seg with the template.
func (t *beatTracker) morph(seg *[segLen]float64) MorphFeatures {
	m := MorphFeatures{Known: true}
	tp := &t.tpl
	std := math.Sqrt(meanSquare(tp[:]))
	var dist float64
	for k := range seg {
		d := seg[k] - tp[k]
		dist += d * d
	}
	dist = math.Sqrt(dist / segLen)
	v := &m.Values
	v[0] = float32(pearson(seg[:], tp[:]))
	v[1] = float32(pearson(seg[qrsLo:qrsHi], tp[qrsLo:qrsHi]))
	v[2] = float32(pearson(seg[pLo:pHi], tp[pLo:pHi]))
	v[3] = float32(safeDiv(dist, std))
	v[4] = float32(safeDiv(span(seg[qrsLo:qrsHi]), span(tp[qrsLo:qrsHi])))
	v[5] = float32(safeDiv(totalVariation(seg[qrsLo:qrsHi]), totalVariation(tp[qrsLo:qrsHi])))
	for k := 0; k < numSegDiff; k++ {
		i := k * segStride
		v[6+k] = float32(safeDiv(seg[i]-tp[i], std))
	}
	// P-wave amplitude against the template's: an ectopic atrial beat has a P wave of another
	// shape or none visible (hidden in the previous T wave).
	v[6+numSegDiff] = float32(safeDiv(span(seg[pLo:pHi]), span(tp[pLo:pHi])))
	m.WidthRatio = float32(safeDiv(qrsWidth(seg), qrsWidth(tp)))
	e := &m.Extra
	e[0] = float32(pearson(seg[qrsHi:], tp[qrsHi:]))
	e[1] = float32(safeDiv(slices.Max(seg[qrsLo:qrsHi]), slices.Max(tp[qrsLo:qrsHi])))
	e[2] = float32(safeDiv(-slices.Min(seg[qrsLo:qrsHi]), -slices.Min(tp[qrsLo:qrsHi])))
	best := float64(v[1])
	for d := -maxShift; d <= maxShift; d++ {
		if d != 0 {
			best = max(best, pearson(seg[qrsLo+d:qrsHi+d], tp[qrsLo:qrsHi]))
		}
	}
	e[3] = float32(best)
	out := totalVariation(seg[:qrsLo]) + totalVariation(seg[qrsHi:])
	outT := totalVariation(tp[:qrsLo]) + totalVariation(tp[qrsHi:])
	e[4] = float32(safeDiv(out, outT))
	if t.ectN >= ectMin {
		e[5] = float32(pearson(seg[qrsLo:qrsHi], t.ect[qrsLo:qrsHi])) - v[1]
		e[6] = float32(pearson(seg[:], t.ect[:])) - v[0]
	}
	return m
}

// Where qrsWidth looks for the QRS complex in a segment: from 96 ms before the R peak to
// 200 ms after it (wide ventricular complexes end late).
const widthLo, widthHi = segPre - 12, segPre + 25

// qrsWidth estimates the QRS duration of a segment, in seconds: the time from the first to
// the last sample, around the R peak, whose slope exceeds widthFrac of the largest slope there.
// It does not depend on the QRS polarity or amplitude. As an absolute feature it made the
// inter-patient figures worse (noisy records look wide); only its ratio to the template's is
// used.
func qrsWidth(seg *[segLen]float64) float64 {
	var sl [widthHi - widthLo]float64
	var mx float64
	for k := range sl {
		i := widthLo + k
		sl[k] = math.Abs(seg[i+1] - seg[i-1])
		mx = max(mx, sl[k])
	}
	if mx <= 0 {
		return 0
	}
	first, last := -1, -1
	for k, v := range sl {
		if v >= widthFrac*mx {
			if first < 0 {
				first = k
			}
			last = k
		}
	}
	return float64(last-first+1) / WindowFs
}

// widthFrac is the share of the largest slope that counts as inside the QRS complex.
const widthFrac = 0.2

// pearson is the correlation coefficient of a and b (0 when either is constant).
func pearson(a, b []float64) float64 {
	n := float64(len(a))
	var sa, sb float64
	for i := range a {
		sa += a[i]
		sb += b[i]
	}
	ma, mb := sa/n, sb/n
	var cov, va, vb float64
	for i := range a {
		da, db := a[i]-ma, b[i]-mb
		cov += da * db
		va += da * da
		vb += db * db
	}
	if va <= 0 || vb <= 0 {
		return 0
	}
	return cov / math.Sqrt(va*vb)
}

func meanSquare(a []float64) float64 {
	var s float64
	for _, v := range a {
		s += v * v
	}
	return s / float64(len(a))
}

func span(a []float64) float64 {
	lo, hi := a[0], a[0]
	for _, v := range a[1:] {
		lo, hi = min(lo, v), max(hi, v)
	}
	return hi - lo
}

func totalVariation(a []float64) float64 {
	var s float64
	for i := 1; i < len(a); i++ {
		s += math.Abs(a[i] - a[i-1])
	}
	return s
}

// safeDiv is a/b, or 0 when b is not positive.
func safeDiv(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}
