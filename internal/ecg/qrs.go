package ecg

import "math"

// QRSDetector finds R peaks in a single-lead ECG stream, one sample at a time. It follows
// Pan & Tompkins (1985): a 5–15 Hz band-pass, derivative, squaring and a 150 ms moving-window
// integration, with adaptive signal and noise thresholds, T-wave discrimination by slope and a
// search-back for missed beats. Filters are second-order Butterworth sections designed for the
// stream's sampling rate, so any rate from 100 Hz up works.
//
// Delay and memory are bounded: a beat is reported at most about 1.66 average RR intervals
// (capped at 2.5 s) after it occurred, and the detector keeps a ring of ringSeconds of state.
// A QRSDetector is not safe for concurrent use.
type QRSDetector struct {
	fs       float64
	lp, hp   biquad
	deriv    [4]float64 // previous band-passed samples for the derivative
	mwiSum   float64
	mwiLen   int
	n        int64 // samples pushed
	sq       ring  // squared derivative
	mwi      ring  // integrated signal
	learning bool
	learnN   int

	// peak finding on the integrated signal
	candVal   float64
	candAt    int64
	rising    bool
	prevMWI   float64
	spki      float64
	npki      float64
	lastQRS   int64 // sample index of the last QRS (integrated-signal peak time)
	lastSlope float64
	rr        [8]int64
	rrN       int
	// best noise peak since the last QRS, for search-back
	sbVal   float64
	sbAt    int64
	sbSlope float64

	refractory, tWave, locWin, slopeDelay int64
	maxWait                               int64
	thrFrac, sbFrac, sbRR, tSlope         float64
}

const ringSeconds = 4

type ring struct {
	buf []float64
}

func (r *ring) put(i int64, v float64) { r.buf[int(i%int64(len(r.buf)))] = v }
func (r *ring) at(i int64) float64     { return r.buf[int(i%int64(len(r.buf)))] }

// NewQRSDetector returns a detector for a stream sampled at fs Hz (at least 100).
func NewQRSDetector(fs float64) *QRSDetector {
	if fs < 100 {
		fs = 100
	}
	n := int(ringSeconds * fs)
	d := &QRSDetector{
		fs:         fs,
		lp:         butterLowpass(15, fs),
		hp:         butterHighpass(5, fs),
		mwiLen:     int(math.Round(0.150 * fs)),
		sq:         ring{make([]float64, n)},
		mwi:        ring{make([]float64, n)},
		learning:   true,
		learnN:     int(2 * fs),
		lastQRS:    -1,
		candAt:     -1,
		sbAt:       -1,
		refractory: int64(0.200 * fs),
		tWave:      int64(0.360 * fs),
		locWin:     int64(0.200 * fs),
		// The squared derivative lags the signal by the band-pass delay (12 ms) and the
		// five-point derivative's 2 samples; its peak lies a median 14 ms after the
		// annotated R peak on DS1 (the R wave's steepest flank), a shift set once from DS1.
		slopeDelay: int64(math.Round(0.012*fs)) + 2 + int64(math.Round(0.014*fs)),
		maxWait:    int64(2.5 * fs),
		thrFrac:    0.20, // Pan & Tompkins use 0.25; 0.20, 1.5 and 0.3 were chosen on DS1 (docs/ecg.md)
		sbFrac:     0.5,
		sbRR:       1.5,
		tSlope:     0.3,
	}
	return d
}

// Delay is the largest number of samples between an R peak and the Push call that reports it.
func (d *QRSDetector) Delay() int { return int(d.maxWait + d.locWin) }

// Push adds one sample (any unit; mV or ADC units) and appends the sample indices (0-based,
// counted from the first sample pushed) of newly confirmed R peaks to dst.
func (d *QRSDetector) Push(x float64, dst []int64) []int64 {
	i := d.n
	d.n++
	b := d.hp.step(d.lp.step(x))
	// Five-point derivative (Pan & Tompkins), then squaring.
	dv := (2*b + d.deriv[0] - d.deriv[2] - 2*d.deriv[3]) * d.fs / 8
	d.deriv[3], d.deriv[2], d.deriv[1], d.deriv[0] = d.deriv[2], d.deriv[1], d.deriv[0], b
	s := dv * dv
	d.sq.put(i, s)
	d.mwiSum += s
	if i >= int64(d.mwiLen) {
		d.mwiSum -= d.sq.at(i - int64(d.mwiLen))
	}
	m := d.mwiSum / float64(d.mwiLen)
	if m < 0 {
		m = 0
	}
	d.mwi.put(i, m)
	if d.learning {
		if i+1 < int64(d.learnN) {
			return dst
		}
		// Initial thresholds from the first two seconds, then replay them.
		var mx, sum float64
		for k := int64(0); k <= i; k++ {
			v := d.mwi.at(k)
			sum += v
			mx = math.Max(mx, v)
		}
		d.spki = mx / 3
		d.npki = sum / float64(i+1) / 2
		d.learning = false
		for k := int64(0); k <= i; k++ {
			dst = d.step(k, dst)
		}
		return dst
	}
	return d.step(i, dst)
}

// step runs the decision logic for the integrated-signal sample at index i.
func (d *QRSDetector) step(i int64, dst []int64) []int64 {
	v := d.mwi.at(i)
	if v > d.prevMWI {
		d.rising = true
		if v > d.candVal || d.candAt < 0 {
			d.candVal, d.candAt = v, i
		}
	} else if d.rising && v < d.candVal/2 {
		// The integrated signal has fallen to half of its maximum: the candidate is a peak.
		d.rising = false
		dst = d.peak(d.candVal, d.candAt, dst)
		d.candVal, d.candAt = 0, -1
	}
	d.prevMWI = v
	// Search-back: no beat for 1.66 average RR intervals, take the best noise peak.
	if d.lastQRS >= 0 && d.sbAt >= 0 {
		wait := d.maxWait
		if d.rrN > 0 {
			wait = min(wait, int64(d.sbRR*d.rrMean()))
		}
		if i-d.lastQRS > wait {
			if d.sbVal > d.threshold()*d.sbFrac {
				d.spki = 0.25*d.sbVal + 0.75*d.spki
				dst = d.accept(d.sbAt, d.sbSlope, dst)
			} else {
				d.sbAt = -1
			}
		}
	}
	return dst
}

func (d *QRSDetector) threshold() float64 { return d.npki + d.thrFrac*(d.spki-d.npki) }

func (d *QRSDetector) rrMean() float64 {
	var s int64
	for k := 0; k < d.rrN; k++ {
		s += d.rr[k]
	}
	return float64(s) / float64(d.rrN)
}

// peak classifies a peak of the integrated signal as QRS or noise.
func (d *QRSDetector) peak(val float64, at int64, dst []int64) []int64 {
	if d.lastQRS >= 0 && at-d.lastQRS < d.refractory {
		return dst
	}
	slope := d.maxSlope(at)
	if val > d.threshold() {
		if d.lastQRS >= 0 && at-d.lastQRS < d.tWave && slope < d.tSlope*d.lastSlope {
			d.noise(val, at, slope)
			return dst
		}
		d.spki = 0.125*val + 0.875*d.spki
		return d.accept(at, slope, dst)
	}
	d.noise(val, at, slope)
	return dst
}

func (d *QRSDetector) noise(val float64, at int64, slope float64) {
	d.npki = 0.125*val + 0.875*d.npki
	if val > d.sbVal || d.sbAt < 0 {
		d.sbVal, d.sbAt, d.sbSlope = val, at, slope
	}
}

// maxSlope is the largest squared derivative in the integration window ending at at.
func (d *QRSDetector) maxSlope(at int64) float64 {
	var m float64
	for k := max(0, at-int64(d.mwiLen)); k <= at; k++ {
		m = math.Max(m, d.sq.at(k))
	}
	return m
}

// accept records a QRS whose integrated-signal peak is at index at and reports its R peak:
// the steepest slope of the band-passed signal in the 200 ms before at, corrected for the
// filter delay and the slope's usual distance from the R peak.
func (d *QRSDetector) accept(at int64, slope float64, dst []int64) []int64 {
	if d.lastQRS >= 0 {
		rr := at - d.lastQRS
		copy(d.rr[1:], d.rr[:7])
		d.rr[0] = rr
		d.rrN = min(d.rrN+1, 8)
	}
	d.lastQRS = at
	d.lastSlope = slope
	d.sbAt, d.sbVal = -1, 0
	// The fiducial point is the steepest slope of the band-passed QRS, not its largest
	// deflection: which deflection is largest depends on the QRS shape (on many records it is
	// the S wave, on some it alternates between R and S from beat to beat), while the steepest
	// slope lies a nearly constant time after the R peak on every DS1 record (docs/ecg.md).
	best, bestAt := -1.0, at
	for k := max(0, at-d.locWin); k <= at; k++ {
		if s := d.sq.at(k); s > best {
			best, bestAt = s, k
		}
	}
	return append(dst, max(0, bestAt-d.slopeDelay))
}

// biquad is a second-order IIR section (direct form II transposed).
type biquad struct {
	b0, b1, b2, a1, a2 float64
	z1, z2             float64
}

func (q *biquad) step(x float64) float64 {
	y := q.b0*x + q.z1
	q.z1 = q.b1*x - q.a1*y + q.z2
	q.z2 = q.b2*x - q.a2*y
	return y
}

// butterLowpass and butterHighpass are second-order Butterworth sections (bilinear transform,
// as in the RBJ audio-EQ cookbook with Q = 1/sqrt 2).
func butterLowpass(fc, fs float64) biquad {
	w := 2 * math.Pi * fc / fs
	alpha := math.Sin(w) / math.Sqrt2
	c := math.Cos(w)
	a0 := 1 + alpha
	return biquad{b0: (1 - c) / 2 / a0, b1: (1 - c) / a0, b2: (1 - c) / 2 / a0, a1: -2 * c / a0, a2: (1 - alpha) / a0}
}

func butterHighpass(fc, fs float64) biquad {
	w := 2 * math.Pi * fc / fs
	alpha := math.Sin(w) / math.Sqrt2
	c := math.Cos(w)
	a0 := 1 + alpha
	return biquad{b0: (1 + c) / 2 / a0, b1: -(1 + c) / a0, b2: (1 + c) / 2 / a0, a1: -2 * c / a0, a2: (1 - alpha) / a0}
}

// DetectQRS runs a QRSDetector over a whole signal and returns the R-peak sample indices.
func DetectQRS(x []float64, fs float64) []int64 {
	d := NewQRSDetector(fs)
	out := make([]int64, 0, len(x)/int(fs)*2)
	for _, v := range x {
		out = d.Push(v, out)
	}
	return out
}

// MatchResult counts a beat-by-beat comparison of detections with reference beats.
type MatchResult struct {
	TP, FN, FP int
}

// Sensitivity is TP/(TP+FN).
func (m MatchResult) Sensitivity() float64 { return ratio(m.TP, m.TP+m.FN) }

// PPV (positive predictivity) is TP/(TP+FP).
func (m MatchResult) PPV() float64 { return ratio(m.TP, m.TP+m.FP) }

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// MatchBeats pairs detections with reference beat times (both sorted, in samples): each
// reference beat matches at most one detection within window samples (150 ms is the standard
// of ANSI/AAMI EC57), nearest first.
func MatchBeats(ref, det []int64, window int64) MatchResult {
	var r MatchResult
	for _, d := range matchPeaks(ref, det, window) {
		if d >= 0 {
			r.TP++
		} else {
			r.FN++
		}
	}
	r.FP = len(det) - r.TP
	return r
}

// matchPeaks pairs reference beats with detections (both sorted, in samples) and returns, for
// each reference beat, the index of its detection or -1: in time order, each reference beat
// takes the nearest detection within window samples that no earlier one took.
func matchPeaks(ref, det []int64, window int64) []int {
	out := make([]int, len(ref))
	used := make([]bool, len(det))
	j := 0
	for i, t := range ref {
		for j < len(det) && det[j] < t-window {
			j++
		}
		best := -1
		for k := j; k < len(det) && det[k] <= t+window; k++ {
			if used[k] {
				continue
			}
			if best < 0 || abs64(det[k]-t) < abs64(det[best]-t) {
				best = k
			}
		}
		if best >= 0 {
			used[best] = true
		}
		out[i] = best
	}
	return out
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}
