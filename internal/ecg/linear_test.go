package ecg

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// linearData makes n feature rows where the class is set by two patient-relative features
// (pre/normal low: S; QRS correlation low: V; otherwise N), with noise on every feature, and
// a quadratic class (F: pre/normal far from 1 on either side) that only the squared inputs
// can separate.
func linearData(n int, seed uint64) (x []float32, y []int) {
	rng := rand.New(rand.NewPCG(seed, 1))
	names := FeatureNames()
	idx := func(name string) int {
		for i, s := range names {
			if s == name {
				return i
			}
		}
		panic(name)
	}
	pre, corr := idx("pre/normal"), idx("corr_qrs")
	x = make([]float32, n*NumFeatures)
	y = make([]int, n)
	for i := 0; i < n; i++ {
		row := x[i*NumFeatures : (i+1)*NumFeatures]
		for j := range row {
			row[j] = float32(rng.NormFloat64())
		}
		c := i % 4
		row[pre], row[corr] = float32(1+0.03*rng.NormFloat64()), float32(0.97+0.02*rng.NormFloat64())
		switch c {
		case 1: // S: premature, usual shape
			row[pre] = float32(0.75 + 0.03*rng.NormFloat64())
		case 2: // V: unusual shape
			row[corr] = float32(0.4 + 0.1*rng.NormFloat64())
		case 3: // F: interval far from normal, either side
			d := 0.5 + 0.03*rng.NormFloat64()
			if rng.IntN(2) == 0 {
				d = -d
			}
			row[pre] = float32(1 + d)
		}
		y[i] = []int{int(ClassN), int(ClassS), int(ClassV), int(ClassF)}[c]
	}
	return x, y
}

func TestTrainLinear(t *testing.T) {
	x, y := linearData(2000, 1)
	weight := []float64{1, 1, 1, 1, 1}
	m, err := trainLinear(x, y, weight, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	xt, yt := linearData(1000, 2)
	var wrong [NumClasses]int
	for i := range yt {
		s := m.scores(xt[i*NumFeatures : (i+1)*NumFeatures])
		best := 0
		for c := range s {
			if s[c] > s[best] {
				best = c
			}
		}
		if best != yt[i] {
			wrong[yt[i]]++
		}
	}
	// Each class is 250 test rows; F needs the squared inputs (a linear score in pre/normal
	// cannot take both sides).
	for c, w := range wrong {
		if w > 10 {
			t.Errorf("class %s: %d of 250 test rows wrong (%v)", className(c), w, wrong)
		}
	}
	m2, err := trainLinear(x, y, weight, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if *m2 != *m {
		t.Error("two trainings on the same data differ")
	}
	if _, err := trainLinear(nil, nil, weight, 0.5); err == nil {
		t.Error("training on no beats: no error")
	}
}

// TestModelLinearFile trains a model with the linear model on synthetic beats, checks that
// its probabilities are the mean of the trees' and the linear model's, and that a written and
// read file gives the same predictions and bytes; corrupt linear blocks are rejected.
func TestModelLinearFile(t *testing.T) {
	beats := syntheticBeats(600)
	m, err := Train(context.Background(), beats, TrainOptions{Rounds: 5, Seed: 1, RROnly: true, Linear: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if m.lin == nil || m.Version != 5 {
		t.Fatalf("version %d, linear model %v", m.Version, m.lin != nil)
	}
	var f [NumFeatures]float32
	for i := range beats[:50] {
		b := &beats[i]
		got := m.ClassifyWindow(&b.Samples, b.RR)
		Features(f[:], &b.Samples, b.RR)
		tp := m.ens[0].predict(&f).Probs
		ls := m.lin.scores(f[:])
		var lp [NumClasses]float64
		softmax(lp[:], ls[:])
		if lp[ClassQ] != 0 {
			t.Fatalf("beat %d: the linear model gives Q probability %v", i, lp[ClassQ])
		}
		for c := range tp {
			if want := (tp[c] + lp[c]) / 2; math.Abs(got.Probs[c]-want) > 1e-12 {
				t.Fatalf("beat %d class %d: probability %v, want %v", i, c, got.Probs[c], want)
			}
		}
	}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	m2, err := ReadModel(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range beats {
		b := &beats[i]
		if p, q := m.ClassifyWindow(&b.Samples, b.RR), m2.ClassifyWindow(&b.Samples, b.RR); p != q {
			t.Fatalf("beat %d: %+v before writing, %+v after", i, p, q)
		}
	}
	var buf2 bytes.Buffer
	if _, err := m2.WriteTo(&buf2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
		t.Error("a model read and written again differs")
	}

	// Without the linear model, version 5 writes a zero flag and reads back without one.
	plain := *m2
	plain.lin = nil
	buf.Reset()
	if _, err := plain.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if m3, err := ReadModel(&buf); err != nil || m3.lin != nil {
		t.Fatalf("model without linear model: %v, linear %v", err, m3 != nil && m3.lin != nil)
	}
	// A version 4 model cannot hold one.
	old := *m2
	old.Version = 4
	if _, err := old.WriteTo(&buf); err == nil {
		t.Error("version 4 model with a linear model written")
	}

	for name, corrupt := range map[string]func(l *linearModel){
		"share 0":       func(l *linearModel) { l.Share = 0 },
		"share above 1": func(l *linearModel) { l.Share = 1.5 },
		"zero scale":    func(l *linearModel) { l.Scale[3] = 0 },
		"NaN weight":    func(l *linearModel) { l.W[2][5] = float32(math.NaN()) },
		"infinite mean": func(l *linearModel) { l.Mean[0] = float32(math.Inf(1)) },
	} {
		bad := *m2
		lin := *m2.lin
		corrupt(&lin)
		bad.lin = &lin
		buf.Reset()
		if _, err := bad.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadModel(&buf); !errors.Is(err, ErrModelFormat) {
			t.Errorf("%s: error %v, want ErrModelFormat", name, err)
		}
	}
	if _, err := Train(context.Background(), beats, TrainOptions{Rounds: 1, RROnly: true, Linear: 1.5}); err == nil {
		t.Error("linear share 1.5: no error")
	}
}
