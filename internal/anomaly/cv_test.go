package anomaly

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestCoefficientOfVariationHandComputed(t *testing.T) {
	// Window 3, tolerance 0.5: a window needs 2 of its 3 points.
	values := []float64{1, 2, 3, nan, 5}
	want := []float64{
		nan,                  // 1 point of 3
		0.5 / 1.5,            // {1,2}: sqrt(2·5-9)/2 = 0.5, mean 1.5
		math.Sqrt(6) / 3 / 2, // {1,2,3}: sqrt(3·14-36)/3, mean 2
		0.5 / 2.5,            // {2,3,-}: sqrt(2·13-25)/2, mean 2.5
		1.0 / 4,              // {3,-,5}: sqrt(2·34-64)/2, mean 4
	}
	got, err := CoefficientOfVariation(values, CVOptions{Window: 3, WindowTolerance: 0.5, Threshold: 0.2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !near(got[i], want[i], 1e-15) {
			t.Errorf("cv[%d] = %.16g, want %.16g", i, got[i], want[i])
		}
	}
	// Default tolerance 0.1 accepts a single point of a window of 3: stdev 0, cv 0.
	got, _ = CoefficientOfVariation([]float64{4, nan, nan, nan, nan}, CVOptions{Window: 3, Threshold: 1}, nil)
	if got[0] != 0 || !math.IsNaN(got[3]) {
		t.Errorf("tolerance 0.1: %v", got)
	}
	// A zero mean has no cv (Graphite's divideSeries gives None).
	got, _ = CoefficientOfVariation([]float64{-1, 1}, CVOptions{Window: 2, Threshold: 1}, nil)
	if !math.IsNaN(got[1]) {
		t.Errorf("zero mean: cv %g, want NaN", got[1])
	}
	if s := CVScore(0.3, 0.15); !near(s, 2.0/3, 1e-15) {
		t.Errorf("CVScore(0.3, 0.15) = %g", s)
	}
}

func TestTimeShiftHandComputed(t *testing.T) {
	for _, c := range []struct{ x, shifted, want float64 }{
		{100, 80, 0.2}, {80, 100, 0.25}, {-50, -40, 0.2}, {0, 5, nan}, {nan, 5, nan}, {5, nan, nan},
	} {
		if got := TimeShiftChange(c.x, c.shifted); !near(got, c.want, 1e-15) {
			t.Errorf("TimeShiftChange(%g, %g) = %g, want %g", c.x, c.shifted, got, c.want)
		}
	}
	// Irregular times (seconds): shift 10, tolerance 2.
	times := []int64{0, 5, 9, 13, 19, 24, 30}
	// 9-10 = -1 is 1 from t=0; 13-10 = 3 is nearer 5 than 0; 19-10 = 9; 24-10 = 14 → 13; 30-10 = 20 → 19.
	want := []int{-1, -1, 0, 1, 2, 3, 4}
	got := ShiftIndex(times, 10, 2, nil)
	if !slices.Equal(got, want) {
		t.Errorf("ShiftIndex = %v, want %v", got, want)
	}
}

func TestStreamingMatchesBatch(t *testing.T) {
	const step = time.Minute
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	values := gappySeries(3000, 60, 4, false)
	for math.IsNaN(values[0]) {
		values = values[1:] // a stream starts at its first observation
	}
	// The stream never sees missing points: it infers them from the gaps in time.
	var res HoltWintersResult
	if err := HoltWintersAnalysis(values, HoltWintersOptions{SeasonLength: 60}, &res); err != nil {
		t.Fatal(err)
	}
	cvs, _ := CoefficientOfVariation(values, CVOptions{Window: 30, Threshold: 0.1}, nil)
	hw, err := NewStreamHoltWinters(time.Hour, step, HoltWintersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scv, _ := NewStreamCV(step, CVOptions{Window: 30, Threshold: 0.1})
	sts, _ := NewStreamTimeShift(time.Hour, step, 0.3)
	for i, v := range values {
		if math.IsNaN(v) {
			continue
		}
		ts := t0.Add(time.Duration(i) * step)
		f, _, lo, up, ab := hw.ObserveDetail(ts, v)
		if !near(f, res.Forecast[i], 1e-12) || !near(lo, res.Lower[i], 1e-12) || !near(up, res.Upper[i], 1e-12) || !near(ab, res.Aberration[i], 1e-12) {
			t.Fatalf("point %d: stream forecast %g bands %g..%g ab %g, batch %g %g..%g %g", i, f, lo, up, ab, res.Forecast[i], res.Lower[i], res.Upper[i], res.Aberration[i])
		}
		sc, anom := scv.Observe(ts, []float64{v})
		if i >= 5 {
			wantScore := CVScore(cvs[i], 0.1)
			if math.IsNaN(wantScore) {
				wantScore = 0
			}
			if !near(sc, wantScore, 1e-9) || anom != (math.Abs(cvs[i]) > 0.1) {
				t.Fatalf("point %d: stream cv score %g, batch %g", i, sc, wantScore)
			}
		}
		sc, _ = sts.Observe(ts, []float64{v})
		want := 0.0
		if i >= 60 {
			if c := TimeShiftChange(v, values[i-60]); !math.IsNaN(c) {
				want = TimeShiftScore(c, 0.3)
			}
		}
		if !near(sc, want, 1e-15) {
			t.Fatalf("point %d: stream timeshift score %g, want %g", i, sc, want)
		}
	}
}

func TestStreamIForest(t *testing.T) {
	s, err := NewStreamIForest(1, StreamIForestOptions{Window: 512, RefitEvery: 128, Forest: IForestOptions{NEstimators: 50, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	values, _ := syntheticHR(4000, 8)
	t0 := time.Now()
	for i, v := range values[:600] {
		s.Observe(t0.Add(time.Duration(i)*time.Second), []float64{v})
	}
	deadline := time.Now().Add(10 * time.Second)
	for !s.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("no forest fitted within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	score, anomaly := s.Observe(t0, []float64{400})
	if !anomaly || score <= 0.5 || score > 1 {
		t.Errorf("heart rate 400: score %g anomaly %v, want a flagged score above 0.5", score, anomaly)
	}
	if score, _ := s.Observe(t0, []float64{nan}); score != 0 {
		t.Errorf("missing value scored %g", score)
	}
	for i, v := range values[600:] {
		s.Observe(t0.Add(time.Duration(600+i)*time.Second), []float64{v})
	}
	if err := s.Close(); err != nil || s.Err() != nil {
		t.Fatalf("close: %v, refit error: %v", err, s.Err())
	}
}
