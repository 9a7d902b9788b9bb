package anomaly

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestAveragePathLength(t *testing.T) {
	for _, c := range []struct {
		n    int
		want float64
	}{
		{0, 0}, {1, 0}, {2, 1},
		{3, 2*(math.Ln2+eulerGamma) - 4.0/3},              // 1.2073923575896231
		{256, 2*(math.Log(255)+eulerGamma) - 2*255.0/256}, // 10.244770920119918
	} {
		if got := averagePathLength(c.n); !near(got, c.want, 1e-15) {
			t.Errorf("c(%d) = %.16g, want %.16g", c.n, got, c.want)
		}
	}
	if got := averagePathLength(256); !near(got, 10.244770920119918, 1e-14) {
		t.Errorf("c(256) = %.16g", got)
	}
}

func TestPercentileLinear(t *testing.T) {
	xs := []float64{4, 1, 3, 2}
	for _, c := range []struct{ q, want float64 }{{0, 1}, {25, 1.75}, {50, 2.5}, {8, 1.24}, {100, 4}} {
		if got := percentile(xs, c.q); !near(got, c.want, 1e-15) {
			t.Errorf("percentile(%g) = %g, want %g", c.q, got, c.want)
		}
	}
	if !slices.Equal(xs, []float64{4, 1, 3, 2}) {
		t.Error("percentile modified its input")
	}
}

func TestIForestHandComputed(t *testing.T) {
	// Two training rows, max_samples 2: every tree is a root split into two one-row leaves at
	// depth 1, so h(x) = 1 + c(1) = 1 for any x, c(2) = 1, and score = -2^(-1) = -0.5.
	f, err := NewIsolationForest(IForestOptions{NEstimators: 10, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Fit([]float64{0, 1}, 1); err != nil {
		t.Fatal(err)
	}
	for _, x := range []float64{-100, 0, 0.5, 1, 100} {
		if got := f.ScoreOne([]float64{x}); got != -0.5 {
			t.Errorf("score(%g) = %g, want -0.5", x, got)
		}
	}
	// Constant data: the root cannot split, so h = c(10) for every point: score -0.5 again.
	X := slices.Repeat([]float64{5}, 10)
	if err := f.Fit(X, 1); err != nil {
		t.Fatal(err)
	}
	if got := f.ScoreSamples(X, nil); !near(got[0], -0.5, 1e-15) || !near(got[9], -0.5, 1e-15) {
		t.Errorf("constant data scores %v, want -0.5", got)
	}
	if f.Offset() != -0.5 {
		t.Errorf("offset with contamination auto = %g, want -0.5", f.Offset())
	}
}

func TestIForestIsolatesOutliers(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	const n, d = 1000, 2
	X := make([]float64, n*d)
	for i := range X {
		X[i] = r.NormFloat64()
	}
	outliers := []int{10, 500, 990}
	for _, i := range outliers {
		X[i*d], X[i*d+1] = 8+float64(i%3), -8
	}
	f, err := NewIsolationForest(IForestOptions{Contamination: 0.01, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.FitScoreSamples(X, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.MaxSamples() != 256 {
		t.Errorf("max_samples auto = %d, want 256", f.MaxSamples())
	}
	pred := f.Predict(X, nil)
	flagged := 0
	for i, p := range pred {
		if p == -1 {
			flagged++
		}
		if s[i] < -1 || s[i] >= 0 {
			t.Fatalf("score %g outside [-1, 0)", s[i])
		}
	}
	if flagged != 10 { // 1% of 1000: the rows at or below the 1st percentile
		t.Errorf("flagged %d rows at contamination 0.01, want 10", flagged)
	}
	for _, i := range outliers {
		if pred[i] != -1 {
			t.Errorf("outlier row %d not flagged (score %g, offset %g)", i, s[i], f.Offset())
		}
	}
	dec := f.DecisionFunction(X, nil)
	for i := range dec {
		if !near(dec[i], s[i]-f.Offset(), 1e-15) {
			t.Fatal("decision_function != score_samples - offset_")
		}
	}
}

func TestIForestDeterministicAcrossWorkers(t *testing.T) {
	X, _ := syntheticHR(20000, 5)
	var prev []float64
	for _, w := range []int{1, 3} {
		f, err := NewIsolationForest(IForestOptions{Seed: 7, Workers: w, MaxFeaturesFraction: 1, Bootstrap: w == 3})
		if err != nil {
			t.Fatal(err)
		}
		f.opts.Bootstrap = false
		s, err := f.FitScoreSamples(X, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range s {
			if one := f.ScoreOne(X[i : i+1]); one != s[i] {
				t.Fatalf("ScoreOne(row %d) = %g, ScoreSamples %g", i, one, s[i])
			}
		}
		if prev != nil && !slices.Equal(prev, s) {
			t.Fatal("scores depend on the number of workers")
		}
		prev = s
	}
}

func TestIForestOptions(t *testing.T) {
	X, _ := syntheticHR(3000, 6)
	X2 := make([]float64, 0, 2*len(X))
	for _, v := range X {
		X2 = append(X2, v, -v/2)
	}
	for _, o := range []IForestOptions{
		{MaxSamples: 100000}, // clipped to n
		{MaxSamplesFraction: 0.5},
		{MaxSamples: 64, Bootstrap: true},
		{MaxFeatures: 1},
		{MaxFeaturesFraction: 0.5, Contamination: 0.1},
	} {
		f, err := NewIsolationForest(o)
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		if err := f.Fit(X2, 2); err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		s := f.ScoreSamples(X2, nil)
		if len(s) != len(X) || math.IsNaN(s[0]) {
			t.Fatalf("%+v: bad scores", o)
		}
	}
	for _, o := range []IForestOptions{
		{NEstimators: -1}, {Contamination: 0.6}, {MaxSamplesFraction: 1.5}, {MaxSamples: 10, MaxSamplesFraction: 0.5},
	} {
		if _, err := NewIsolationForest(o); !errors.Is(err, ErrInvalidParam) {
			t.Errorf("%+v: err = %v, want ErrInvalidParam", o, err)
		}
	}
	f, _ := NewIsolationForest(IForestOptions{MaxFeatures: 3})
	if err := f.Fit(X2, 2); !errors.Is(err, ErrInvalidParam) {
		t.Errorf("max_features 3 of 2: err = %v", err)
	}
	if err := f.Fit([]float64{1, math.NaN()}, 1); !errors.Is(err, ErrInvalidParam) {
		t.Errorf("NaN input: err = %v", err)
	}
}

// TestIForestAUC checks the forest ranks injected anomalies well on the synthetic series used by
// the benchmarks (the parity run against scikit-learn lives in bench/anomaly).
func TestIForestAUC(t *testing.T) {
	X, labels := syntheticHR(50000, 11)
	f, _ := NewIsolationForest(IForestOptions{Contamination: 0.08, Seed: 1})
	s, err := f.FitScoreSamples(X, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	neg := make([]float64, len(s))
	for i := range s {
		neg[i] = -s[i]
	}
	if auc := rocAUC(neg, labels); auc < 0.9 {
		t.Errorf("AUC = %.3f, want >= 0.9", auc)
	}
}

// rocAUC is the Mann–Whitney form of the area under the ROC curve, ties counted half.
func rocAUC(score []float64, pos []bool) float64 {
	idx := make([]int, len(score))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case score[a] < score[b]:
			return -1
		case score[a] > score[b]:
			return 1
		}
		return 0
	})
	var rankSum float64
	var np, nn float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && score[idx[j]] == score[idx[i]] {
			j++
		}
		avg := float64(i+j+1) / 2
		for k := i; k < j; k++ {
			if pos[idx[k]] {
				rankSum += avg
				np++
			} else {
				nn++
			}
		}
		i = j
	}
	return (rankSum - np*(np+1)/2) / (np * nn)
}
