package rules

import (
	"math"
	"sort"
	"time"
)

// maxPoints bounds the readings kept per subject, device and kind (oldest dropped first).
const maxPoints = 10000

type point struct {
	t time.Time
	v map[string]float64
}

// series is the recent readings of one subject, device and kind, in time order. now is the
// time of the reading being evaluated: windows end there.
type series struct {
	pts []point
	now time.Time
}

func (s *series) add(t time.Time, v map[string]float64, keep time.Duration) {
	i := sort.Search(len(s.pts), func(i int) bool { return s.pts[i].t.After(t) })
	if i > 0 && s.pts[i-1].t.Equal(t) {
		s.pts[i-1].v = v // a re-delivered reading replaces itself
	} else {
		s.pts = append(s.pts, point{})
		copy(s.pts[i+1:], s.pts[i:])
		s.pts[i] = point{t: t, v: v}
	}
	last := s.pts[len(s.pts)-1].t
	drop := sort.Search(len(s.pts), func(i int) bool { return last.Sub(s.pts[i].t) <= keep })
	drop = max(drop, len(s.pts)-maxPoints)
	if drop > 0 {
		s.pts = append(s.pts[:0], s.pts[drop:]...)
	}
}

// aggregate computes fn over the readings in (now-d, now] that have the value.
func (s *series) aggregate(fn, name string, d time.Duration) float64 {
	if s == nil {
		return math.NaN()
	}
	from := s.now.Add(-d)
	var (
		n             int
		sum           float64
		lo, hi        = math.Inf(1), math.Inf(-1)
		first, last   float64
		firstT, lastT time.Time
	)
	for i := len(s.pts) - 1; i >= 0; i-- {
		p := s.pts[i]
		if p.t.After(s.now) {
			continue
		}
		if !p.t.After(from) {
			break
		}
		v, ok := p.v[name]
		if !ok || math.IsNaN(v) {
			continue
		}
		if n == 0 {
			last, lastT = v, p.t
		}
		first, firstT = v, p.t
		n++
		sum += v
		lo, hi = min(lo, v), max(hi, v)
	}
	switch fn {
	case "count":
		return float64(n)
	}
	if n == 0 {
		return math.NaN()
	}
	switch fn {
	case "avg":
		return sum / float64(n)
	case "sum":
		return sum
	case "min":
		return lo
	case "max":
		return hi
	case "delta":
		return last - first
	case "rate":
		sec := lastT.Sub(firstT).Seconds()
		if sec <= 0 {
			return 0
		}
		return (last - first) / sec
	}
	return math.NaN()
}
