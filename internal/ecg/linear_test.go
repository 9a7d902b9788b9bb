package ecg

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"strings"
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

// TestModelLinearFile trains a model with the linear model on synthetic beats, the trees boosted
// from its log-probabilities, checks that its class scores are the combination of the trees'
// and the linear model's log-probabilities (version 6), that the trees did start from the linear
// model, that a written and read file gives the same predictions and bytes; corrupt linear
// blocks are rejected.
func TestModelLinearFile(t *testing.T) {
	beats := syntheticBeats(600)
	m, err := Train(context.Background(), beats, TrainOptions{Rounds: 5, Seed: 1, RROnly: true, Linear: 0.3, LinearBase: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if m.lin == nil || !m.lin.geometric || m.lin.Base != 0.5 || m.lin.Share != 0.3 || m.Version != ModelVersion {
		t.Fatalf("version %d, linear model %+v", m.Version, m.lin)
	}
	var f [NumFeatures]float32
	for i := range beats[:50] {
		b := &beats[i]
		got := m.ClassifyWindow(&b.Samples, b.RR)
		Features(f[:], &b.Samples, b.RR)
		s := m.ens[0].scores(&f)
		var lp [NumClasses]float64
		ls := m.lin.scores(f[:])
		softmax(lp[:], ls[:])
		if lp[ClassQ] != 0 {
			t.Fatalf("beat %d: the linear model gives Q probability %v", i, lp[ClassQ])
		}
		var z, want [NumClasses]float64
		a := float64(float32(0.3)) // the share as the file stores it
		for c := range z {
			l := math.Log(max(lp[c], linearFloor))
			z[c] = (1-a)*(s[c]+0.5*l) + a*l
		}
		softmax(want[:], z[:])
		for c := range want {
			if math.Abs(got.Probs[c]-want[c]) > 1e-12 {
				t.Fatalf("beat %d class %d: probability %v, want %v", i, c, got.Probs[c], want[c])
			}
		}
	}
	// The trees started from half the linear log-probabilities and the priors' other half: the
	// same trees trained from the priors alone differ.
	plainTrees, err := Train(context.Background(), beats, TrainOptions{Rounds: 5, Seed: 1, RROnly: true, Linear: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	if plainTrees.lin.Base != 0 || plainTrees.ens[0].Base == m.ens[0].Base {
		t.Errorf("base scores %v with the linear base, %v without", m.ens[0].Base, plainTrees.ens[0].Base)
	}
	for c := range m.ens[0].Base {
		if want := float32(0.5) * plainTrees.ens[0].Base[c]; math.Abs(float64(m.ens[0].Base[c]-want)) > 1e-6 {
			t.Errorf("class %d: base score %v, want half the log prior %v", c, m.ens[0].Base[c], want)
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

	// Without the linear model, version 6 writes a zero flag and reads back without one.
	plain := *m2
	plain.lin = nil
	buf.Reset()
	if _, err := plain.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if m3, err := ReadModel(&buf); err != nil || m3.lin != nil {
		t.Fatalf("model without linear model: %v, linear %v", err, m3 != nil && m3.lin != nil)
	}
	// A version 4 model cannot hold one, a version 5 model only one averaged with the trees,
	// and a version 6 model only one of the version 6 features.
	for _, v := range []int{4, 5, 6} {
		old := *m2
		old.Version, old.NumFeatures = v, numV4Features
		lin := *m2.lin
		lin.W[ClassV][numLinear-1] = 0.1 // a weight on a version 7 feature
		old.lin = &lin
		if _, err := old.WriteTo(&buf); err == nil {
			t.Errorf("version %d model with a version %d linear model written", v, ModelVersion)
		}
	}

	for name, corrupt := range map[string]func(l *linearModel){
		"share 0":        func(l *linearModel) { l.Share = 0 },
		"base above 1":   func(l *linearModel) { l.Base = 1.5 },
		"negative base":  func(l *linearModel) { l.Base = -0.5 },
		"share above 1":  func(l *linearModel) { l.Share = 1.5 },
		"zero scale":     func(l *linearModel) { l.Scale[3] = 0 },
		"NaN weight":     func(l *linearModel) { l.W[2][5] = float32(math.NaN()) },
		"infinite mean":  func(l *linearModel) { l.Mean[0] = float32(math.Inf(1)) },
		"gate below 0.5": func(l *linearModel) { l.Gate = 0.3 },
		"gate 1":         func(l *linearModel) { l.Gate = 1 },
		"runs, no gate":  func(l *linearModel) { l.Gate, l.GateScope = 0, gateRuns },
		"unknown scope":  func(l *linearModel) { l.Gate, l.GateScope = 0.5, gateRunsOnsets+1 },
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
	if _, err := Train(context.Background(), beats, TrainOptions{Rounds: 1, RROnly: true, LinearBase: 0.5}); err == nil {
		t.Error("linear base without a linear model: no error")
	}
	for _, o := range []TrainOptions{{Linear: 0.3, SGate: 0.4}, {Linear: 0.3, SGate: 1}, {SGate: 0.5}, {Linear: 0.3, SGateRuns: true}} {
		o.Rounds, o.RROnly = 1, true
		if _, err := Train(context.Background(), beats, o); err == nil {
			t.Errorf("supraventricular gate %v (runs %v), linear share %v: no error", o.SGate, o.SGateRuns, o.Linear)
		}
	}

	// With the linear model the decision rule is tuned on the combined scores, where the trees'
	// weigh 1 − share: the stored offsets times that weight lie on the tuning grid.
	for i := range beats {
		beats[i].Record = []string{"a", "b", "c"}[i%3]
	}
	tuned, err := Train(context.Background(), beats, TrainOptions{Rounds: 5, Seed: 1, RROnly: true, Linear: 0.3, LinearBase: 0.5, TuneFolds: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tuned offsets %v", tuned.ens[0].Offset)
	for c, off := range tuned.ens[0].Offset {
		v := float64(off) * (1 - 0.3)
		if k := (v - offsetMin) / offsetStep; math.Abs(k-math.Round(k)) > 1e-4 || v < offsetMin-1e-4 || v > offsetMax+1e-4 {
			t.Errorf("class %d: offset %v, times 0.7 = %v, not on the grid", c, off, v)
		}
	}
}

// TestModelV5File reads a version 5 file (the linear model's probabilities averaged with the
// trees', share 0.5), made with the version 5 code, and checks that it gives the predictions that
// code gave.
func TestModelV5File(t *testing.T) {
	checkOldModelFile(t, 5, numV4Features, 0.5)
}

// TestModelV6File reads a version 6 file (98 features, the linear model of 34 features combined
// in log space; three ensembles of 3 rounds trained on record 208, an S offset), made with the
// version 6 code, and checks that it gives the predictions that code gave.
func TestModelV6File(t *testing.T) {
	checkOldModelFile(t, 6, numV4Features, 0.5)
}

// TestSupraventricularGate checks the gate of TrainOptions.SGate: a beat the combined model
// calls N is called S, with the linear model's probabilities, exactly when the linear model
// gives S at least the gate and the beat is in the gate's scope (every beat, beats in runs,
// beats in runs or at their onsets); every other beat keeps the combined model's prediction.
// The gate and its scope survive the model file, which older versions cannot hold.
func TestSupraventricularGate(t *testing.T) {
	// Trained on eight patients (207's supraventricular runs among them), tested on a ninth's
	// supraventricular runs (record 209), where the trees alone call some of them N.
	dir := needData(t)
	all, _, err := LoadBeatsAt(dir, []string{"101", "106", "118", "119", "203", "207", "220", "223", "209"}, PeaksDetected)
	if err != nil {
		t.Fatal(err)
	}
	var train, beats []Beat
	for _, b := range all {
		if b.Record == "209" {
			beats = append(beats, b)
		} else {
			train = append(train, b)
		}
	}
	m, err := Train(context.Background(), train, TrainOptions{Rounds: 5, Seed: 1, RROnly: true, Linear: 0.3, LinearBase: 0.5, SGate: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if m.lin.Gate != 0.5 || m.lin.GateScope != gateEveryBeat || m.Version != ModelVersion {
		t.Fatalf("gate %v (%v), version %d", m.lin.Gate, m.lin.GateScope, m.Version)
	}
	names := FeatureNames()
	if names[featPreNormal] != "pre/normal" || names[featLocalNormal] != "local/normal" || names[featPrevNormal] != "prev/normal" || names[featSpread] != "spread" {
		t.Fatalf("run condition features %q %q %q %q", names[featPreNormal], names[featLocalNormal], names[featPrevNormal], names[featSpread])
	}
	off := withGate(m, 0, gateEveryBeat)
	// The gate on every beat the model calls N (version 8's), then only on beats in runs
	// (version 9's), then on beats in runs or at their onsets.
	gatedBy := map[gateScope]int{}
	for _, scope := range []gateScope{gateEveryBeat, gateRuns, gateRunsOnsets} {
		on := withGate(m, m.lin.Gate, scope)
		var f [NumFeatures]float32
		gated, foundGate, foundPlain, outside := 0, 0, 0, 0
		for i := range beats {
			b := &beats[i]
			got, plain := on.ClassifyWindow(&b.Samples, b.RR), off.ClassifyWindow(&b.Samples, b.RR)
			if b.Class == ClassS && got.Class == ClassS {
				foundGate++
			}
			if b.Class == ClassS && plain.Class == ClassS {
				foundPlain++
			}
			Features(f[:], &b.Samples, b.RR)
			var lp [NumClasses]float64
			ls := m.lin.scores(f[:])
			softmax(lp[:], ls[:])
			inScope := inRun(&f) || (scope == gateRunsOnsets && runOnset(&f))
			if plain.Class == ClassN && lp[ClassS] >= 0.5 && scope != gateEveryBeat && !inScope {
				outside++
			}
			if plain.Class != ClassN || lp[ClassS] < 0.5 || (scope != gateEveryBeat && !inScope) {
				if got != plain {
					t.Fatalf("%v, beat %d: %+v with the gate, %+v without, linear S %v", scope, i, got, plain, lp[ClassS])
				}
				continue
			}
			gated++
			if got.Class != ClassS {
				t.Fatalf("%v, beat %d: class %v, linear S %v, want S", scope, i, got.Class, lp[ClassS])
			}
			for c := range lp {
				if math.Abs(got.Probs[c]-lp[c]) > 1e-5 {
					t.Fatalf("%v, beat %d class %d: probability %v, want the linear model's %v", scope, i, c, got.Probs[c], lp[c])
				}
			}
		}
		t.Logf("%v: %d of %d beats called S by the gate, %d left to the model outside its scope (S beats: %d called S with the gate, %d without)", scope, gated, len(beats), outside, foundGate, foundPlain)
		if gated == 0 || (scope != gateEveryBeat && outside == 0) {
			t.Fatalf("%v: the gate applied to %d beats and left %d outside its scope: the test shows nothing", scope, gated, outside)
		}
		gatedBy[scope] = gated
	}
	if !(gatedBy[gateRuns] < gatedBy[gateRunsOnsets] && gatedBy[gateRunsOnsets] < gatedBy[gateEveryBeat]) {
		t.Errorf("beats called S by the gate on every beat, in runs, in runs and at their onsets: %v; want the onsets to add some", gatedBy)
	}
	// Each scope reads back from the first version that holds it, and no earlier one holds it.
	for _, scope := range []gateScope{gateRuns, gateRunsOnsets} {
		scoped := withGate(m, m.lin.Gate, scope)
		for _, version := range []int{scope.minVersion(), ModelVersion} {
			scoped.Version = version
			var rb bytes.Buffer
			if _, err := scoped.WriteTo(&rb); err != nil {
				t.Fatal(err)
			}
			if m2, err := ReadModel(&rb); err != nil || m2.Version != version || m2.lin.GateScope != scope || m2.lin.Gate != 0.5 {
				t.Fatalf("read back the gate limited to %v (version %d): %v, %+v", scope, version, err, m2)
			}
		}
		scoped.Version = scope.minVersion() - 1
		if _, err := scoped.WriteTo(new(bytes.Buffer)); err == nil || !strings.Contains(err.Error(), scope.String()) {
			t.Errorf("a version %d model with the gate limited to %v: error %v", scoped.Version, scope, err)
		}
		// Nor does a file of an earlier version that claims the scope read.
		scoped.Version = scope.minVersion()
		var rb bytes.Buffer
		if _, err := scoped.WriteTo(&rb); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadModel(withVersion(t, rb.Bytes(), scope.minVersion()-1)); !errors.Is(err, ErrModelFormat) {
			t.Errorf("a version %d file with the gate limited to %v: error %v, want ErrModelFormat", scope.minVersion()-1, scope, err)
		}
	}
	// A version 8 model holds the gate on every beat.
	v8 := *m
	v8.Version = 8
	var rb bytes.Buffer
	if _, err := v8.WriteTo(&rb); err != nil {
		t.Fatal(err)
	}
	if m2, err := ReadModel(&rb); err != nil || m2.Version != 8 || m2.lin.Gate != 0.5 || m2.lin.GateScope != gateEveryBeat {
		t.Fatalf("read back a version 8 model with the gate: %v, %+v", err, m2)
	}
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	m2, err := ReadModel(&buf)
	if err != nil || m2.lin.Gate != 0.5 {
		t.Fatalf("read back: %v, %+v", err, m2)
	}
	// A version 7 model (its features, its linear model's) cannot hold the gate.
	old := *m
	old.Version, old.NumFeatures = 7, numV7Features
	oldLin := *m.lin
	for c := range linearClasses {
		for k := numLinearV7; k < numLinear; k++ {
			oldLin.W[c][k], oldLin.W[c][numLinear+k] = 0, 0
		}
	}
	old.lin = &oldLin
	if _, err := old.WriteTo(&buf); err == nil || !strings.Contains(err.Error(), "gate") {
		t.Errorf("a version 7 model with a gate: error %v", err)
	}
	oldLin.Gate = 0
	if _, err := old.WriteTo(&buf); err != nil {
		t.Errorf("a version 7 model without the gate: %v", err)
	}
}

// withVersion returns the model file data with its version field set to v.
func withVersion(t *testing.T, data []byte, v int) io.Reader {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(raw[len(modelMagic):], uint32(v))
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(raw)
	zw.Close()
	return &out
}

// withGate is a copy of m whose linear model has the given supraventricular gate and scope.
func withGate(m *Model, gate float32, scope gateScope) *Model {
	c := *m
	lin := *m.lin
	lin.Gate, lin.GateScope = gate, scope
	c.lin = &lin
	return &c
}
