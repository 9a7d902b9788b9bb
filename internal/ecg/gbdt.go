package ecg

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
)

// TrainOptions configures gradient-boosted tree training. Zero fields take the defaults
// documented on each field.
type TrainOptions struct {
	Rounds       int     // boosting rounds, each adds one tree per class; default 120
	MaxDepth     int     // default 6, at most 24
	LearningRate float64 // default 0.2
	Lambda       float64 // L2 regularization of leaf values; default 1
	MinHessian   float64 // minimum hessian sum in a leaf; default 1
	Subsample    float64 // share of rows drawn per round without replacement; default 0.8
	Bins         int     // feature histogram bins, at most 255; default 64
	// ClassWeight scales each row's gradient by (count of N / count of its class)^ClassWeight;
	// 0 (the default) weighs every beat equally, 1 balances the classes.
	ClassWeight float64
	// TuneFolds, when 2 or more, tunes the decision rule (per-class score offsets) on
	// out-of-fold predictions of a cross-validation over the training beats' records, with
	// that many folds; 0 (the default) leaves the offsets at zero. It costs TuneFolds extra
	// trainings of the RR ensemble.
	TuneFolds int `json:",omitempty"`
	// PatientOnly restricts the RR ensemble to the features that describe a beat relative to
	// its own patient (RR ratios, morphology against the patient's template), leaving out the
	// window samples, whose absolute shape differs from patient to patient.
	PatientOnly bool `json:",omitempty"`
	// RROnly skips the second, shape-only ensemble that classifies beats without RR features
	// and the third, for beats with RR features but no morphology (used by evaluations, whose
	// beats always have both).
	RROnly bool
	// Linear, when above 0, also trains the linear model on the patient-relative features
	// (see linear.go) with the same class weights and gives it that share (at most 1) of
	// the first ensemble's class scores: (1 − Linear)·(trees' scores) + Linear·(its
	// log-probabilities); 0 (the zero value) trains trees alone.
	Linear float64 `json:",omitempty"`
	// LinearBase, in [0, 1] and only with Linear above 0, boosts the first ensemble's trees
	// from that share of the linear model's log-probabilities (and 1 − LinearBase of the class
	// priors) instead of the priors alone, so that the trees learn corrections to the linear
	// model; the share is added to the trees' scores when classifying.
	LinearBase float64 `json:",omitempty"`
	// SGate, 0 (off) or in [0.5, 1) and only with Linear above 0, is the supraventricular
	// gate: a beat the combined model calls N is called S, with the linear model's
	// probabilities, when the linear model gives S at least this probability. The linear
	// model judges a beat against its own patient's rhythm and beat only, which holds on new
	// patients; the trees' absolute shapes of the training patients call the runs of a new
	// patient's supraventricular tachycardia normal (docs/ecg.md, Evaluation 2).
	SGate float64 `json:",omitempty"`
	// SGateRuns limits the gate to beats in a regular fast run or at its onset: the last ten
	// intervals below 0.7 of the patient's normal rhythm and the previous one below 0.75, or
	// the beat's own and the previous interval below 0.65 of it, in a regular rhythm (spread
	// below 0.08). Those are where the trees miss a new patient's supraventricular beats; the
	// beats the gate would call S elsewhere are mostly a known patient's sinus arrhythmia and
	// atrial fibrillation, which the trees get right (docs/ecg.md, Evaluation 2).
	SGateRuns bool   `json:",omitempty"`
	Seed      uint64 // seeds row subsampling; training is deterministic for a seed
	Workers   int    // goroutines building histograms; default 2
}

// DefaultSGate is the supraventricular gate (TrainOptions.SGate) of the default model and of
// the ecg commands, limited to runs and their onsets (TrainOptions.SGateRuns): chosen on the
// inter-patient cross-validation of docs/ecg.md, where it finds a new patient's runs the trees
// call normal and leaves the intra-patient figures as they were.
const DefaultSGate = 0.5

// DefaultClassWeight is the class weight (TrainOptions.ClassWeight) of the default model and
// of the ecg commands: a rare class's beats count (count of N / count of the class)^0.3 times
// as much as a normal beat (about 3 for S and 2 for V in DS1). Chosen on the inter-patient
// cross-validation of docs/ecg.md, where it raised S sensitivity and PPV on new patients.
const DefaultClassWeight = 0.3

func (o TrainOptions) withDefaults() TrainOptions {
	if o.Rounds <= 0 {
		o.Rounds = 120
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = 6
	}
	if o.LearningRate <= 0 {
		o.LearningRate = 0.2
	}
	if o.Lambda <= 0 {
		o.Lambda = 1
	}
	if o.MinHessian <= 0 {
		o.MinHessian = 1
	}
	if o.Subsample <= 0 || o.Subsample > 1 {
		o.Subsample = 0.8
	}
	if o.Bins <= 1 || o.Bins > 255 {
		o.Bins = 64
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	return o
}

// node is one node of a regression tree. Feat < 0 marks a leaf holding Value.
type node struct {
	Feat        int16
	Thr         float32 // go left when x[Feat] <= Thr
	Left, Right int32   // indices within the tree's nodes
	Value       float32
	bin         uint8 // split bin during training; not stored
}

type tree struct {
	Class int
	Nodes []node
}

type binStat struct{ g, h float64 }

type trainer struct {
	opt    TrainOptions
	n, f   int
	bins   []uint8     // row-major n x f
	edges  [][]float32 // per feature: upper edge of each bin but the last
	nb     []int       // bins per feature
	skip   []bool      // features not used for splits
	g, h   []float64
	rowTmp []int32
}

// Train fits a multi-class gradient-boosted tree model (softmax loss, histogram splits) on
// beats: one ensemble on all features and, unless opt.RROnly, a second one on the window shape
// alone for beats that come without RR features and a third one on the window and the four
// intervals for beats whose morphology is unknown. With opt.TuneFolds the first ensemble's
// decision offsets are tuned on the training records. It stops early with ctx's error.
func Train(ctx context.Context, beats []Beat, opt TrainOptions) (*Model, error) {
	opt = opt.withDefaults()
	if len(beats) == 0 {
		return nil, fmt.Errorf("training: no beats")
	}
	if opt.MaxDepth > maxTreeDepth {
		return nil, fmt.Errorf("training: depth %d, want 1 to %d", opt.MaxDepth, maxTreeDepth)
	}
	if opt.Linear < 0 || opt.Linear > 1 || math.IsNaN(opt.Linear) {
		return nil, fmt.Errorf("training: linear model share %v, want 0 to 1", opt.Linear)
	}
	if opt.LinearBase < 0 || opt.LinearBase > 1 || math.IsNaN(opt.LinearBase) || (opt.LinearBase > 0 && opt.Linear == 0) {
		return nil, fmt.Errorf("training: linear base %v, want 0 to 1 and a linear model (share above 0)", opt.LinearBase)
	}
	if !(opt.SGate == 0 || (opt.SGate >= 0.5 && opt.SGate < 1)) || (opt.SGate > 0 && opt.Linear == 0) {
		return nil, fmt.Errorf("training: supraventricular gate %v, want 0 (off) or 0.5 to below 1, and a linear model (share above 0)", opt.SGate)
	}
	if opt.SGateRuns && opt.SGate == 0 {
		return nil, fmt.Errorf("training: the supraventricular gate limited to runs needs a gate (above 0)")
	}
	m := &Model{Version: ModelVersion, NumFeatures: NumFeatures, Meta: ModelMeta{Options: opt, Beats: len(beats)}}
	for _, b := range beats {
		m.Meta.ClassCounts[b.Class]++
	}
	if opt.Linear > 0 {
		lin, err := trainLinearOn(beats, opt)
		if err != nil {
			return nil, err
		}
		m.lin = lin
	}
	e, err := trainEnsembleFrom(ctx, beats, opt, allFeatures, m.lin)
	if err != nil {
		return nil, err
	}
	if opt.TuneFolds >= 2 {
		scores, err := outOfFoldScores(ctx, beats, opt, opt.TuneFolds)
		if err != nil {
			return nil, err
		}
		y := make([]Class, len(beats))
		for i := range beats {
			y[i] = beats[i].Class
		}
		e.Offset = tuneOffsets(scores, y)
		if m.lin != nil {
			// Tuned on the combined scores, where the trees' weigh 1 − Linear.
			for c := range e.Offset {
				if opt.Linear < 1 {
					e.Offset[c] = float32(float64(e.Offset[c]) / (1 - opt.Linear))
				} else {
					e.Offset[c] = 0
				}
			}
		}
	}
	m.ens = append(m.ens, e)
	if !opt.RROnly {
		for _, mode := range []ensembleMode{shapeOnly, withoutMorph} {
			e, err := trainEnsemble(ctx, beats, opt, mode)
			if err != nil {
				return nil, err
			}
			m.ens = append(m.ens, e)
		}
	}
	return m, nil
}

// ensembleMode selects the features an ensemble is trained on.
type ensembleMode int

const (
	allFeatures  ensembleMode = iota
	shapeOnly                 // window shape only (RR features and morphology unknown)
	withoutMorph              // only the four intervals of RRFeatures.fourIntervals
)

// trainEnsemble fits a gradient-boosted ensemble on beats: per round, one regression tree per
// class on the softmax gradients of a random share of the rows.
func trainEnsemble(ctx context.Context, beats []Beat, opt TrainOptions, mode ensembleMode) (*ensemble, error) {
	return trainEnsembleFrom(ctx, beats, opt, mode, nil)
}

// trainLinearOn trains the linear model of opt (share opt.Linear, base opt.LinearBase, combined
// in log space) on beats, with the class weights of opt.
func trainLinearOn(beats []Beat, opt TrainOptions) (*linearModel, error) {
	x, y, counts := featureMatrix(beats, allFeatures)
	lin, err := trainLinear(x, y, classWeights(opt, counts), opt.Linear)
	if err != nil {
		return nil, err
	}
	lin.Base, lin.Gate, lin.geometric = float32(opt.LinearBase), float32(opt.SGate), true
	if opt.SGateRuns {
		lin.GateScope = gateRunsOnsets
	}
	return lin, nil
}

// trainEnsembleFrom is trainEnsemble, except that when lin is not nil and lin.Base above 0 the
// boosting starts from lin.Base times the linear model's log-probabilities plus 1 − lin.Base
// times the class priors, so that the trees learn corrections to the linear model.
func trainEnsembleFrom(ctx context.Context, beats []Beat, opt TrainOptions, mode ensembleMode, lin *linearModel) (*ensemble, error) {
	rng := rand.New(rand.NewPCG(opt.Seed, 0x9e3779b97f4a7c15))
	n, f := len(beats), NumFeatures
	x, y, counts := featureMatrix(beats, mode)
	t := newTrainer(opt, x, n, f, mode)
	weight := classWeights(opt, counts)
	if lin != nil && lin.Base == 0 {
		lin = nil
	}
	m := &ensemble{}
	for c := 0; c < NumClasses; c++ {
		p := (float64(counts[c]) + 1) / float64(n+NumClasses)
		m.Base[c] = float32(math.Log(p))
		if lin != nil {
			m.Base[c] = float32((1 - float64(lin.Base)) * math.Log(p))
		}
	}
	score := make([]float64, n*NumClasses)
	for i := 0; i < n; i++ {
		var lp [NumClasses]float64
		if lin != nil {
			lp = lin.logProbs(x[i*f : (i+1)*f])
		}
		for c := 0; c < NumClasses; c++ {
			score[i*NumClasses+c] = float64(m.Base[c])
			if lin != nil {
				score[i*NumClasses+c] += float64(lin.Base) * lp[c]
			}
		}
	}
	all := make([]int32, n)
	for i := range all {
		all[i] = int32(i)
	}
	for round := 0; round < opt.Rounds; round++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("training: %w", err)
		}
		rows := subsample(rng, all, opt.Subsample)
		gAll, hAll := softmaxGradients(rows, score, y, weight)
		for c := 0; c < NumClasses; c++ {
			for _, r := range rows {
				t.g[r] = gAll[int(r)*NumClasses+c]
				t.h[r] = hAll[int(r)*NumClasses+c]
			}
			tr := tree{Class: c}
			t.rowTmp = slices.Clone(rows)
			t.grow(&tr, t.rowTmp, nil, 0)
			m.Trees = append(m.Trees, tr)
			for i := 0; i < n; i++ {
				score[i*NumClasses+c] += float64(tr.predictBinned(t.bins[i*f : (i+1)*f]))
			}
		}
	}
	m.flatten()
	return m, nil
}

// featureMatrix returns the features of beats (row-major, NumFeatures a row) as mode sees
// them, their classes and the count of each class.
func featureMatrix(beats []Beat, mode ensembleMode) (x []float32, y []int, counts [NumClasses]int) {
	f := NumFeatures
	x = make([]float32, len(beats)*f)
	y = make([]int, len(beats))
	for i := range beats {
		rr := beats[i].RR
		switch mode {
		case shapeOnly:
			rr = RRFeatures{}
		case withoutMorph:
			rr = rr.fourIntervals()
		}
		Features(x[i*f:(i+1)*f], &beats[i].Samples, rr)
		y[i] = int(beats[i].Class)
		counts[y[i]]++
	}
	return x, y, counts
}

// newTrainer quantizes x (n rows of f features) and marks the features trees may not split
// on: with PatientOnly, the wave features and window width of the full model.
func newTrainer(opt TrainOptions, x []float32, n, f int, mode ensembleMode) *trainer {
	t := &trainer{opt: opt, n: n, f: f, bins: make([]uint8, n*f), edges: make([][]float32, f), nb: make([]int, f),
		g: make([]float64, n), h: make([]float64, n)}
	t.quantize(x)
	t.skip = make([]bool, f)
	if opt.PatientOnly && mode == allFeatures {
		for j := 0; j < numWaveFeat; j++ {
			t.skip[j] = true
		}
		t.skip[numV1Features-1] = true // window width
	}
	return t
}

// classWeights weighs each class by (count of N / its count)^ClassWeight, 1 when ClassWeight
// is 0 or the class is absent.
func classWeights(opt TrainOptions, counts [NumClasses]int) []float64 {
	weight := make([]float64, NumClasses)
	for c := range weight {
		weight[c] = 1
		if opt.ClassWeight > 0 && counts[c] > 0 {
			weight[c] = math.Pow(float64(counts[ClassN])/float64(counts[c]), opt.ClassWeight)
		}
	}
	return weight
}

// subsample returns all when share >= 1, else the first share of a fresh permutation of all
// (partial Fisher-Yates), sorted for locality.
func subsample(rng *rand.Rand, all []int32, share float64) []int32 {
	if share >= 1 {
		return all
	}
	n := len(all)
	perm := slices.Clone(all)
	k := int(share * float64(n))
	for i := 0; i < k; i++ {
		j := i + rng.IntN(n-i)
		perm[i], perm[j] = perm[j], perm[i]
	}
	rows := perm[:k]
	slices.Sort(rows)
	return rows
}

// softmaxGradients returns the weighted softmax gradients and hessians of every class for
// rows, from the scores before this round (row-major, NumClasses a row).
func softmaxGradients(rows []int32, score []float64, y []int, weight []float64) (g, h []float64) {
	n := len(score) / NumClasses
	g = make([]float64, n*NumClasses)
	h = make([]float64, n*NumClasses)
	prob := make([]float64, NumClasses)
	for _, r := range rows {
		s := score[int(r)*NumClasses : int(r)*NumClasses+NumClasses]
		softmax(prob, s)
		w := weight[y[r]]
		for c := 0; c < NumClasses; c++ {
			yc := 0.0
			if y[r] == c {
				yc = 1
			}
			g[int(r)*NumClasses+c] = w * (prob[c] - yc)
			h[int(r)*NumClasses+c] = w * math.Max(prob[c]*(1-prob[c]), 1e-6)
		}
	}
	return g, h
}

func softmax(dst, s []float64) {
	mx := s[0]
	for _, v := range s[1:] {
		mx = math.Max(mx, v)
	}
	var sum float64
	for i, v := range s {
		dst[i] = math.Exp(v - mx)
		sum += dst[i]
	}
	for i := range dst {
		dst[i] /= sum
	}
}

// quantize computes per-feature bin edges from quantiles and bins every value.
func (t *trainer) quantize(x []float32) {
	col := make([]float32, t.n)
	for j := 0; j < t.f; j++ {
		for i := 0; i < t.n; i++ {
			col[i] = x[i*t.f+j]
		}
		slices.Sort(col)
		var edges []float32
		for b := 1; b < t.opt.Bins; b++ {
			v := col[b*(t.n-1)/t.opt.Bins]
			if len(edges) == 0 || v > edges[len(edges)-1] {
				edges = append(edges, v)
			}
		}
		if len(edges) > 0 && edges[len(edges)-1] >= col[t.n-1] {
			edges = edges[:len(edges)-1] // the last bin must not be empty
		}
		t.edges[j] = edges
		t.nb[j] = len(edges) + 1
		for i := 0; i < t.n; i++ {
			v := x[i*t.f+j]
			b, _ := slices.BinarySearch(edges, v) // first edge >= v: v <= edges[b]
			t.bins[i*t.f+j] = uint8(b)
		}
	}
}

func (t *trainer) histogram(rows []int32) [][]binStat {
	hist := make([][]binStat, t.f)
	for j := range hist {
		hist[j] = make([]binStat, t.nb[j])
	}
	w := t.opt.Workers
	var wg sync.WaitGroup
	for k := 0; k < w; k++ {
		lo, hi := k*t.f/w, (k+1)*t.f/w
		wg.Go(func() {
			for _, r := range rows {
				g, h := t.g[r], t.h[r]
				row := t.bins[int(r)*t.f : int(r)*t.f+t.f]
				for j := lo; j < hi; j++ {
					s := &hist[j][row[j]]
					s.g += g
					s.h += h
				}
			}
		})
	}
	wg.Wait()
	return hist
}

// grow adds the subtree for rows to tr and returns its node index. hist, when not nil, is the
// histogram of rows.
func (t *trainer) grow(tr *tree, rows []int32, hist [][]binStat, depth int) int32 {
	if hist == nil {
		hist = t.histogram(rows)
	}
	var G, H float64
	for _, s := range hist[0] {
		G += s.g
		H += s.h
	}
	idx := int32(len(tr.Nodes))
	leafValue := float32(-G / (H + t.opt.Lambda) * t.opt.LearningRate)
	tr.Nodes = append(tr.Nodes, node{Feat: -1, Value: leafValue})
	if depth >= t.opt.MaxDepth || H < 2*t.opt.MinHessian || len(rows) < 2 {
		return idx
	}
	bestF, bestB := t.bestSplit(hist, G, H)
	if bestF < 0 {
		return idx
	}
	// Partition rows in place: bin <= bestB goes left.
	i, k := 0, len(rows)-1
	for i <= k {
		if t.bins[int(rows[i])*t.f+bestF] <= uint8(bestB) {
			i++
		} else {
			rows[i], rows[k] = rows[k], rows[i]
			k--
		}
	}
	left, right := rows[:i], rows[i:]
	if len(left) == 0 || len(right) == 0 {
		return idx
	}
	slices.Sort(left)
	slices.Sort(right)
	// Build the smaller child's histogram; the larger one's is the parent's minus it.
	small, large := left, right
	if len(small) > len(large) {
		small, large = large, small
	}
	hs := t.histogram(small)
	hl := make([][]binStat, t.f)
	for j := range hl {
		hl[j] = make([]binStat, t.nb[j])
		for b := range hl[j] {
			hl[j][b] = binStat{hist[j][b].g - hs[j][b].g, hist[j][b].h - hs[j][b].h}
		}
	}
	hist = nil
	hLeft, hRight := hs, hl
	if len(left) > len(right) {
		hLeft, hRight = hl, hs
	}
	tr.Nodes[idx].Feat = int16(bestF)
	tr.Nodes[idx].Thr = t.edges[bestF][bestB]
	tr.Nodes[idx].bin = uint8(bestB)
	l := t.grow(tr, left, hLeft, depth+1)
	r := t.grow(tr, right, hRight, depth+1)
	tr.Nodes[idx].Left, tr.Nodes[idx].Right = l, r
	return idx
}

// bestSplit returns the feature and bin (bin <= b goes left) whose split of a node with
// histogram hist and gradient sums G, H gains the most, or -1, -1 when none gains or leaves
// each side MinHessian.
func (t *trainer) bestSplit(hist [][]binStat, G, H float64) (bestF, bestB int) {
	lam := t.opt.Lambda
	parent := G * G / (H + lam)
	bestGain := 1e-9
	bestF, bestB = -1, -1
	for j := 0; j < t.f; j++ {
		if t.skip[j] {
			continue
		}
		var gl, hl float64
		for b := 0; b < t.nb[j]-1; b++ {
			gl += hist[j][b].g
			hl += hist[j][b].h
			hr := H - hl
			if hl < t.opt.MinHessian || hr < t.opt.MinHessian {
				continue
			}
			gr := G - gl
			if gain := gl*gl/(hl+lam) + gr*gr/(hr+lam) - parent; gain > bestGain {
				bestGain, bestF, bestB = gain, j, b
			}
		}
	}
	return bestF, bestB
}

func (tr *tree) predictBinned(row []uint8) float32 {
	i := int32(0)
	for {
		nd := &tr.Nodes[i]
		if nd.Feat < 0 {
			return nd.Value
		}
		// Thr is edges[bin]; a row's bin <= bin exactly when its value <= Thr.
		if row[nd.Feat] <= nd.bin {
			i = nd.Left
		} else {
			i = nd.Right
		}
	}
}
