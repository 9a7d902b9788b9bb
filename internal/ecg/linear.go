package ecg

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// A second, simpler classifier beside the trees: multinomial logistic regression on the
// features that describe a beat relative to its own patient (RR-interval ratios, intervals
// against the normal rhythm, morphology against the patient's template), standardised, each
// with its square. It has a few hundred parameters against the trees' hundreds of thousands of
// nodes and never sees the window samples, so, like the linear discriminants of de Chazal et
// al. (2004), it cannot learn a training patient's absolute beat shape; on new patients it
// finds more supraventricular beats than the trees do (docs/ecg.md, Evaluation 2). In version
// 6 and later models the trees are boosted from a share of its log-probabilities
// (TrainOptions.LinearBase), so they learn corrections to it, and the class scores are a
// weighted sum of the trees' and its log-probabilities (a weighted geometric mean of the
// probabilities); version 5 models average the two models' probabilities.

// linearFeatures lists the indices, in the feature vector, of the features the linear model
// reads: every feature but the window samples and the window width (an absolute interval).
// The linear model of version 5 and 6 files reads the first numLinearV6 of them.
var linearFeatures = func() []int {
	var idx []int
	for j := numWaveFeat; j < NumFeatures; j++ {
		if j != numV1Features-1 {
			idx = append(idx, j)
		}
	}
	return idx
}()

const (
	// numLinear is the number of features the linear model reads.
	numLinear = NumFeatures - numWaveFeat - 1
	// numLinearV6 is the number of features the linear model of version 5 and 6 files reads,
	// a prefix of today's.
	numLinearV6 = numV4Features - numWaveFeat - 1
	// numLinearV7 is the number of features the linear model of version 7 files reads.
	numLinearV7 = numV7Features - numWaveFeat - 1
	// linearDim is the number of its inputs: each standardised feature and its square.
	linearDim = 2 * numLinear
	// linearClip bounds standardised feature values, so that a far outlier (a ratio to a tiny
	// interval) cannot dominate a score.
	linearClip = 5
	// linearClasses are the classes the linear model scores: N, S, V and F. Q (paced and
	// unclassifiable beats, 8 of DS1's 50,999) is too rare to fit weights for; the linear model
	// gives it probability 0, so only the trees can call a beat Q.
	linearClasses = NumClasses - 1
)

// DefaultLinearShare is TrainOptions.Linear of the default model and the ecg commands, and
// DefaultLinearBase its TrainOptions.LinearBase: the trees are boosted from half the linear
// model's log-probabilities, and a beat's class scores are 0.7 times the trees' (with that
// start) plus 0.3 times the linear model's log-probabilities. Larger shares find more
// supraventricular beats on new patients but lower the intra-patient figures (docs/ecg.md,
// Evaluation 2).
const (
	DefaultLinearShare = 0.3
	DefaultLinearBase  = 0.5
)

// linearFloor bounds the linear model's probabilities whose logarithm enters the class scores
// (log 1e-6 ≈ −13.8; Q's probability is 0).
const linearFloor = 1e-6

// linearModel is a multinomial logistic regression over linearClasses: the score of class c
// is Bias[c] + Σ W[c][k]·z_k, where z holds the linear features standardised by Mean and Scale
// and clipped to ±linearClip, then their squares divided by linearClip.
type linearModel struct {
	Share float32 // share of the linear model in the model's scores (probabilities in version 5), in (0, 1]
	// Base is the share of its log-probabilities the trees were boosted from and that is
	// added to their scores, in [0, 1] (versions 6 and later; 0 in version 5).
	Base float32
	// Gate is the supraventricular gate (TrainOptions.SGate): 0 (off) or in [0.5, 1)
	// (version 8 and later; 0 before).
	Gate float32
	// GateScope is which beats the gate applies to (version 9 and later; every beat the
	// model calls N before).
	GateScope   gateScope
	Mean, Scale [numLinear]float32
	W           [linearClasses][linearDim]float32
	Bias        [linearClasses]float32
	// geometric is set for version 6 and later models: the model's class scores are
	// (1 − Share)·(trees' scores + Base·l) + Share·l, l the linear log-probabilities; version 5
	// models average the probabilities instead.
	geometric bool
}

// inputs writes the linear model's inputs for the full feature vector f into z.
func (m *linearModel) inputs(z *[linearDim]float64, f []float32) {
	for k, j := range linearFeatures {
		v := (float64(f[j]) - float64(m.Mean[k])) / float64(m.Scale[k])
		v = max(-linearClip, min(linearClip, v))
		z[k] = v
		z[numLinear+k] = v * v / linearClip
	}
}

// scores returns the class scores of a full feature vector; Q's is −∞.
func (m *linearModel) scores(f []float32) [NumClasses]float64 {
	var z [linearDim]float64
	m.inputs(&z, f)
	var s [NumClasses]float64
	s[ClassQ] = math.Inf(-1)
	for c := range linearClasses {
		acc := float64(m.Bias[c])
		for k, w := range m.W[c] {
			acc += float64(w) * z[k]
		}
		s[c] = acc
	}
	return s
}

// logProbs returns the linear model's class log-probabilities of a full feature vector, each
// at least log(linearFloor) (Q's is that floor).
func (m *linearModel) logProbs(f []float32) [NumClasses]float64 {
	s := m.scores(f)
	var p [NumClasses]float64
	softmax(p[:], s[:])
	for c := range p {
		p[c] = math.Log(max(p[c], linearFloor))
	}
	return p
}

// combine returns the class scores of a version 6 or 7 model from the trees' scores s (with their
// decision offsets) and the linear log-probabilities lp: (1 − Share)·(s + Base·lp) + Share·lp.
func (m *linearModel) combine(s *[NumClasses]float64, lp [NumClasses]float64) [NumClasses]float64 {
	a, b := float64(m.Share), float64(m.Base)
	var z [NumClasses]float64
	for c := range z {
		z[c] = (1-a)*(s[c]+b*lp[c]) + a*lp[c]
	}
	return z
}

// Feature indices of the run condition of the gate (see FeatureNames).
const (
	featPreNormal   = numV3Features - numNormalFeat
	featLocalNormal = numV3Features - numNormalFeat + 2
	featSpread      = numV3Features - numNormalFeat + 4
	featPrevNormal  = numV4Features - 1
)

// gateScope is which beats the supraventricular gate applies to.
type gateScope uint32

const (
	// gateEveryBeat: every beat the model calls N (version 8's gate).
	gateEveryBeat gateScope = iota
	// gateRuns: beats in a regular fast run (inRun; version 9).
	gateRuns
	// gateRunsOnsets: beats in a regular fast run or at its onset (inRun, runOnset; version
	// 10, what TrainOptions.SGateRuns trains).
	gateRunsOnsets
)

func (s gateScope) String() string {
	switch s {
	case gateEveryBeat:
		return "every beat"
	case gateRuns:
		return "runs"
	}
	return "runs and their onsets"
}

// minVersion is the first model file version that holds the scope.
func (s gateScope) minVersion() int {
	switch s {
	case gateEveryBeat:
		return 8
	case gateRuns:
		return 9
	}
	return 10
}

// applies reports whether the gate of this scope applies to the beat of features f.
func (s gateScope) applies(f *[NumFeatures]float32) bool {
	switch s {
	case gateRuns:
		return inRun(f)
	case gateRunsOnsets:
		return inRun(f) || runOnset(f)
	}
	return true
}

// Bounds of a regular fast run (gateRuns): the mean of the last ten intervals and the
// previous interval against the patient's normal rhythm, and the rhythm's spread. The
// supraventricular runs the trees miss in DS1 are at 0.5–0.6 of the normal rhythm with a
// spread about 0.03; a known patient's normal beats the gate alone calls S are sinus
// arrhythmia at 0.7–0.8 and atrial fibrillation (large spread). A run's first beats, whose
// mean of the last ten intervals is still near the normal rhythm, are at its onset
// (gateRunsOnsets): the beat's own and the previous interval below 0.65 of the normal rhythm
// in a regular rhythm.
const (
	runLocalMax  = 0.7
	runPrevMax   = 0.75
	runSpreadMax = 0.08
	runOnsetMax  = 0.65
)

// inRun reports whether the features f describe a beat in a regular fast run.
func inRun(f *[NumFeatures]float32) bool {
	l := f[featLocalNormal]
	return l > 0 && l < runLocalMax && f[featPrevNormal] < runPrevMax && f[featSpread] < runSpreadMax
}

// runOnset reports whether the features f describe a beat at the onset of a regular fast
// run: it and the beat before came early.
func runOnset(f *[NumFeatures]float32) bool {
	p := f[featPreNormal]
	return p > 0 && p < runOnsetMax && f[featPrevNormal] < runOnsetMax && f[featSpread] < runSpreadMax
}

// gated reports whether the supraventricular gate calls the beat of features f S: the
// combined scores z call it N, the linear log-probabilities lp give S at least the gate and
// the beat is in the gate's scope.
func (m *linearModel) gated(z, lp *[NumClasses]float64, f *[NumFeatures]float32) bool {
	if m.Gate == 0 || lp[ClassS] < math.Log(float64(m.Gate)) || !m.GateScope.applies(f) {
		return false
	}
	for c := 1; c < NumClasses; c++ {
		if z[c] > z[ClassN] {
			return false
		}
	}
	return true
}

// Training of the linear model: full-batch gradient descent with Nesterov momentum on the
// class-weighted mean log-loss plus an L2 penalty on the weights. The inputs are standardised,
// so a fixed step converges; 300 steps reach the optimum within what changes a prediction (1,000
// gave the same cross-validation figures).
const (
	linearLambda     = 1e-3
	linearIterations = 300
	linearStep       = 0.5
	linearMomentum   = 0.9
)

// trainLinear fits the linear model on x (rows of NumFeatures features, row-major) with
// classes y and per-class weights; rows of class Q are left out. It is deterministic.
func trainLinear(x []float32, y []int, weight []float64, share float64) (*linearModel, error) {
	var keep []int
	for i, c := range y {
		if c < linearClasses {
			keep = append(keep, i)
		}
	}
	if len(keep) < len(y) {
		xk := make([]float32, 0, len(keep)*NumFeatures)
		yk := make([]int, 0, len(keep))
		for _, i := range keep {
			xk = append(xk, x[i*NumFeatures:(i+1)*NumFeatures]...)
			yk = append(yk, y[i])
		}
		x, y = xk, yk
	}
	n := len(y)
	if n == 0 {
		return nil, fmt.Errorf("training the linear model: no beats")
	}
	m := &linearModel{Share: float32(share)}
	for k, j := range linearFeatures {
		var s, s2 float64
		for i := 0; i < n; i++ {
			v := float64(x[i*NumFeatures+j])
			s += v
			s2 += v * v
		}
		mean := s / float64(n)
		sd := math.Sqrt(max(s2/float64(n)-mean*mean, 0))
		if sd < 1e-6 {
			sd = 1 // a constant feature: its weight stays near 0
		}
		m.Mean[k], m.Scale[k] = float32(mean), float32(sd)
	}
	const d = linearDim
	z := make([]float64, n*d)
	for i := 0; i < n; i++ {
		m.inputs((*[d]float64)(z[i*d:(i+1)*d]), x[i*NumFeatures:(i+1)*NumFeatures])
	}
	var wsum float64
	var counts [linearClasses]float64
	for _, c := range y {
		wsum += weight[c]
		counts[c] += weight[c]
	}
	// Parameters: per class d weights and a bias, which starts at the log prior.
	const p = d + 1
	theta := make([]float64, linearClasses*p)
	for c := range linearClasses {
		theta[c*p+d] = math.Log((counts[c] + 1) / (wsum + linearClasses))
	}
	vel := make([]float64, len(theta))
	look := make([]float64, len(theta))
	grad := make([]float64, len(theta))
	var s, prob [linearClasses]float64
	for it := 0; it < linearIterations; it++ {
		for i := range look {
			look[i] = theta[i] + linearMomentum*vel[i]
		}
		clear(grad)
		for i := 0; i < n; i++ {
			zi := z[i*d : (i+1)*d]
			for c := range linearClasses {
				row := look[c*p : (c+1)*p]
				acc := row[d]
				for k, v := range zi {
					acc += row[k] * v
				}
				s[c] = acc
			}
			softmax(prob[:], s[:])
			w := weight[y[i]] / wsum
			for c := range linearClasses {
				g := prob[c]
				if c == y[i] {
					g--
				}
				g *= w
				row := grad[c*p : (c+1)*p]
				for k, v := range zi {
					row[k] += g * v
				}
				row[d] += g
			}
		}
		for c := range linearClasses {
			for k := 0; k < d; k++ {
				grad[c*p+k] += linearLambda * look[c*p+k]
			}
		}
		for i := range theta {
			vel[i] = linearMomentum*vel[i] - linearStep*grad[i]
			theta[i] += vel[i]
		}
	}
	for c := range linearClasses {
		for k := 0; k < d; k++ {
			m.W[c][k] = float32(theta[c*p+k])
		}
		m.Bias[c] = float32(theta[c*p+d])
	}
	return m, nil
}

// write appends the linear model in the layout of the model file version: float32 share,
// float32 base (versions 6 and later), float32 gate (version 8 and later), uint32 gate scope
// (version 9: 0 every beat, 1 beats in a regular fast run; version 10 also 2, beats in a
// regular fast run or at its onset), uint32 number of features
// (numLinearV6 before version 7), float32 means, float32 scales, then per class N, S, V, F
// float32 bias and weights.
func (m *linearModel) write(w io.Writer, version int) error {
	le := binary.LittleEndian
	if m.geometric != (version >= 6) {
		return fmt.Errorf("a version %d model cannot hold this linear model (combined in log space: %v)", version, m.geometric)
	}
	nf := linearCount(version)
	if nf < numLinear {
		// An older file: its model reads a prefix of the features, the others have weight 0.
		for c := range linearClasses {
			for k := nf; k < numLinear; k++ {
				if m.W[c][k] != 0 || m.W[c][numLinear+k] != 0 {
					return fmt.Errorf("a version %d model cannot hold a linear model of %d features", version, numLinear)
				}
			}
		}
	}
	if m.Gate != 0 && version < 8 {
		return fmt.Errorf("a version %d model cannot hold a supraventricular gate", version)
	}
	if m.GateScope != gateEveryBeat && version < m.GateScope.minVersion() {
		return fmt.Errorf("a version %d model cannot hold a supraventricular gate limited to %s", version, m.GateScope)
	}
	scope := uint32(m.GateScope)
	fields := []any{m.Share, uint32(nf), m.Mean[:nf], m.Scale[:nf]}
	switch {
	case version >= 9:
		fields = []any{m.Share, m.Base, m.Gate, scope, uint32(nf), m.Mean[:nf], m.Scale[:nf]}
	case version >= 8:
		fields = []any{m.Share, m.Base, m.Gate, uint32(nf), m.Mean[:nf], m.Scale[:nf]}
	case version >= 6:
		fields = []any{m.Share, m.Base, uint32(nf), m.Mean[:nf], m.Scale[:nf]}
	}
	for _, v := range fields {
		if err := binary.Write(w, le, v); err != nil {
			return err
		}
	}
	for c := range linearClasses {
		if err := binary.Write(w, le, m.Bias[c]); err != nil {
			return err
		}
		// The standardised features, then their squares.
		if err := binary.Write(w, le, m.W[c][:nf]); err != nil {
			return err
		}
		if err := binary.Write(w, le, m.W[c][numLinear:numLinear+nf]); err != nil {
			return err
		}
	}
	return nil
}

// linearCount is the number of features the linear model of a file of the version reads.
func linearCount(version int) int {
	switch {
	case version < 7:
		return numLinearV6
	case version < 8:
		return numLinearV7
	}
	return numLinear
}

// readLinear decodes what write wrote for a file of the version, rejecting a share outside
// (0, 1], a base outside [0, 1], another feature count, scales that are not positive and values
// that are not finite.
func readLinear(br *bytes.Reader, version int) (*linearModel, error) {
	le := binary.LittleEndian
	m := &linearModel{geometric: version >= 6}
	var nf uint32
	if err := binary.Read(br, le, &m.Share); err != nil {
		return nil, fmt.Errorf("%w: linear model: %w", ErrModelFormat, err)
	}
	if !finite32(m.Share) || m.Share <= 0 || m.Share > 1 {
		return nil, fmt.Errorf("%w: linear model share %v", ErrModelFormat, m.Share)
	}
	if m.geometric {
		if err := binary.Read(br, le, &m.Base); err != nil {
			return nil, fmt.Errorf("%w: linear model: %w", ErrModelFormat, err)
		}
		if !finite32(m.Base) || m.Base < 0 || m.Base > 1 {
			return nil, fmt.Errorf("%w: linear model base %v", ErrModelFormat, m.Base)
		}
	}
	if version >= 8 {
		if err := binary.Read(br, le, &m.Gate); err != nil {
			return nil, fmt.Errorf("%w: linear model: %w", ErrModelFormat, err)
		}
		if !(m.Gate == 0 || (m.Gate >= 0.5 && m.Gate < 1)) {
			return nil, fmt.Errorf("%w: supraventricular gate %v", ErrModelFormat, m.Gate)
		}
	}
	if version >= 9 {
		var scope uint32
		if err := binary.Read(br, le, &scope); err != nil {
			return nil, fmt.Errorf("%w: linear model: %w", ErrModelFormat, err)
		}
		if scope > uint32(gateRunsOnsets) || gateScope(scope).minVersion() > version || (scope != 0 && m.Gate == 0) {
			return nil, fmt.Errorf("%w: supraventricular gate scope %d (gate %v, version %d)", ErrModelFormat, scope, m.Gate, version)
		}
		m.GateScope = gateScope(scope)
	}
	want := linearCount(version)
	if err := binary.Read(br, le, &nf); err != nil || int(nf) != want {
		return nil, fmt.Errorf("%w: linear model: %d features, want %d", ErrModelFormat, nf, want)
	}
	for _, v := range [][]float32{m.Mean[:want], m.Scale[:want]} {
		if err := binary.Read(br, le, v); err != nil {
			return nil, fmt.Errorf("%w: linear model: %w", ErrModelFormat, err)
		}
	}
	// Features an older file's model does not read: standardised as they come, weight 0.
	for k := want; k < numLinear; k++ {
		m.Scale[k] = 1
	}
	for c := range linearClasses {
		if err := binary.Read(br, le, &m.Bias[c]); err != nil {
			return nil, fmt.Errorf("%w: linear model: %w", ErrModelFormat, err)
		}
		if err := binary.Read(br, le, m.W[c][:want]); err != nil {
			return nil, fmt.Errorf("%w: linear model: %w", ErrModelFormat, err)
		}
		if err := binary.Read(br, le, m.W[c][numLinear:numLinear+want]); err != nil {
			return nil, fmt.Errorf("%w: linear model: %w", ErrModelFormat, err)
		}
	}
	ok := finite32(m.Bias[0])
	for k := 0; k < numLinear; k++ {
		ok = ok && finite32(m.Mean[k]) && finite32(m.Scale[k]) && m.Scale[k] > 0
	}
	for c := range linearClasses {
		ok = ok && finite32(m.Bias[c])
		for _, w := range m.W[c] {
			ok = ok && finite32(w)
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: linear model: a value is not finite or a scale not positive", ErrModelFormat)
	}
	return m, nil
}
