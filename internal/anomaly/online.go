package anomaly

import (
	"math"
	"slices"
	"time"
)

// The online detector: several cheap views of a series, each turned into a tail probability
// calibrated on the series' own past, combined with a Bonferroni minimum. It sees each point
// once, in time order, and scores it before learning from it. Nothing is configured: the step,
// the scales and a daily season are inferred from the data.
//
// Views (Component):
//
//	residual    |x - forecast| / typical error. The forecast comes from a bank of eight
//	            exponentially smoothed levels (α = 1, 1/4, 1/16, 1/64; each with and without a
//	            learned time-of-day profile); the one with the smallest recent mean absolute
//	            error is used. Level updates are clipped at 3 errors (spikes do not drag the
//	            level) and a level jumps to the data after 3 same-sign exceedances in a row
//	            (a level shift is learned at once, not flagged for ever).
//	volatility  |log(fast / slow mean absolute change)|: variance and frequency changes.
//	level       |medium-term mean - long-term mean| / long-term deviation: drift and shifts
//	            too slow for the residual; the long-term mean jumps to the medium one once this
//	            view has fired.
//	stuck       how many times in a row the value repeated, against how often runs at least
//	            that long happened before.
//	gap         how many points are missing in a row (empty values or absent rows), against how
//	            often gaps at least that long happened before.
//
// The first three views are calibrated by a tail model fitted online (peaks over threshold): a
// decayed histogram of the view's past values gives the 95th percentile u, and above it the tail
// is exponential with the mean excess over u, p = 0.05·exp(-(v-u)/mean excess), so p keeps
// falling past the largest value seen. The run views count runs in powers-of-two bins and give
// p = (runs at least this long + 1/(1+k)) / points. The combined p is 5 × the smallest view p
// (Bonferroni), and score = s/(s+OnlineSurprise) with s = -log10 p, so p = 10^-OnlineSurprise
// scores 0.5, the flag threshold, as with the other methods.

// Component names the view of the online detector that explains a score.
type Component uint8

const (
	ComponentNone Component = iota // warm-up: too little history
	ComponentResidual
	ComponentVolatility
	ComponentLevel
	ComponentStuck
	ComponentGap
	numViews = 5
)

var componentNames = [...]string{"warmup", "residual", "volatility", "level", "stuck", "gap"}

func (c Component) String() string {
	if int(c) < len(componentNames) {
		return componentNames[c]
	}
	return "unknown"
}

// Tuning constants of the online detector. They are fixed, not parameters: they were chosen on
// the development seeds of bench/anomalyeval (docs/anomaly.md) and hold for series of any step.
const (
	// OnlineSurprise is -log10 of the combined tail probability at which the score is 0.5 and
	// a point is flagged.
	OnlineSurprise = 2.5
	// OnlineWarmup is the number of present points scored 0 while the views learn.
	OnlineWarmup = 32

	tailQuantile    = 0.05    // the share of a view's values above u
	calibHalfLife   = 8192.0  // points; how far back the tail model remembers
	runHalfLife     = 16384.0 // points; how far back the run counts remember
	stepGaps        = 15      // gaps whose median is the inferred step
	day             = 24 * time.Hour
	maxSeasonBins   = 288        // 5-minute bins over a day at most
	levelClip       = 3.0        // level updates are clipped at this many errors
	shiftRun        = 3          // same-sign exceedances in a row that make a level jump
	errRate         = 1.0 / 32   // EWMA rate of the predictors' mean absolute errors
	volFastRate     = 1.0 / 64   // EWMA rates of the volatility view
	volSlowRate     = 1.0 / 512  //
	levelMidRate    = 1.0 / 64   // EWMA rates of the level view
	levelLongRate   = 1.0 / 1024 //
	calibBins       = 176        // histogram bins: 16 per power of two, up to 2^11 - 1
	calibBinsPerOct = 16
	runBins         = 40
	maxShape        = 0.2  // heaviest tail shape the calibration fits
	stuckFreeze     = 1e-3 // stuck-run probability below which the other views stop learning
	levelReset      = 3e-5 // combined level-view probability at which the long-term mean jumps
	numPredictors   = 8
)

var predictorAlpha = [numPredictors / 2]float64{1, 1.0 / 4, 1.0 / 16, 1.0 / 64}

// OnlineOptions configure the online detector. The zero value is the default; nothing needs to
// be set.
type OnlineOptions struct {
	// Step is the series' sampling period. Zero infers it online: the median of the first 15
	// positive gaps between observations (gap detection starts once it is known).
	Step time.Duration
}

// OnlineResult is the online detector's verdict on one point, with what explains it.
type OnlineResult struct {
	Score     float64   // 0..1; 0.5 at the flag threshold
	Anomaly   bool      // Score >= 0.5
	P         float64   // combined tail probability (1 during warm-up)
	Expected  float64   // the forecast made before seeing the point (NaN during warm-up)
	Scale     float64   // the forecast's typical absolute error (NaN during warm-up)
	Component Component // the view with the smallest tail probability
}

// tail is a view's online tail model: a decayed histogram of the view's values on a log scale,
// from which the 95th percentile u and the mean excess over it are refreshed every 16 points.
type tail struct {
	hist   [calibBins]float64
	total  float64
	weight float64 // the weight of the next observation; grows instead of decaying the counts
	decay  float64 // 1 / per-point decay factor
	u      float64 // threshold: the (1-tailQuantile) quantile
	sigma  float64 // generalized Pareto scale of the excesses over u
	xi     float64 // and shape, in [0, maxShape]
	since  int
}

func newTail(prior float64) tail {
	return tail{weight: 1, decay: math.Exp(math.Ln2 / calibHalfLife), u: prior, sigma: prior / 2}
}

// calibBin is the histogram bin of v >= 0: 16 bins per power of two of 1+v, split evenly
// (the exponent and the top four mantissa bits of 1+v, as in an HDR histogram), so finding it
// costs no logarithm.
func calibBin(v float64) int {
	if !(v > 0) {
		return 0
	}
	b := math.Float64bits(1 + v)
	i := (int(b>>52)-1023)*calibBinsPerOct + int(b>>48)&(calibBinsPerOct-1)
	return min(i, calibBins-1)
}

// binEdges[i] is where calibration bin i starts: 2^(i/16)·(1 + (i%16)/16) - 1, a fixed table.
var binEdges = func() (e [calibBins + 1]float64) {
	for i := range e {
		e[i] = math.Ldexp(1+float64(i%calibBinsPerOct)/calibBinsPerOct, i/calibBinsPerOct) - 1
	}
	return e
}()

func binLow(i int) float64 { return binEdges[i] }

// p returns the tail probability of v under the current model.
func (c *tail) p(v float64) float64 {
	if v <= c.u {
		return 1
	}
	z := (v - c.u) / c.sigma
	if c.xi < 1e-3 {
		return tailQuantile * math.Exp(-z)
	}
	return tailQuantile * math.Pow(1+c.xi*z, -1/c.xi)
}

// add learns v.
func (c *tail) add(v float64) {
	c.hist[calibBin(v)] += c.weight
	c.total += c.weight
	c.weight *= c.decay
	if c.weight > 1e200 {
		for i := range c.hist {
			c.hist[i] /= c.weight
		}
		c.total /= c.weight
		c.weight = 1
	}
	c.since++
	if c.since >= 16 {
		c.since = 0
		c.refit()
	}
}

// refit finds u and fits a generalized Pareto distribution to the excesses over it by the
// method of moments (shape ξ = (1 - mean²/var)/2, scale = mean·(1-ξ)), from the histogram
// (bins count at their middle; half of the bin straddling u is spread over it, so a discrete
// series does not get a zero excess). ξ is kept in [0, maxShape]: tails are at least as heavy
// as exponential, never bounded.
func (c *tail) refit() {
	want := tailQuantile * c.total
	acc := 0.0
	i := calibBins - 1
	for ; i > 0; i-- {
		if acc+c.hist[i] > want {
			break
		}
		acc += c.hist[i]
	}
	u := binLow(i + 1)
	var n, m1, m2 float64
	for j := i; j < calibBins; j++ {
		w, mid := c.hist[j], (binLow(j)+binLow(j+1))/2-u
		if j == i {
			w, mid = w/2, (binLow(i+1)-binLow(i))/4
		}
		n += w
		m1 += w * mid
		m2 += w * mid * mid
	}
	c.u = u
	if n > 0 && m1 > 0 {
		mean := m1 / n
		vr := max(m2/n-mean*mean, 1e-300)
		c.xi = min(maxShape, max(0, (1-mean*mean/vr)/2))
		c.sigma = mean * (1 - c.xi)
	}
	c.sigma = max(c.sigma, 0.05*(1+u), 1e-9)
}

// runs counts runs (of repeated values or missing points) by length in powers of two, decayed.
type runs struct {
	count  [runBins]float64 // runs of length in [2^i, 2^(i+1))
	points float64
	weight float64
	decay  float64
}

func newRuns() runs { return runs{weight: 1, decay: math.Exp(math.Ln2 / runHalfLife)} }

func runBin(k int) int {
	b := 0
	for k > 1 && b < runBins-1 {
		k >>= 1
		b++
	}
	return b
}

// point counts one point (an opportunity for a run to start).
func (r *runs) point() {
	r.points += r.weight
	r.weight *= r.decay
	if r.weight > 1e200 {
		for i := range r.count {
			r.count[i] /= r.weight
		}
		r.points /= r.weight
		r.weight = 1
	}
}

// end records a finished run of length k >= 1.
func (r *runs) end(k int) { r.count[runBin(k)] += r.weight }

// p is the chance that a run at least k long happens at a point, with a prior that makes a
// first run of k points as likely as 1/(1+k) runs.
func (r *runs) p(k int) float64 {
	c := 0.0
	for i := runBin(k); i < runBins; i++ {
		c += r.count[i]
	}
	return min(1, (c/r.weight+1/float64(1+k))/(r.points/r.weight+1))
}

// predictor is one exponentially smoothed level in the forecast bank.
type predictor struct {
	level float64
	err   float64 // mean absolute error
	over  int     // same-sign exceedances in a row, of sign sign
	sign  float64
}

// Online is the online anomaly detector for one series. Build it with NewOnline; feed points in
// time order with Step (or Observe). O(1) time and about 10 KiB of memory per series; Step
// allocates nothing. Not safe for concurrent use.
type Online struct {
	o OnlineOptions

	step     int64 // ns; 0 until known
	gaps     [stepGaps]int64
	ngaps    int
	lastTime int64
	started  bool
	n        int // present points seen

	// forecast bank and season
	pred      [numPredictors]predictor
	season    []float64 // time-of-day profile, nil until the step is known (and ≤ 6h)
	seasonBin int64     // ns per bin
	seasonT0  int64     // when the profile started learning
	perBin    float64   // points per bin
	dayLevel  float64
	dayRate   float64

	// volatility
	last             float64
	haveLast         bool
	volFast, volSlow float64

	// level
	mid, long, longVar float64

	calib [3]tail // residual, volatility, level

	stuckRuns, gapRuns runs
	stuck              int // repeats of the last value so far
	missing            int // missing points in the current gap
}

// NewOnline returns an online detector with no history.
func NewOnline(opts OnlineOptions) *Online {
	d := &Online{o: opts, calib: [3]tail{newTail(3), newTail(1), newTail(3)},
		stuckRuns: newRuns(), gapRuns: newRuns()}
	if opts.Step > 0 {
		d.setStep(int64(opts.Step))
	}
	return d
}

// OnlineStateBytes is the memory of one Online detector, for baseline budgets.
const OnlineStateBytes = 12 << 10

func (d *Online) setStep(step int64) {
	d.step = step
	if step > int64(6*time.Hour) {
		return // no room for a daily profile
	}
	bins := int64(min(maxSeasonBins, int64(day)/step))
	d.seasonBin = int64(day) / bins
	d.seasonT0 = d.lastTime
	d.season = make([]float64, bins)
	perDay := float64(int64(day) / step)
	perBin := perDay / float64(bins)
	d.perBin = perBin
	d.dayRate = min(1.0/8, max(1e-4, 1/perDay))
}

// seasonReady reports whether the daily profile has learned over two days, after which the
// level view compares deseasonalised values (before, the profile follows the data and would
// hide slow changes).
func (d *Online) seasonReady(t int64) bool {
	return d.season != nil && t-d.seasonT0 >= 2*int64(day)
}

// Observe implements Streaming.
func (d *Online) Observe(t time.Time, v []float64) (float64, bool) {
	r := d.Step(t.UnixNano(), v[0])
	return r.Score, r.Anomaly
}

// Step scores x observed at t (Unix ns; NaN = missing) and then learns from it. Each view
// fills its tail probability in pv; a value stuck for an unlikely long run is scored but not
// learned from.
func (d *Online) Step(t int64, x float64) OnlineResult {
	res := OnlineResult{P: 1, Expected: math.NaN(), Scale: math.NaN()}
	var pv [numViews]float64
	for i := range pv {
		pv[i] = 1
	}
	warm := d.n >= OnlineWarmup
	if !d.scoreGaps(t, x, warm, &pv) {
		return d.finish(res, pv, warm)
	}
	d.scoreStuck(x, warm, &pv)
	// A value stuck for an unlikely long run says nothing about the noise or the level: the
	// other views score it but do not learn from it (or the first real value after it would
	// look like an outlier against a scale shrunk to nothing).
	frozen := pv[ComponentStuck-1] < stuckFreeze
	s, bin := d.seasonAt(t)
	if d.n == 0 {
		for i := range d.pred {
			d.pred[i].level = x
		}
		d.dayLevel, d.mid, d.long = x, x, x
	}
	d.scoreResidual(x, s, warm, frozen, &res, &pv)
	d.scoreVolatility(x, warm, frozen, &pv)
	if !frozen {
		d.scoreLevel(t, x, s, warm, &pv)
		d.learnPredictors(x, s)
		if bin >= 0 {
			d.learnSeason(t, x, s, bin)
		}
	}
	d.last, d.haveLast = x, true
	d.n++
	return d.finish(res, pv, warm)
}

// scoreGaps counts the rows absent before t (by the step, learned from the first gaps) and an
// empty x, and scores the run of missing points. It reports whether x is present.
func (d *Online) scoreGaps(t int64, x float64, warm bool, pv *[numViews]float64) bool {
	absent := 0
	if d.started {
		dt := t - d.lastTime
		if d.step == 0 && dt > 0 && d.ngaps < stepGaps {
			d.gaps[d.ngaps] = dt
			d.ngaps++
			if d.ngaps == stepGaps {
				slices.Sort(d.gaps[:])
				d.setStep(d.gaps[stepGaps/2])
			}
		}
		if d.step > 0 && dt > d.step+d.step/2 {
			absent = int(min((dt+d.step/2)/d.step-1, 1<<30))
		}
	}
	if !d.started || t > d.lastTime {
		d.lastTime = t
	}
	d.started = true
	d.gapRuns.point()
	d.missing += absent
	if math.IsNaN(x) {
		d.missing++
		if warm {
			pv[ComponentGap-1] = d.gapRuns.p(d.missing)
		}
		return false
	}
	if d.missing > 0 {
		if warm && absent > 0 {
			// Scored here only when rows were absent: empty values scored the gap already.
			pv[ComponentGap-1] = d.gapRuns.p(d.missing)
		}
		d.gapRuns.end(d.missing)
		d.missing = 0
	}
	return true
}

// scoreStuck scores the run of repeats of the previous present value that x extends.
func (d *Online) scoreStuck(x float64, warm bool, pv *[numViews]float64) {
	d.stuckRuns.point()
	if d.haveLast && x == d.last {
		d.stuck++
		if warm {
			pv[ComponentStuck-1] = d.stuckRuns.p(d.stuck)
		}
	} else if d.stuck > 0 {
		d.stuckRuns.end(d.stuck)
		d.stuck = 0
	}
}

// seasonAt returns the daily profile's value at t and its bin, or 0, -1 without a profile.
func (d *Online) seasonAt(t int64) (float64, int) {
	if d.season == nil {
		return 0, -1
	}
	bin := int(floorMod(t, int64(day)) / d.seasonBin)
	if bin >= len(d.season) {
		bin = len(d.season) - 1
	}
	return d.season[bin], bin
}

// scoreResidual scores x against the forecast of the best predictor of the bank (s is the
// season at x) and sets the result's expected value and scale.
func (d *Online) scoreResidual(x, s float64, warm, frozen bool, res *OnlineResult, pv *[numViews]float64) {
	best := 0
	for i := 1; i < numPredictors; i++ {
		if d.pred[i].err < d.pred[best].err {
			best = i
		}
	}
	fc := d.pred[best].level
	if best >= numPredictors/2 {
		fc += s
	}
	scale := d.pred[best].err
	if warm {
		res.Expected, res.Scale = fc, scale
		v := math.Abs(x-fc) / max(scale, 1e-12*(1+math.Abs(fc)))
		pv[ComponentResidual-1] = d.calib[0].p(v)
		if !frozen {
			d.calib[0].add(v)
		}
	}
}

// scoreVolatility scores the fast against the slow mean absolute change (a spike moves the
// fast one little) and learns both.
func (d *Online) scoreVolatility(x float64, warm, frozen bool, pv *[numViews]float64) {
	if !d.haveLast || frozen {
		return
	}
	ch := math.Abs(x - d.last)
	if d.n == 1 {
		d.volFast, d.volSlow = ch, ch
	}
	fch := ch
	if d.volSlow > 0 {
		fch = min(ch, 6*d.volSlow)
	}
	d.volFast += volFastRate * (fch - d.volFast)
	d.volSlow += max(volSlowRate, 1/float64(d.n)) * (ch - d.volSlow)
	if warm {
		eps := 0.05*d.volSlow + 1e-12*(1+math.Abs(x))
		v := math.Abs(math.Log((d.volFast + eps) / (d.volSlow + eps)))
		pv[ComponentVolatility-1] = d.calib[1].p(v)
		d.calib[1].add(v)
	}
}

// scoreLevel scores the medium against the long-term mean of the deseasonalised value and
// learns both; after an unlikely shift the new level becomes the norm.
func (d *Online) scoreLevel(t int64, x, s float64, warm bool, pv *[numViews]float64) {
	y := x
	if d.seasonReady(t) {
		y = x - s
	}
	d.mid += levelMidRate * (y - d.mid)
	longRate := max(levelLongRate, 1/float64(d.n+1))
	dev := y - d.long
	d.long += longRate * dev
	d.longVar += longRate * (dev*dev - d.longVar)
	if warm {
		v := math.Abs(d.mid-d.long) / math.Sqrt(max(d.longVar, 1e-24*(1+d.long*d.long)))
		p := d.calib[2].p(v)
		pv[ComponentLevel-1] = p
		d.calib[2].add(v)
		if p*numViews < levelReset {
			d.long = d.mid // the new level is the norm from now on
		}
	}
}

// learnPredictors moves each predictor of the bank towards x (deseasonalised by s for the
// seasonal half), clipping outliers and jumping to x after shiftRun on one side.
func (d *Online) learnPredictors(x, s float64) {
	for i := range d.pred {
		p := &d.pred[i]
		yy := x
		if i >= numPredictors/2 {
			yy = x - s
		}
		r := yy - p.level
		if d.n == 1 {
			p.err = math.Abs(r)
		}
		lim := levelClip*p.err + 1e-9*(1+math.Abs(p.level))
		if math.Abs(r) > lim {
			sg := math.Copysign(1, r)
			if p.over > 0 && sg == p.sign {
				p.over++
			} else {
				p.over, p.sign = 1, sg
			}
		} else {
			p.over = 0
		}
		if a := predictorAlpha[i%(numPredictors/2)]; a == 1 || p.over >= shiftRun {
			p.level = yy
			p.over = 0
		} else {
			p.level += a * max(-lim, min(lim, r))
		}
		if d.n > 1 {
			p.err += errRate * (min(math.Abs(r), 2*lim) - p.err)
		}
	}
}

// learnSeason learns the day's level and the daily profile's bin at t from x (s is the bin's
// value before).
func (d *Online) learnSeason(t int64, x, s float64, bin int) {
	d.dayLevel += d.dayRate * (x - s - d.dayLevel)
	// A bin learns the mean of its first day, then moves a third of the way to each new
	// day's (a running mean over its first three days).
	days := float64((t - d.seasonT0) / int64(day))
	g := min(1, 1/(d.perBin*min(1+days, 3)))
	d.season[bin] += g * (x - d.dayLevel - s)
}

// finish combines the views' tail probabilities into the score.
func (d *Online) finish(res OnlineResult, pv [numViews]float64, warm bool) OnlineResult {
	if !warm {
		return res
	}
	k := 0
	for i := 1; i < numViews; i++ {
		if pv[i] < pv[k] {
			k = i
		}
	}
	p := min(1, pv[k]*numViews)
	res.P = p
	res.Component = Component(k + 1)
	s := -math.Log10(max(p, 1e-300))
	res.Score = max(0, s/(s+OnlineSurprise)) // not -0 for p = 1
	res.Anomaly = res.Score >= 0.5
	return res
}
