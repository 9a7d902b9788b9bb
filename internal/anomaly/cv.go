package anomaly

import (
	"fmt"
	"math"
)

// DefaultWindowTolerance is Graphite's stdev windowTolerance: the share of non-missing points a
// window needs before it yields a value.
const DefaultWindowTolerance = 0.1

// CVOptions configure the coefficient of variation over a sliding window.
type CVOptions struct {
	// Window is the number of points in the window, the current one included (Graphite's stdev
	// points argument).
	Window int
	// WindowTolerance in [0, 1] is the least share of non-missing points in a window
	// (Graphite's windowTolerance; default 0.1 when zero, use a tiny value for "any").
	WindowTolerance float64
	// Threshold flags a point whose cv exceeds it; it is also where the score crosses 0.5.
	Threshold float64
}

func (o CVOptions) withDefaults() (CVOptions, error) {
	if o.WindowTolerance == 0 {
		o.WindowTolerance = DefaultWindowTolerance
	}
	if o.Window < 1 {
		return o, fmt.Errorf("%w: cv window must be at least 1 point, got %d", ErrInvalidParam, o.Window)
	}
	if !(o.WindowTolerance >= 0 && o.WindowTolerance <= 1) {
		return o, fmt.Errorf("%w: window_tolerance must be in [0, 1], got %g", ErrInvalidParam, o.WindowTolerance)
	}
	if !(o.Threshold > 0) || math.IsInf(o.Threshold, 0) {
		return o, fmt.Errorf("%w: cv threshold must be positive, got %g", ErrInvalidParam, o.Threshold)
	}
	return o, nil
}

// MovingCV is the sliding-window coefficient of variation, one point at a time, in O(1) time
// and O(window) memory, with exactly Graphite's stdev arithmetic: running sums of the values
// and their squares over the last Window points, population deviation
// sqrt(n·Σx² - (Σx)²)/n over the n non-missing points, and no value unless
// n/Window >= WindowTolerance. The mean is Σx/n over the same window. It is not safe for
// concurrent use.
type MovingCV struct {
	o          CVOptions
	ring       []float64 // the last Window points, NaN for missing
	i          int
	valid      int
	sum, sumSq float64
}

// NewMovingCV returns an empty window.
func NewMovingCV(opts CVOptions) (*MovingCV, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &MovingCV{o: o, ring: make([]float64, o.Window)}, nil
}

// Step adds the next point (NaN for missing) and returns the window's population standard
// deviation, mean and cv = stdev/mean; each is NaN when Graphite would give None (too few
// points, a negative variance from rounding, or a zero mean for cv).
func (m *MovingCV) Step(v float64) (stdev, mean, cv float64) {
	W := m.o.Window
	slot := m.i % W
	if m.i >= W {
		if old := m.ring[slot]; !math.IsNaN(old) {
			m.valid--
			m.sum -= old
			m.sumSq -= old * old
		}
	}
	m.ring[slot] = v
	m.i++
	if !math.IsNaN(v) {
		m.valid++
		m.sum += v
		m.sumSq += v * v
	}
	stdev, mean, cv = math.NaN(), math.NaN(), math.NaN()
	if m.valid > 0 && float64(m.valid)/float64(W) >= m.o.WindowTolerance {
		n := float64(m.valid)
		if q := n*m.sumSq - m.sum*m.sum; q >= 0 {
			stdev = math.Sqrt(q) / n
		}
		mean = m.sum / n
		if mean != 0 {
			cv = stdev / mean
		}
	}
	return stdev, mean, cv
}

// CVScore maps a cv to the common 0..1 score: r = |cv|/threshold, score = r/(1+r), so the
// threshold scores 0.5. NaN when cv is missing.
func CVScore(cv, threshold float64) float64 {
	if math.IsNaN(cv) {
		return math.NaN()
	}
	return ratioScore(math.Abs(cv), threshold)
}

// CoefficientOfVariation computes cv for every point of values (NaN = missing) into dst.
func CoefficientOfVariation(values []float64, opts CVOptions, dst []float64) ([]float64, error) {
	m, err := NewMovingCV(opts)
	if err != nil {
		return dst, err
	}
	dst = growTo(dst, len(values))
	for i, v := range values {
		_, _, dst[i] = m.Step(v)
	}
	return dst, nil
}

// TimeShiftChange is the relative change of x against the value shift earlier,
// |x - shifted| / |x|; NaN when either is missing or x is 0 (Graphite's divideSeries gives None
// for a zero divisor).
func TimeShiftChange(x, shifted float64) float64 {
	if math.IsNaN(x) || math.IsNaN(shifted) || x == 0 {
		return math.NaN()
	}
	return math.Abs(x-shifted) / math.Abs(x)
}

// TimeShiftScore maps a change to the common 0..1 score: r = change/threshold, score = r/(1+r).
func TimeShiftScore(change, threshold float64) float64 {
	if math.IsNaN(change) {
		return math.NaN()
	}
	return ratioScore(change, threshold)
}

// ShiftIndex returns, for each time t[i] (ascending, any unit), the index of the point whose time
// is nearest to t[i] - shift and within tolerance of it, or -1: the point timeShift would line up
// with t[i]. It runs in O(n) with two pointers.
func ShiftIndex(t []int64, shift, tolerance int64, dst []int) []int {
	if cap(dst) >= len(t) {
		dst = dst[:len(t)]
	} else {
		dst = make([]int, len(t))
	}
	j := 0
	for i, ti := range t {
		target := ti - shift
		for j+1 < len(t) && t[j+1] <= target {
			j++
		}
		best, bestD := -1, int64(math.MaxInt64)
		for k := j; k <= j+1 && k < len(t); k++ {
			d := t[k] - target
			if d < 0 {
				d = -d
			}
			if d <= tolerance && d < bestD {
				best, bestD = k, d
			}
		}
		dst[i] = best
	}
	return dst
}
