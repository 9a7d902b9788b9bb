package anomaly

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// onlineSeries is a test series: a daily cycle, a 48-point oscillation, AR(1) and white noise
// around 70 at the given step, rounded to 0.1 (noise deviation σ ≈ 2.24).
func onlineSeries(n int, step time.Duration, seed uint64) ([]int64, []float64) {
	r := rand.New(rand.NewPCG(seed, 99))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	times := make([]int64, n)
	values := make([]float64, n)
	ar := 0.0
	for i := range n {
		t := t0.Add(time.Duration(i) * step)
		times[i] = t.UnixNano()
		ar = 0.7*ar + 2*math.Sqrt(1-0.49)*r.NormFloat64()
		day := 2 * math.Pi * float64(t.Unix()%86400) / 86400
		v := 70 + 10*math.Sin(day) + 4*math.Sin(2*math.Pi*float64(i)/48) + ar + r.NormFloat64()
		values[i] = math.Round(v*10) / 10
	}
	return times, values
}

func runOnline(times []int64, values []float64) []OnlineResult {
	d := NewOnline(OnlineOptions{})
	out := make([]OnlineResult, len(values))
	for i := range values {
		out[i] = d.Step(times[i], values[i])
	}
	return out
}

func TestOnlineDetectsAnomalyTypes(t *testing.T) {
	const n, onset, span = 6000, 4000, 100
	const sigma = 2.24
	for _, c := range []struct {
		name   string
		inject func(v []float64)
		want   Component // the view expected to explain the first flag in the window
		within int       // rows from the onset in which a flag must come (default span)
		steps  []time.Duration
	}{
		{"spike", func(v []float64) { v[onset] += 8 * sigma }, ComponentResidual, 0, nil},
		{"dip", func(v []float64) { v[onset] -= 8 * sigma }, ComponentResidual, 0, nil},
		{"level shift", func(v []float64) {
			for i := onset; i < n; i++ {
				v[i] += 5 * sigma
			}
		}, ComponentResidual, 0, nil},
		{"variance", func(v []float64) {
			r := rand.New(rand.NewPCG(5, 5))
			for i := onset; i < onset+span; i++ {
				v[i] += 4 * sigma * r.NormFloat64()
			}
		}, 0, 0, nil},
		{"drift", func(v []float64) {
			for i := onset; i < n; i++ {
				v[i] += 10 * sigma * min(1, float64(i-onset)/span)
			}
		}, 0, 3 * span, []time.Duration{5 * time.Second, time.Hour}},
		// Drift is the weak spot: at 1 min the 4-day series has a daily profile still being
		// learned, and a 10σ drift stays within the level view's calibrated range (the
		// evaluation's drift row shows it).
		{"stuck", func(v []float64) {
			for i := onset; i < onset+span; i++ {
				v[i] = v[onset-1]
			}
		}, ComponentStuck, 0, nil},
		{"missing", func(v []float64) {
			for i := onset; i < onset+span; i++ {
				v[i] = math.NaN()
			}
		}, ComponentGap, 0, nil},
	} {
		steps := c.steps
		if steps == nil {
			steps = []time.Duration{5 * time.Second, time.Minute, time.Hour}
		}
		for _, step := range steps {
			t.Run(c.name+"/"+step.String(), func(t *testing.T) {
				times, values := onlineSeries(n, step, 1)
				c.inject(values)
				res := runOnline(times, values)
				within := span
				if c.within > 0 {
					within = c.within
				}
				first := -1
				for i := onset; i < onset+within && first < 0; i++ {
					if res[i].Anomaly {
						first = i
					}
				}
				if first < 0 {
					t.Fatalf("no anomaly flagged in rows %d..%d", onset, onset+within-1)
				}
				if c.want != 0 && res[first].Component != c.want {
					t.Errorf("first flag at row %d explained by %s, want %s", first, res[first].Component, c.want)
				}
				fp := 0
				for i := n / 10; i < onset; i++ {
					if res[i].Anomaly {
						fp++
					}
				}
				if fp > 4 {
					t.Errorf("%d false positives before the anomaly, want at most 4", fp)
				}
			})
		}
	}
}

func TestOnlineCleanSeriesFewFlags(t *testing.T) {
	for _, step := range []time.Duration{5 * time.Second, time.Minute, 15 * time.Minute, time.Hour} {
		times, values := onlineSeries(20000, step, 2)
		flagged := 0
		for _, r := range runOnline(times, values) {
			if r.Score < 0 || r.Score > 1 || math.IsNaN(r.Score) {
				t.Fatalf("step %v: score %g outside 0..1", step, r.Score)
			}
			if r.Anomaly {
				flagged++
			}
		}
		if rate := float64(flagged) / 20000; rate > 0.002 {
			t.Errorf("step %v: %d of 20000 clean points flagged (%.2f%%), want at most 0.2%%", step, flagged, 100*rate)
		}
	}
}

func TestOnlineDeterministicAndPastOnly(t *testing.T) {
	times, values := onlineSeries(5000, time.Minute, 3)
	a := runOnline(times, values)
	b := runOnline(times, values)
	for i := range a {
		if a[i] != b[i] && !(math.IsNaN(a[i].Expected) && math.IsNaN(b[i].Expected)) {
			t.Fatalf("row %d: %+v then %+v", i, a[i], b[i])
		}
	}
	// Changing the future does not change the past's scores.
	changed := append([]float64(nil), values...)
	for i := 2500; i < len(changed); i++ {
		changed[i] += 100
	}
	c := runOnline(times, changed)
	for i := range 2500 {
		if a[i].Score != c[i].Score {
			t.Fatalf("row %d scored %g, %g after later rows changed", i, a[i].Score, c[i].Score)
		}
	}
	if c[2500].Score <= a[2500].Score {
		t.Errorf("row 2500 (+100) scored %g, not above %g", c[2500].Score, a[2500].Score)
	}
}

func TestOnlineWarmup(t *testing.T) {
	times, values := onlineSeries(200, time.Minute, 4)
	values[3], values[10] = math.NaN(), 1e6 // a missing point and a wild one inside the warm-up
	res := runOnline(times, values)
	present := 0
	for i, r := range res {
		warming := present < OnlineWarmup
		if !math.IsNaN(values[i]) {
			present++
		}
		if warming {
			if r.Score != 0 || r.Anomaly || r.Component != ComponentNone || !math.IsNaN(r.Expected) || r.P != 1 {
				t.Fatalf("row %d in the warm-up: %+v", i, r)
			}
			continue
		}
		if r.Component == ComponentNone || math.IsNaN(r.Expected) {
			t.Fatalf("row %d after the warm-up: %+v", i, r)
		}
	}
}

func TestOnlineGapsAndMissingValues(t *testing.T) {
	times, values := onlineSeries(3000, time.Minute, 5)
	// Absent rows: drop 60 rows; the first row after them is flagged as a gap.
	gapT := append(append([]int64(nil), times[:2000]...), times[2060:]...)
	gapV := append(append([]float64(nil), values[:2000]...), values[2060:]...)
	res := runOnline(gapT, gapV)
	if r := res[2000]; !r.Anomaly || r.Component != ComponentGap {
		t.Errorf("first row after 60 absent rows: %+v, want a gap anomaly", r)
	}
	// Scattered single missing values are not anomalies, and never make a NaN score.
	r := rand.New(rand.NewPCG(6, 6))
	sparse := append([]float64(nil), values...)
	for i := 100; i < len(sparse); i += 40 + r.IntN(40) {
		sparse[i] = math.NaN()
	}
	for i, res := range runOnline(times, sparse) {
		if math.IsNaN(res.Score) || math.IsNaN(res.P) {
			t.Fatalf("row %d: NaN in %+v", i, res)
		}
		if math.IsNaN(sparse[i]) && res.Anomaly && i > 500 {
			t.Errorf("row %d: a single missing value flagged: %+v", i, res)
		}
	}
}

func TestOnlineInfersStep(t *testing.T) {
	for _, step := range []time.Duration{time.Second, 5 * time.Second, 15 * time.Minute, 24 * time.Hour} {
		times, values := onlineSeries(40, step, 7)
		d := NewOnline(OnlineOptions{})
		for i := range values {
			d.Step(times[i], values[i])
		}
		if time.Duration(d.step) != step {
			t.Errorf("inferred step %v, want %v", time.Duration(d.step), step)
		}
		if (d.season != nil) != (step <= 6*time.Hour) {
			t.Errorf("step %v: daily profile %v", step, d.season != nil)
		}
	}
}

func TestOnlineConstantSeries(t *testing.T) {
	// A constant series then a change: the change is flagged, nothing is NaN.
	times, _ := onlineSeries(1000, time.Minute, 8)
	values := make([]float64, 1000)
	for i := range values {
		values[i] = 5
		if i >= 800 {
			values[i] = 6
		}
	}
	res := runOnline(times, values)
	for i, r := range res {
		if math.IsNaN(r.Score) {
			t.Fatalf("row %d: NaN score", i)
		}
	}
	if !res[800].Anomaly {
		t.Errorf("change of a constant series not flagged: %+v", res[800])
	}
}

func TestOnlineStreamingDetector(t *testing.T) {
	ds, errs := compileYAML(t, `detectors:
  - {kind: heart_rate, value: bpm, method: online}
  - {kind: heart_rate, value: bpm, method: online, name: hr-online-5s, params: {step: 5s}}
  - {kind: heart_rate, value: bpm, method: online, name: bad, params: {seasonality: 1d}}
`)
	// The file is refused for the one error; the key in error is left out of what was read.
	if len(errs) != 1 || len(ds) != 3 || !strings.Contains(errs[0].Error(), "detectors[2].params.seasonality") {
		t.Fatalf("compiled %d detectors, errors %v; want one error (online takes no seasonality)", len(ds), errs)
	}
	ds = ds[:2]
	if ds[0].Name != "online-heart_rate-bpm" || ds[0].BaselineBytes() < OnlineStateBytes {
		t.Errorf("detector %q, baseline %d bytes", ds[0].Name, ds[0].BaselineBytes())
	}
	times, values := onlineSeries(3000, time.Minute, 9)
	values[2500] += 30
	for _, d := range ds {
		det, err := d.New()
		if err != nil {
			t.Fatal(err)
		}
		flagged := -1
		for i := range values {
			score, anomaly := det.Observe(time.Unix(0, times[i]), values[i:i+1])
			if score < 0 || score > 1 {
				t.Fatalf("%s row %d: score %g", d.Name, i, score)
			}
			if anomaly && d.Flag(score, anomaly) && i >= 2400 && flagged < 0 {
				flagged = i
			}
		}
		if flagged != 2500 {
			t.Errorf("%s: first flag after row 2400 at %d, want 2500", d.Name, flagged)
		}
	}
}

func TestOnlineStateBytes(t *testing.T) {
	if size := int(unsafe.Sizeof(Online{})) + maxSeasonBins*8; size > OnlineStateBytes {
		t.Errorf("an Online detector takes %d bytes, OnlineStateBytes says %d", size, OnlineStateBytes)
	}
}

func TestOnlineBefore1970(t *testing.T) {
	// Times before the epoch are negative: gaps are found as after it.
	times, values := onlineSeries(300, time.Minute, 10)
	shift := times[299] - times[0] + int64(time.Hour)
	var gapT []int64
	var gapV []float64
	for i := range times {
		if i >= 200 && i < 260 {
			continue
		}
		gapT = append(gapT, times[i]-shift-times[0])
		gapV = append(gapV, values[i])
	}
	res := runOnline(gapT, gapV)
	if r := res[200]; !r.Anomaly || r.Component != ComponentGap {
		t.Errorf("first row after 60 absent rows before 1970: %+v, want a gap anomaly", r)
	}
}
