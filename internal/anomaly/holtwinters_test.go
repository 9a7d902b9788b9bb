package anomaly

import (
	"math"
	"math/rand/v2"
	"testing"
)

var nan = math.NaN()

func near(a, b, tol float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b))
}

func TestHoltWintersHandComputed(t *testing.T) {
	// Season length 2; every number below was worked out by hand from Graphite's recurrence.
	values := []float64{10, 12, nan, 14, 13}
	want := HoltWintersResult{
		Forecast:   []float64{10, 10, 10.2007, nan, 13.981937},
		Deviation:  []float64{0, 0.2, 0, 1.58, 0.0981937},
		Lower:      []float64{10, 9.4, 10.2007, nan, 13.981937 - 0.2945811},
		Upper:      []float64{10, 10.6, 10.2007, nan, 13.981937 + 0.2945811},
		Aberration: []float64{0, 1.4, 0, 0, 13 - (13.981937 - 0.2945811)},
	}
	var got HoltWintersResult
	if err := HoltWintersAnalysis(values, HoltWintersOptions{SeasonLength: 2}, &got); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want []float64
	}{
		{"forecast", got.Forecast, want.Forecast},
		{"deviation", got.Deviation, want.Deviation},
		{"lower", got.Lower, want.Lower},
		{"upper", got.Upper, want.Upper},
		{"aberration", got.Aberration, want.Aberration},
	} {
		for i := range c.want {
			if !near(c.got[i], c.want[i], 1e-12) {
				t.Errorf("%s[%d] = %.12g, want %.12g", c.name, i, c.got[i], c.want[i])
			}
		}
	}
}

// graphiteReference is a direct, list-based transcription of Graphite's holtWintersAnalysis,
// holtWintersConfidenceBands and holtWintersAberration (None as a nil pointer), written for
// clarity, not speed, to check the ring-buffer implementation.
func graphiteReference(series []*float64, seasonLength int, delta float64) (pred, dev, lower, upper []*float64, aberr []float64) {
	const alpha, gamma, beta = 0.1, 0.1, 0.0035
	var intercepts []*float64
	var slopes, seasonals, deviations []float64
	var predictions []*float64
	lastSeasonalAt := func(i int) float64 {
		if j := i - seasonLength; j >= 0 {
			return seasonals[j]
		}
		return 0
	}
	lastDeviationAt := func(i int) float64 {
		if j := i - seasonLength; j >= 0 {
			return deviations[j]
		}
		return 0
	}
	var nextPred *float64
	for i, p := range series {
		if p == nil {
			intercepts = append(intercepts, nil)
			slopes = append(slopes, 0)
			seasonals = append(seasonals, 0)
			predictions = append(predictions, nextPred)
			deviations = append(deviations, 0)
			nextPred = nil
			continue
		}
		actual := *p
		var lastIntercept, lastSlope float64
		var prediction *float64
		if i == 0 {
			lastIntercept, lastSlope = actual, 0
			prediction = &actual
		} else {
			if intercepts[len(intercepts)-1] == nil {
				lastIntercept = actual
			} else {
				lastIntercept = *intercepts[len(intercepts)-1]
			}
			lastSlope = slopes[len(slopes)-1]
			prediction = nextPred
		}
		lastSeasonal := lastSeasonalAt(i)
		nextLastSeasonal := lastSeasonalAt(i + 1)
		lastSeasonalDev := lastDeviationAt(i)
		intercept := alpha*(actual-lastSeasonal) + (1-alpha)*(lastIntercept+lastSlope)
		slope := beta*(intercept-lastIntercept) + (1-beta)*lastSlope
		seasonal := gamma*(actual-intercept) + (1-gamma)*lastSeasonal
		np := intercept + slope + nextLastSeasonal
		nextPred = &np
		pv := 0.0
		if prediction != nil {
			pv = *prediction
		}
		deviation := gamma*math.Abs(actual-pv) + (1-gamma)*lastSeasonalDev
		intercepts = append(intercepts, &intercept)
		slopes = append(slopes, slope)
		seasonals = append(seasonals, seasonal)
		predictions = append(predictions, prediction)
		deviations = append(deviations, deviation)
	}
	for i := range series {
		f := predictions[i]
		d := deviations[i]
		dev = append(dev, &d)
		if f == nil {
			lower = append(lower, nil)
			upper = append(upper, nil)
		} else {
			lo, up := *f-delta*d, *f+delta*d
			lower = append(lower, &lo)
			upper = append(upper, &up)
		}
		switch {
		case series[i] == nil:
			aberr = append(aberr, 0)
		case upper[i] != nil && *series[i] > *upper[i]:
			aberr = append(aberr, *series[i]-*upper[i])
		case lower[i] != nil && *series[i] < *lower[i]:
			aberr = append(aberr, *series[i]-*lower[i])
		default:
			aberr = append(aberr, 0)
		}
	}
	return predictions, dev, lower, upper, aberr
}

func ptrs(values []float64) []*float64 {
	out := make([]*float64, len(values))
	for i := range values {
		if !math.IsNaN(values[i]) {
			out[i] = &values[i]
		}
	}
	return out
}

func deref(p *float64) float64 {
	if p == nil {
		return nan
	}
	return *p
}

// gappySeries is a seasonal series with single missing points, runs of missing points longer
// than a season and, when leadingGap, missing points at the start.
func gappySeries(n, season int, seed uint64, leadingGap bool) []float64 {
	r := rand.New(rand.NewPCG(seed, 2))
	v := make([]float64, n)
	for i := range v {
		v[i] = 60 + 15*math.Sin(2*math.Pi*float64(i)/float64(season)) + 0.05*float64(i) + r.NormFloat64()*3
		if r.Float64() < 0.002 {
			v[i] += 50
		}
	}
	for i := range v {
		if r.Float64() < 0.05 {
			v[i] = nan
		}
	}
	for k := 0; k < 3; k++ {
		start := r.IntN(n)
		for i := start; i < min(n, start+season+r.IntN(season)); i++ {
			v[i] = nan
		}
	}
	if leadingGap {
		for i := range min(n, 5) {
			v[i] = nan
		}
	}
	return v
}

func TestHoltWintersMatchesGraphiteReference(t *testing.T) {
	for _, c := range []struct {
		season     int
		n          int
		leadingGap bool
		delta      float64
	}{
		{2, 300, false, 3}, {3, 500, true, 3}, {24, 2000, false, 3}, {288, 6000, true, 2.5}, {7, 100, false, 3},
	} {
		values := gappySeries(c.n, c.season, uint64(c.season), c.leadingGap)
		pred, dev, lower, upper, aberr := graphiteReference(ptrs(values), c.season, c.delta)
		var got HoltWintersResult
		if err := HoltWintersAnalysis(values, HoltWintersOptions{SeasonLength: c.season, Delta: c.delta}, &got); err != nil {
			t.Fatal(err)
		}
		bad := 0
		for i := range values {
			for _, p := range []struct {
				name      string
				got, want float64
			}{
				{"forecast", got.Forecast[i], deref(pred[i])},
				{"deviation", got.Deviation[i], deref(dev[i])},
				{"lower", got.Lower[i], deref(lower[i])},
				{"upper", got.Upper[i], deref(upper[i])},
				{"aberration", got.Aberration[i], aberr[i]},
			} {
				if !near(p.got, p.want, 1e-9) && bad < 10 {
					bad++
					t.Errorf("season %d: %s[%d] = %.15g, reference %.15g", c.season, p.name, i, p.got, p.want)
				}
			}
		}
	}
}

func TestHoltWintersBootstrapForms(t *testing.T) {
	values := gappySeries(400, 24, 9, false)
	boot, series := values[:168], values[168:]
	opts := HoltWintersOptions{SeasonLength: 24}
	var full HoltWintersResult
	if err := HoltWintersAnalysis(values, opts, &full); err != nil {
		t.Fatal(err)
	}
	fc, err := HoltWintersForecast(series, boot, opts)
	if err != nil {
		t.Fatal(err)
	}
	lo, up, err := HoltWintersConfidenceBands(series, boot, opts)
	if err != nil {
		t.Fatal(err)
	}
	ab, err := HoltWintersAberration(series, boot, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(fc) != len(series) || len(lo) != len(series) || len(up) != len(series) || len(ab) != len(series) {
		t.Fatalf("lengths %d %d %d %d, want %d", len(fc), len(lo), len(up), len(ab), len(series))
	}
	for i := range series {
		j := i + len(boot)
		if !near(fc[i], full.Forecast[j], 0) || !near(lo[i], full.Lower[j], 0) || !near(up[i], full.Upper[j], 0) || !near(ab[i], full.Aberration[j], 0) {
			t.Fatalf("point %d differs from the untrimmed analysis", i)
		}
	}
}

func TestHoltWintersOptionErrors(t *testing.T) {
	for _, o := range []HoltWintersOptions{
		{SeasonLength: 1}, {SeasonLength: 0}, {SeasonLength: 4, Alpha: 2}, {SeasonLength: 4, Delta: -1},
	} {
		if _, err := NewHoltWinters(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestHoltWintersScore(t *testing.T) {
	for _, c := range []struct {
		x, f, dev, want float64
	}{
		{10, 10, 1, 0},       // on the forecast
		{13, 10, 1, 0.5},     // on the upper band (delta 3)
		{16, 10, 1, 2.0 / 3}, // two band widths away
		{7, 10, 1, 0.5},      // on the lower band
		{11, 10, 0, 1},       // off a zero-width band
		{nan, 10, 1, nan},    // missing value
		{10, nan, 1, nan},    // no forecast
	} {
		if got := HoltWintersScore(c.x, c.f, c.dev, 3); !near(got, c.want, 1e-15) {
			t.Errorf("HoltWintersScore(%g, %g, %g) = %g, want %g", c.x, c.f, c.dev, got, c.want)
		}
	}
}
