package anomaly

import (
	"fmt"
	"math"
	"slices"
)

// Graphite's fixed Holt-Winters constants (graphite-web render/functions.py).
const (
	HoltWintersAlpha = 0.1
	HoltWintersBeta  = 0.0035
	HoltWintersGamma = 0.1
	HoltWintersDelta = 3
)

// HoltWintersOptions configure Holt-Winters. Zero values mean Graphite's constants; Graphite
// itself does not let them change.
type HoltWintersOptions struct {
	// SeasonLength is the number of points in a season: seasonality / step. It must be at
	// least 2 (Graphite fails on shorter seasons).
	SeasonLength int
	Alpha        float64 // level smoothing, default 0.1
	Beta         float64 // trend smoothing, default 0.0035
	Gamma        float64 // seasonal and deviation smoothing, default 0.1
	Delta        float64 // band width in deviations, default 3
}

func (o HoltWintersOptions) withDefaults() (HoltWintersOptions, error) {
	if o.Alpha == 0 {
		o.Alpha = HoltWintersAlpha
	}
	if o.Beta == 0 {
		o.Beta = HoltWintersBeta
	}
	if o.Gamma == 0 {
		o.Gamma = HoltWintersGamma
	}
	if o.Delta == 0 {
		o.Delta = HoltWintersDelta
	}
	if o.SeasonLength < 2 {
		return o, fmt.Errorf("%w: holt-winters season length must be at least 2 points, got %d (seasonality / step)", ErrInvalidParam, o.SeasonLength)
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"alpha", o.Alpha}, {"beta", o.Beta}, {"gamma", o.Gamma}} {
		if !(p.v > 0 && p.v <= 1) {
			return o, fmt.Errorf("%w: holt-winters %s must be in (0, 1], got %g", ErrInvalidParam, p.name, p.v)
		}
	}
	if !(o.Delta > 0) || math.IsInf(o.Delta, 0) {
		return o, fmt.Errorf("%w: holt-winters delta must be positive, got %g", ErrInvalidParam, o.Delta)
	}
	return o, nil
}

// HoltWinters is the Holt-Winters recurrence of Graphite's holtWintersAnalysis, one point at a
// time, in O(1) time and O(season length) memory. Missing points are NaN. It is not safe for
// concurrent use.
type HoltWinters struct {
	o          HoltWintersOptions
	i          int       // index of the next point
	intercept  float64   // intercepts[-1]; NaN when it was None
	slope      float64   // slopes[-1]
	nextPred   float64   // the forecast for the next point; NaN when None
	seasonals  []float64 // ring: seasonals[j] at j mod L
	deviations []float64 // ring: deviations[j] at j mod L
}

// NewHoltWinters returns the recurrence's state before the first point.
func NewHoltWinters(opts HoltWintersOptions) (*HoltWinters, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &HoltWinters{
		o:          o,
		intercept:  math.NaN(),
		nextPred:   math.NaN(),
		seasonals:  make([]float64, o.SeasonLength),
		deviations: make([]float64, o.SeasonLength),
	}, nil
}

// Options returns the options with defaults filled in.
func (h *HoltWinters) Options() HoltWintersOptions { return h.o }

// Step consumes the next point (NaN for a missing one) and returns the forecast Graphite made
// for it before seeing it (NaN for None) and the deviation recorded at it.
func (h *HoltWinters) Step(actual float64) (prediction, deviation float64) {
	L := h.o.SeasonLength
	i := h.i
	h.i++
	slot := i % L
	if math.IsNaN(actual) {
		// Graphite: intercept None, slope 0, seasonal 0, deviation 0, the pending forecast
		// is reported, and the next forecast is None.
		prediction = h.nextPred
		h.intercept = math.NaN()
		h.slope = 0
		h.seasonals[slot] = 0
		h.deviations[slot] = 0
		h.nextPred = math.NaN()
		return prediction, 0
	}
	var lastIntercept, lastSlope float64
	if i == 0 {
		lastIntercept, lastSlope = actual, 0
		prediction = actual
	} else {
		lastIntercept, lastSlope = h.intercept, h.slope
		if math.IsNaN(lastIntercept) {
			lastIntercept = actual
		}
		prediction = h.nextPred
	}
	var lastSeasonal, lastDev, nextLastSeasonal float64
	if i >= L {
		lastSeasonal = h.seasonals[slot]
		lastDev = h.deviations[slot]
	}
	if i+1 >= L {
		nextLastSeasonal = h.seasonals[(i+1)%L]
	}
	a, b, g := h.o.Alpha, h.o.Beta, h.o.Gamma
	intercept := a*(actual-lastSeasonal) + (1-a)*(lastIntercept+lastSlope)
	slope := b*(intercept-lastIntercept) + (1-b)*lastSlope
	seasonal := g*(actual-intercept) + (1-g)*lastSeasonal
	p := prediction
	if math.IsNaN(p) {
		p = 0 // Graphite's holtWintersDeviation treats a None prediction as 0
	}
	deviation = g*math.Abs(actual-p) + (1-g)*lastDev

	h.nextPred = intercept + slope + nextLastSeasonal
	h.intercept, h.slope = intercept, slope
	h.seasonals[slot] = seasonal
	h.deviations[slot] = deviation
	return prediction, deviation
}

// HoltWintersResult holds Graphite's series for each input point; NaN stands for None.
type HoltWintersResult struct {
	Forecast   []float64 // holtWintersForecast: the forecast made before seeing the point
	Deviation  []float64 // holtWintersAnalysis' deviations
	Lower      []float64 // holtWintersConfidenceLower: forecast - delta·deviation
	Upper      []float64 // holtWintersConfidenceUpper: forecast + delta·deviation
	Aberration []float64 // holtWintersAberration: how far the point lies outside the bands, else 0
}

func growTo(s []float64, n int) []float64 { return slices.Grow(s[:0], n)[:n] }

// HoltWintersAnalysis runs Graphite's holtWintersAnalysis over values (NaN = missing) and the
// confidence bands and aberration derived from it, reusing res's slices. It allocates only the
// season-length state when res has room.
func HoltWintersAnalysis(values []float64, opts HoltWintersOptions, res *HoltWintersResult) error {
	h, err := NewHoltWinters(opts)
	if err != nil {
		return err
	}
	n := len(values)
	res.Forecast = growTo(res.Forecast, n)
	res.Deviation = growTo(res.Deviation, n)
	res.Lower = growTo(res.Lower, n)
	res.Upper = growTo(res.Upper, n)
	res.Aberration = growTo(res.Aberration, n)
	delta := h.o.Delta
	for i, v := range values {
		f, dev := h.Step(v)
		res.Forecast[i], res.Deviation[i] = f, dev
		lo, up := f-delta*dev, f+delta*dev // NaN when the forecast is None
		res.Lower[i], res.Upper[i] = lo, up
		res.Aberration[i] = aberration(v, lo, up)
	}
	return nil
}

// aberration is Graphite's holtWintersAberration for one point; NaN comparisons are false, so a
// missing value or band gives 0 as in Graphite.
func aberration(v, lo, up float64) float64 {
	switch {
	case v > up:
		return v - up
	case v < lo:
		return v - lo
	}
	return 0
}

// Trim drops the first n points (the bootstrap interval) of every series, as Graphite's
// _trimBootstrap does after analysing bootstrap + series.
func (r *HoltWintersResult) Trim(n int) {
	n = min(max(n, 0), len(r.Forecast))
	r.Forecast = r.Forecast[n:]
	r.Deviation = r.Deviation[n:]
	r.Lower = r.Lower[n:]
	r.Upper = r.Upper[n:]
	r.Aberration = r.Aberration[n:]
}

// holtWintersBootstrapped analyses bootstrap followed by series and keeps the part for series.
func holtWintersBootstrapped(series, bootstrap []float64, opts HoltWintersOptions) (*HoltWintersResult, error) {
	all := make([]float64, 0, len(bootstrap)+len(series))
	all = append(append(all, bootstrap...), series...)
	var r HoltWintersResult
	if err := HoltWintersAnalysis(all, opts, &r); err != nil {
		return nil, err
	}
	r.Trim(len(bootstrap))
	return &r, nil
}

// HoltWintersForecast is Graphite's holtWintersForecast: bootstrap holds the points of the
// bootstrap interval (Graphite's default 7d) just before series; the result covers series.
func HoltWintersForecast(series, bootstrap []float64, opts HoltWintersOptions) ([]float64, error) {
	r, err := holtWintersBootstrapped(series, bootstrap, opts)
	if err != nil {
		return nil, err
	}
	return r.Forecast, nil
}

// HoltWintersConfidenceBands is Graphite's holtWintersConfidenceBands with bootstrap points
// before series.
func HoltWintersConfidenceBands(series, bootstrap []float64, opts HoltWintersOptions) (lower, upper []float64, err error) {
	r, err := holtWintersBootstrapped(series, bootstrap, opts)
	if err != nil {
		return nil, nil, err
	}
	return r.Lower, r.Upper, nil
}

// HoltWintersAberration is Graphite's holtWintersAberration with bootstrap points before series.
func HoltWintersAberration(series, bootstrap []float64, opts HoltWintersOptions) ([]float64, error) {
	r, err := holtWintersBootstrapped(series, bootstrap, opts)
	if err != nil {
		return nil, err
	}
	return r.Aberration, nil
}

// HoltWintersScore maps a point to the common 0..1 score: with r = |x - forecast| /
// (delta·deviation), score = r/(1+r), so a point on a band scores 0.5 and a point outside the
// bands (a non-zero aberration) scores above 0.5. NaN when the value or forecast is missing.
func HoltWintersScore(x, forecast, deviation, delta float64) float64 {
	if math.IsNaN(x) || math.IsNaN(forecast) {
		return math.NaN()
	}
	return ratioScore(math.Abs(x-forecast), delta*deviation)
}

// ratioScore maps num/den >= 0 to num/den / (1 + num/den) in [0, 1]; 0/0 is 0 and x/0 is 1.
func ratioScore(num, den float64) float64 {
	switch {
	case num == 0:
		return 0
	case den == 0 || math.IsInf(num, 1):
		return 1
	}
	r := num / den
	return r / (1 + r)
}
