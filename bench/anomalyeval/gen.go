package main

import (
	"bufio"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Series is one labelled file of the evaluation.
type Series struct {
	Name    string // type/step/seed
	Group   string // the table row: an anomaly type, "heart rate" or "blood pressure"
	Step    time.Duration
	Times   []int64 // Unix ns
	Values  []float64
	Windows []Window
}

// The anomaly types of the generated series.
var anomalyTypes = []string{"spike", "dip", "level shift", "variance", "frequency", "drift", "stuck", "missing"}

// The sampling steps of the generated series.
var steps = []time.Duration{5 * time.Second, time.Minute, 15 * time.Minute, time.Hour}

const (
	genLength   = 4000 // points per generated series
	perFile     = 2    // anomalies per file
	fastPeriod  = 48   // points: the period of the fast oscillation (the frequency type changes it)
	noiseSD     = 2.0  // AR(1) part's stationary deviation
	whiteSD     = 1.0
	arCoef      = 0.7
	quantum     = 0.1 // values are rounded to this, as sensors report them
	windowShare = 0.1 // NAB: windows cover 10% of a file, shared by its anomalies
	firstOnset  = 0.2 // anomalies start after this share of the file (NAB probation is 15%)
	lastOnset   = 0.9
	t0          = 1_767_225_600 // 2026-01-01 UTC, seconds
)

// windowFor returns NAB's window around an onset: windowShare·n/k rows centred on it.
func windowFor(onset, n, k int) Window {
	w := int(windowShare * float64(n) / float64(k))
	first := max(0, onset-w/2)
	return Window{First: first, Last: min(n-1, first+w-1)}
}

// onsets draws k onsets in [firstOnset·n, lastOnset·n) whose windows do not overlap.
func onsets(r *rand.Rand, n, k int) []int {
	w := int(windowShare * float64(n) / float64(k))
	lo, hi := int(firstOnset*float64(n)), int(lastOnset*float64(n))
	for {
		o := make([]int, k)
		for i := range o {
			o[i] = lo + r.IntN(hi-lo)
		}
		slices.Sort(o)
		ok := true
		for i := 1; i < k; i++ {
			if o[i]-o[i-1] < 2*w {
				ok = false
			}
		}
		if ok {
			return o
		}
	}
}

// generate returns a series of the given anomaly type and step: a daily cycle (amplitude 10),
// a fast oscillation (period 48 points, amplitude 4), AR(1) noise (φ = 0.7, deviation 2) and
// white noise (deviation 1) around 70, rounded to 0.1, with two anomalies of the type. σ below
// is the noise deviation, √5 ≈ 2.24.
func generate(typ string, step time.Duration, seed uint64) Series {
	r := rand.New(rand.NewPCG(seed, uint64(step)^uint64(len(typ))<<32^hash(typ)))
	n := genLength
	s := Series{Name: fmt.Sprintf("%s/%s/%d", typ, step, seed), Group: typ, Step: step,
		Times: make([]int64, n), Values: make([]float64, n)}
	phase := r.Float64() * 2 * math.Pi
	fphase := r.Float64() * 2 * math.Pi
	sigma := math.Sqrt(noiseSD*noiseSD + whiteSD*whiteSD)
	ons := onsets(r, n, perFile)
	w := int(windowShare * float64(n) / float64(perFile))
	span := w / 2 // how long the lasting anomalies last (level shift and drift stay)
	for _, o := range ons {
		s.Windows = append(s.Windows, windowFor(o, n, perFile))
	}
	sh := injectAnomalies(r, typ, ons, n, span, sigma)
	ar := 0.0
	arSD := noiseSD * math.Sqrt(1-arCoef*arCoef)
	fast := fphase
	for i := range n {
		t := time.Unix(t0, 0).Add(time.Duration(i) * step)
		s.Times[i] = t.UnixNano()
		ar = arCoef*ar + arSD*r.NormFloat64()
		fast += 2 * math.Pi / sh.period[i]
		dayAngle := 2*math.Pi*float64(t.Unix()%86400)/86400 + phase
		noise := ar + whiteSD*r.NormFloat64()
		noise += sh.extraNoise[i] * sigma * r.NormFloat64()
		v := 70 + 10*math.Sin(dayAngle) + 4*math.Sin(fast) + noise + sh.offset[i]
		v = math.Round(v/quantum) * quantum
		switch {
		case sh.missing[i]:
			v = math.NaN()
		case sh.stuck[i]:
			v = s.Values[i-1]
		}
		s.Values[i] = v
	}
	return s
}

// anomalyShape is what the anomalies of a series change at each point.
type anomalyShape struct {
	period     []float64 // period of the fast oscillation, points
	extraNoise []float64 // added noise deviation, in units of σ
	offset     []float64 // added to the value
	missing    []bool    // the value is NaN
	stuck      []bool    // the value repeats the previous one
}

// injectAnomalies returns the changes of an anomaly of type typ at each onset in ons: single
// points (spike, dip), span points (variance, frequency, stuck, missing) or to the end
// (level shift, drift reaching its full size after span points).
func injectAnomalies(r *rand.Rand, typ string, ons []int, n, span int, sigma float64) anomalyShape {
	sh := anomalyShape{
		period:     make([]float64, n),
		extraNoise: make([]float64, n),
		offset:     make([]float64, n),
		missing:    make([]bool, n),
		stuck:      make([]bool, n),
	}
	for i := range sh.period {
		sh.period[i] = fastPeriod
	}
	for _, o := range ons {
		sign := 1.0
		if r.IntN(2) == 0 {
			sign = -1
		}
		switch typ {
		case "spike":
			sh.offset[o] += (6 + 3*r.Float64()) * sigma
		case "dip":
			sh.offset[o] -= (6 + 3*r.Float64()) * sigma
		case "level shift":
			m := sign * (3 + 2*r.Float64()) * sigma
			for i := o; i < n; i++ {
				sh.offset[i] += m
			}
		case "variance":
			for i := o; i < min(n, o+span); i++ {
				sh.extraNoise[i] = math.Sqrt(8) // with it the noise deviation is 3σ
			}
		case "frequency":
			for i := o; i < min(n, o+span); i++ {
				sh.period[i] = fastPeriod / 4
			}
		case "drift":
			m := sign * (4 + 2*r.Float64()) * sigma
			for i := o; i < n; i++ {
				sh.offset[i] += m * min(1, float64(i-o)/float64(span))
			}
		case "stuck":
			for i := o; i < min(n, o+span); i++ {
				sh.stuck[i] = true
			}
		case "missing":
			for i := o; i < min(n, o+span); i++ {
				sh.missing[i] = true
			}
		}
	}
	return sh
}

func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := range len(s) {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// readColumn reads a time column and a value column of a CSV file (header first, fields
// without embedded commas), sorted by time, with one row per timestamp (the first).
func readColumn(path, timeCol, valueCol string) ([]int64, []float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	ti, vi := -1, -1
	type row struct {
		t int64
		v float64
	}
	var rows []row
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Split(sc.Text(), ",")
		for i := range fields {
			fields[i] = strings.Trim(fields[i], `"`)
		}
		if line == 1 {
			ti, vi = slices.Index(fields, timeCol), slices.Index(fields, valueCol)
			if ti < 0 || vi < 0 {
				return nil, nil, fmt.Errorf("%s: no column %q or %q", path, timeCol, valueCol)
			}
			continue
		}
		tm, err := time.Parse("2006-01-02 15:04:05", fields[ti])
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		v, err := strconv.ParseFloat(fields[vi], 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		rows = append(rows, row{tm.UnixNano(), v})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		switch {
		case a.t < b.t:
			return -1
		case a.t > b.t:
			return 1
		}
		return 0
	})
	var ts []int64
	var vs []float64
	for i, r := range rows {
		if i > 0 && r.t == rows[i-1].t {
			continue
		}
		ts = append(ts, r.t)
		vs = append(vs, r.v)
	}
	return ts, vs, nil
}

// The events injected into the real series.
var realTypes = []string{"spike", "dip", "level shift", "stuck", "missing"}

// inject puts k events of random types from types into a copy of a real series, of the sizes
// size draws, and returns it labelled.
func inject(name, group string, times []int64, values []float64, seed uint64, k int, types []string, size func(typ string, r *rand.Rand) float64) Series {
	r := rand.New(rand.NewPCG(seed, hash(name)))
	n := len(values)
	s := Series{Name: fmt.Sprintf("%s/%d", name, seed), Group: group, Times: times, Values: slices.Clone(values)}
	w := int(windowShare * float64(n) / float64(k))
	span := max(1, w/2)
	for _, o := range onsets(r, n, k) {
		s.Windows = append(s.Windows, windowFor(o, n, k))
		typ := types[r.IntN(len(types))]
		m := size(typ, r)
		switch typ {
		case "spike":
			s.Values[o] += m
		case "dip":
			s.Values[o] -= m
		case "level shift":
			if r.IntN(2) == 0 {
				m = -m
			}
			for i := o; i < n; i++ {
				s.Values[i] += m
			}
		case "stuck":
			for i := o; i < min(n, o+span); i++ {
				s.Values[i] = s.Values[o-1]
			}
		case "missing":
			for i := o; i < min(n, o+span); i++ {
				s.Values[i] = math.NaN()
			}
		}
	}
	return s
}
