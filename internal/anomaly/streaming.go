package anomaly

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Streaming is a detector fed one observation at a time, in time order. v holds the
// observation's values (one for the univariate methods; NaN for a missing value). Observe
// returns the 0..1 score of the observation (0 while the detector has too little history) and
// whether it is an anomaly. Implementations are not safe for concurrent calls of Observe.
type Streaming interface {
	Observe(t time.Time, v []float64) (score float64, anomaly bool)
}

// gapPoints is how many missing points lie between two observations dt apart on a grid of
// step, capped at limit (beyond which more missing points no longer change the state).
func gapPoints(dt, step time.Duration, limit int) int {
	if step <= 0 || dt <= step {
		return 0
	}
	k := int(math.Round(float64(dt)/float64(step))) - 1
	return min(max(k, 0), limit)
}

// StreamHoltWinters is Graphite's Holt-Winters on a live series of period step. A gap of k
// steps between observations counts as k-1 missing points, as in a Graphite series; after more
// than a season of missing points the state no longer changes, so at most SeasonLength+1 are
// replayed. O(1) per point, O(season) memory.
type StreamHoltWinters struct {
	hw      *HoltWinters
	step    time.Duration
	last    time.Time
	started bool
}

// NewStreamHoltWinters returns a streaming Holt-Winters with season length seasonality/step.
func NewStreamHoltWinters(seasonality, step time.Duration, opts HoltWintersOptions) (*StreamHoltWinters, error) {
	if step <= 0 {
		return nil, fmt.Errorf("%w: step must be positive", ErrInvalidParam)
	}
	opts.SeasonLength = int(seasonality / step)
	hw, err := NewHoltWinters(opts)
	if err != nil {
		return nil, err
	}
	return &StreamHoltWinters{hw: hw, step: step}, nil
}

// Observe implements Streaming: the score is HoltWintersScore, the flag a non-zero aberration.
func (s *StreamHoltWinters) Observe(t time.Time, v []float64) (float64, bool) {
	f, dev, _, _, ab := s.ObserveDetail(t, v[0])
	sc := HoltWintersScore(v[0], f, dev, s.hw.o.Delta)
	if math.IsNaN(sc) {
		sc = 0
	}
	return sc, ab != 0
}

// ObserveDetail feeds one value and returns Graphite's forecast, deviation, bands and
// aberration for it (NaN for None).
func (s *StreamHoltWinters) ObserveDetail(t time.Time, x float64) (forecast, deviation, lower, upper, aberr float64) {
	if s.started {
		for range gapPoints(t.Sub(s.last), s.step, s.hw.o.SeasonLength+1) {
			s.hw.Step(math.NaN())
		}
	}
	s.started, s.last = true, t
	f, dev := s.hw.Step(x)
	d := s.hw.o.Delta
	lo, up := f-d*dev, f+d*dev
	return f, dev, lo, up, aberration(x, lo, up)
}

// StreamCV is the sliding-window coefficient of variation on a live series of period step; gaps
// count as missing points like StreamHoltWinters. O(1) per point, O(window) memory.
type StreamCV struct {
	m       *MovingCV
	step    time.Duration
	last    time.Time
	started bool
}

// NewStreamCV returns a streaming cv detector.
func NewStreamCV(step time.Duration, opts CVOptions) (*StreamCV, error) {
	m, err := NewMovingCV(opts)
	if err != nil {
		return nil, err
	}
	return &StreamCV{m: m, step: step}, nil
}

// Observe implements Streaming: the score is CVScore, the flag cv > threshold.
func (s *StreamCV) Observe(t time.Time, v []float64) (float64, bool) {
	if s.started {
		for range gapPoints(t.Sub(s.last), s.step, s.m.o.Window) {
			s.m.Step(math.NaN())
		}
	}
	s.started, s.last = true, t
	_, _, cv := s.m.Step(v[0])
	if math.IsNaN(cv) {
		return 0, false
	}
	return CVScore(cv, s.m.o.Threshold), math.Abs(cv) > s.m.o.Threshold
}

// StreamTimeShift compares each observation with the one shift earlier. Time is cut into
// buckets of step; a ring of shift/step+1 buckets remembers the last value of each, so memory is
// bounded by shift/step (7d at 1 min: about 160 KiB) and each point costs O(1).
type StreamTimeShift struct {
	step      int64
	lag       int64 // shift in buckets
	threshold float64
	bucket    []int64
	value     []float64
}

// NewStreamTimeShift returns a streaming timeshift detector.
func NewStreamTimeShift(shift, step time.Duration, threshold float64) (*StreamTimeShift, error) {
	if step <= 0 || shift < step {
		return nil, fmt.Errorf("%w: timeshift needs step > 0 and shift >= step, got step %v shift %v", ErrInvalidParam, step, shift)
	}
	if !(threshold > 0) {
		return nil, fmt.Errorf("%w: threshold must be positive, got %g", ErrInvalidParam, threshold)
	}
	lag := int64(shift / step)
	n := lag + 1
	s := &StreamTimeShift{step: int64(step), lag: lag, threshold: threshold,
		bucket: make([]int64, n), value: make([]float64, n)}
	for i := range s.bucket {
		s.bucket[i] = math.MinInt64
	}
	return s, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

// Observe implements Streaming: the score is TimeShiftScore, the flag change > threshold.
func (s *StreamTimeShift) Observe(t time.Time, v []float64) (float64, bool) {
	b := floorDiv(t.UnixNano(), s.step)
	n := int64(len(s.bucket))
	shifted := math.NaN()
	if old := floorMod(b-s.lag, n); s.bucket[old] == b-s.lag {
		shifted = s.value[old]
	}
	slot := floorMod(b, n)
	s.bucket[slot], s.value[slot] = b, v[0]
	c := TimeShiftChange(v[0], shifted)
	if math.IsNaN(c) {
		return 0, false
	}
	return TimeShiftScore(c, s.threshold), c > s.threshold
}

// StreamIForestOptions configure StreamIForest.
type StreamIForestOptions struct {
	Forest IForestOptions // Workers defaults to 1 here, to keep refits in the background light
	// Window is how many recent observations a refit trains on (default 4096).
	Window int
	// RefitEvery observations a refit is started, unless one is still running (default Window/4).
	RefitEvery int
	// MinFit is the number of observations before the first fit (default min(256, Window)).
	MinFit int
}

// StreamIForest scores observations with an Isolation Forest refitted in the background on a
// rolling window of recent observations. Observe is O(trees·depth) and never waits for a fit;
// the fitting goroutine is owned by the detector and stopped by Close. Until the first fit
// completes, Observe returns (0, false). The score is scikit-learn's anomaly score
// -score_samples in (0, 1]; the flag is decision_function < 0 against the current forest's
// offset.
type StreamIForest struct {
	o      StreamIForestOptions
	d      int
	ring   []float64              // Window·d values, oldest overwritten
	count  int                    // observations so far
	since  int                    // observations since the last refit request
	fitted atomic.Pointer[fitted] // the forest scoring, with the window it was fitted on
	busy   atomic.Bool            // a refit is requested or running
	req    chan []float64
	stop   chan struct{}
	errs   atomic.Pointer[error]
	wg     sync.WaitGroup
	once   sync.Once
}

// NewStreamIForest starts a streaming Isolation Forest over d-dimensional observations.
func NewStreamIForest(d int, opts StreamIForestOptions) (*StreamIForest, error) {
	if d < 1 {
		return nil, fmt.Errorf("%w: need at least one feature", ErrInvalidParam)
	}
	if opts.Window == 0 {
		opts.Window = 4096
	}
	if opts.RefitEvery == 0 {
		opts.RefitEvery = max(1, opts.Window/4)
	}
	if opts.MinFit == 0 {
		opts.MinFit = min(256, opts.Window)
	}
	if opts.Forest.Workers == 0 {
		opts.Forest.Workers = 1
	}
	if opts.Window < 2 || opts.RefitEvery < 1 || opts.MinFit < 2 || opts.MinFit > opts.Window {
		return nil, fmt.Errorf("%w: need window >= 2, refit_every >= 1 and 2 <= min_fit <= window", ErrInvalidParam)
	}
	if _, err := NewIsolationForest(opts.Forest); err != nil {
		return nil, err
	}
	s := &StreamIForest{o: opts, d: d, ring: make([]float64, opts.Window*d),
		req: make(chan []float64, 1), stop: make(chan struct{})}
	s.wg.Add(1)
	go s.refitLoop()
	return s, nil
}

func (s *StreamIForest) refitLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case X := <-s.req:
			f, err := NewIsolationForest(s.o.Forest)
			if err == nil {
				err = f.Fit(X, s.d)
			}
			if err != nil {
				err = fmt.Errorf("refitting isolation forest: %w", err)
				s.errs.Store(&err)
			} else {
				s.fitted.Store(&fitted{forest: f, X: X})
			}
			s.busy.Store(false) // after the store: a caller seeing !busy sees the new forest
		}
	}
}

// Observe implements Streaming. Observations with a missing or non-finite value are scored 0
// and not kept for training.
func (s *StreamIForest) Observe(_ time.Time, v []float64) (float64, bool) {
	for _, x := range v[:s.d] {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, false
		}
	}
	copy(s.ring[(s.count%s.o.Window)*s.d:], v[:s.d])
	s.count++
	s.since++
	if s.count >= s.o.MinFit && (s.since >= s.o.RefitEvery || s.fitted.Load() == nil) && !s.busy.Load() {
		// The snapshot costs O(window) once per RefitEvery observations: amortized O(1).
		n := min(s.count, s.o.Window)
		snap := make([]float64, n*s.d)
		copy(snap, s.ring[:n*s.d])
		s.busy.Store(true)
		s.req <- snap // never blocks: only one request is in flight
		s.since = 0
	}
	fit := s.fitted.Load()
	if fit == nil {
		return 0, false
	}
	f := fit.forest
	sc := f.ScoreOne(v[:s.d])
	return -sc, sc-f.Offset() < 0
}

// Err returns the last refit error, if any.
func (s *StreamIForest) Err() error {
	if p := s.errs.Load(); p != nil {
		return *p
	}
	return nil
}

// Ready reports whether a forest has been fitted.
func (s *StreamIForest) Ready() bool { return s.fitted.Load() != nil }

// fitted is a fitted forest and the training window it was fitted on: with the forest's seed,
// the window is enough to rebuild the same forest (a saved state holds the window, not the
// trees).
type fitted struct {
	forest *IsolationForest
	X      []float64
}

// Close stops the refit goroutine and waits for it. Observe must not be called during or after
// Close.
func (s *StreamIForest) Close() error {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
	return nil
}
