package anomaly

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
)

// eulerGamma is the Euler–Mascheroni constant used by the harmonic-number approximation in
// averagePathLength (the same constant numpy exposes as np.euler_gamma).
const eulerGamma = 0.5772156649015329

// featureThreshold is the spread below which a feature counts as constant inside a node
// (scikit-learn's FEATURE_THRESHOLD in sklearn/tree/_splitter.pyx).
const featureThreshold = 1e-7

// scoreBlock is the number of points pushed through every tree before moving on to the next
// block: a block of a few thousand rows stays in L2 while the trees (16 bytes per node) stay in L1.
const scoreBlock = 2048

// IForestOptions are the parameters of an Isolation Forest. The names and defaults are
// scikit-learn's IsolationForest ones; the zero value means the scikit-learn default.
type IForestOptions struct {
	// NEstimators is the number of trees (n_estimators). Default 100.
	NEstimators int
	// MaxSamples is the number of rows drawn for each tree (int max_samples). 0 means 'auto'
	// (min(256, n)) unless MaxSamplesFraction is set. A value above n is clipped to n, as
	// scikit-learn does after warning.
	MaxSamples int
	// MaxSamplesFraction, in (0, 1], draws int(MaxSamplesFraction·n) rows (float max_samples).
	MaxSamplesFraction float64
	// Contamination is the expected share of outliers in (0, 0.5]; 0 means 'auto', which
	// fixes the offset at -0.5 as in the original paper.
	Contamination float64
	// MaxFeatures is the number of features drawn (without replacement) for each tree; 0 means
	// all of them unless MaxFeaturesFraction is set.
	MaxFeatures int
	// MaxFeaturesFraction, in (0, 1], draws max(1, int(MaxFeaturesFraction·d)) features.
	MaxFeaturesFraction float64
	// Bootstrap draws each tree's rows with replacement instead of without.
	Bootstrap bool
	// Seed seeds the random generator (random_state). The same seed and data give the same forest
	// whatever Workers is.
	Seed uint64
	// Workers is the number of goroutines used by Fit and ScoreSamples; 0 means GOMAXPROCS.
	Workers int
}

// node is one node of a tree, stored in a flat slice. Rows with x[feature] > value go to
// left+1, the others to left. A leaf points to itself (left = its own index, value = +Inf), so
// every descent takes exactly maxDepth branch-free steps; the path length credited to a point
// that ends in a leaf (its depth plus c(leaf size)) is kept in pathLen.
type node struct {
	value   float64
	feature int32
	left    int32
}

// IsolationForest is a fitted (or empty) isolation forest. Fit is not safe for concurrent use;
// a fitted forest is read-only and its scoring methods are safe for concurrent use.
type IsolationForest struct {
	opts       IForestOptions
	nodes      []node    // every tree, each in its own region of 2·maxSamples-1 nodes
	pathLen    []float64 // for leaves: depth + c(leaf size); parallel to nodes
	roots      []int32   // index of each tree's root in nodes
	maxDepth   int
	nFeatures  int
	maxSamples int     // the resolved max_samples
	norm       float64 // NEstimators · c(maxSamples)
	offset     float64 // offset_
	fitted     bool
}

// NewIsolationForest validates opts and returns an unfitted forest.
func NewIsolationForest(opts IForestOptions) (*IsolationForest, error) {
	if opts.NEstimators == 0 {
		opts.NEstimators = 100
	}
	switch {
	case opts.NEstimators < 0:
		return nil, fmt.Errorf("%w: n_estimators must be positive, got %d", ErrInvalidParam, opts.NEstimators)
	case opts.MaxSamples < 0:
		return nil, fmt.Errorf("%w: max_samples must be positive, got %d", ErrInvalidParam, opts.MaxSamples)
	case opts.MaxSamplesFraction < 0 || opts.MaxSamplesFraction > 1 || math.IsNaN(opts.MaxSamplesFraction):
		return nil, fmt.Errorf("%w: max_samples as a fraction must be in (0, 1], got %g", ErrInvalidParam, opts.MaxSamplesFraction)
	case opts.MaxSamples > 0 && opts.MaxSamplesFraction > 0:
		return nil, fmt.Errorf("%w: give max_samples either as a count or as a fraction, not both", ErrInvalidParam)
	case opts.Contamination < 0 || opts.Contamination > 0.5 || math.IsNaN(opts.Contamination):
		return nil, fmt.Errorf("%w: contamination must be 'auto' or in (0, 0.5], got %g", ErrInvalidParam, opts.Contamination)
	case opts.MaxFeatures < 0:
		return nil, fmt.Errorf("%w: max_features must be positive, got %d", ErrInvalidParam, opts.MaxFeatures)
	case opts.MaxFeaturesFraction < 0 || opts.MaxFeaturesFraction > 1 || math.IsNaN(opts.MaxFeaturesFraction):
		return nil, fmt.Errorf("%w: max_features as a fraction must be in (0, 1], got %g", ErrInvalidParam, opts.MaxFeaturesFraction)
	case opts.Workers < 0:
		return nil, fmt.Errorf("%w: workers must not be negative, got %d", ErrInvalidParam, opts.Workers)
	}
	return &IsolationForest{opts: opts}, nil
}

// averagePathLength is c(n), the average path length of an unsuccessful search in a binary
// search tree of n points, with scikit-learn's conventions c(0) = c(1) = 0 and c(2) = 1:
//
//	c(n) = 2(ln(n-1) + γ) - 2(n-1)/n   for n > 2.
func averagePathLength(n int) float64 {
	switch {
	case n <= 1:
		return 0
	case n == 2:
		return 1
	}
	f := float64(n)
	return 2*(math.Log(f-1)+eulerGamma) - 2*(f-1)/f
}

// Offset returns offset_: -0.5 for contamination 'auto', else the contamination percentile of
// the training scores.
func (f *IsolationForest) Offset() float64 { return f.offset }

// MaxSamples returns the resolved max_samples of the fitted forest.
func (f *IsolationForest) MaxSamples() int { return f.maxSamples }

// NumFeatures returns the number of features the forest was fitted on.
func (f *IsolationForest) NumFeatures() int { return f.nFeatures }

func (f *IsolationForest) workers() int {
	if f.opts.Workers > 0 {
		return f.opts.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// Fit grows the forest on X, n rows of d features stored row-major (len(X) = n·d). With a
// contamination fraction it scores X to set the offset, as scikit-learn does.
func (f *IsolationForest) Fit(X []float64, d int) error {
	if f.opts.Contamination == 0 {
		return f.fit(X, d)
	}
	_, err := f.FitScoreSamples(X, d, nil)
	return err
}

// FitScoreSamples fits the forest on X and returns score_samples of the training rows in dst
// (grown as needed), scoring X once for both the offset and the result.
func (f *IsolationForest) FitScoreSamples(X []float64, d int, dst []float64) ([]float64, error) {
	if err := f.fit(X, d); err != nil {
		return dst, err
	}
	dst = f.ScoreSamples(X, dst)
	if f.opts.Contamination > 0 {
		f.offset = percentile(dst, 100*f.opts.Contamination)
	}
	return dst, nil
}

func (f *IsolationForest) fit(X []float64, d int) error {
	if d <= 0 {
		return fmt.Errorf("%w: need at least one feature", ErrInvalidParam)
	}
	if len(X)%d != 0 {
		return fmt.Errorf("%w: %d values do not form rows of %d features", ErrInvalidParam, len(X), d)
	}
	n := len(X) / d
	if n == 0 {
		return fmt.Errorf("%w: no rows to fit", ErrInvalidParam)
	}
	for i, v := range X {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: row %d feature %d is %g; isolation forest needs finite values", ErrInvalidParam, i/d, i%d, v)
		}
	}
	ms := n
	switch {
	case f.opts.MaxSamplesFraction > 0:
		ms = int(f.opts.MaxSamplesFraction * float64(n))
	case f.opts.MaxSamples > 0:
		ms = min(f.opts.MaxSamples, n)
	default:
		ms = min(256, n)
	}
	if ms < 1 {
		return fmt.Errorf("%w: max_samples resolves to %d rows out of %d", ErrInvalidParam, ms, n)
	}
	mf := d
	switch {
	case f.opts.MaxFeaturesFraction > 0:
		mf = max(1, int(f.opts.MaxFeaturesFraction*float64(d)))
	case f.opts.MaxFeatures > 0:
		if f.opts.MaxFeatures > d {
			return fmt.Errorf("%w: max_features %d exceeds the %d features", ErrInvalidParam, f.opts.MaxFeatures, d)
		}
		mf = f.opts.MaxFeatures
	}
	maxDepth := int(math.Ceil(math.Log2(float64(max(ms, 2)))))
	per := 2*ms - 1 // a binary tree with at most ms leaves
	T := f.opts.NEstimators
	f.nodes = slices.Grow(f.nodes[:0], T*per)[:T*per]
	f.pathLen = slices.Grow(f.pathLen[:0], T*per)[:T*per]
	f.maxDepth = maxDepth
	f.roots = slices.Grow(f.roots[:0], T)[:T]
	f.nFeatures, f.maxSamples = d, ms
	f.norm = float64(T) * averagePathLength(ms)
	f.offset = -0.5

	w := min(f.workers(), T)
	var wg sync.WaitGroup
	next := make(chan int, T)
	for t := range T {
		next <- t
	}
	close(next)
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := newTreeBuilder(X, n, d, ms, mf, maxDepth)
			for t := range next {
				base := int32(t * per)
				f.roots[t] = base
				b.build(f.nodes[base:base+int32(per)], f.pathLen[base:base+int32(per)], base, f.opts.Seed, uint64(t), f.opts.Bootstrap)
			}
		}()
	}
	wg.Wait()
	f.fitted = true
	return nil
}

// treeBuilder holds the scratch space of one goroutine growing trees; nothing is allocated
// per node.
type treeBuilder struct {
	X            []float64
	n, d, ms, mf int
	maxDepth     int
	rows         []int32 // the rows of the tree being built, partitioned in place
	feats        []int32 // the features drawn for this tree
	perm         []int32 // scratch permutation of feats for the split search
	stack        []buildItem
	seen         map[int32]struct{}
	all          []int32 // scratch index for large subsamples
	rng          *rand.Rand
	src          *rand.PCG
}

type buildItem struct {
	idx, lo, hi, depth int32
}

func newTreeBuilder(X []float64, n, d, ms, mf, maxDepth int) *treeBuilder {
	src := rand.NewPCG(0, 0)
	return &treeBuilder{
		X: X, n: n, d: d, ms: ms, mf: mf, maxDepth: maxDepth,
		rows:  make([]int32, ms),
		feats: make([]int32, d),
		perm:  make([]int32, mf),
		stack: make([]buildItem, 0, 2*maxDepth+2),
		seen:  make(map[int32]struct{}, ms),
		rng:   rand.New(src),
		src:   src,
	}
}

// build grows one tree into nodes (whose first element has global index base): it draws the
// tree's rows and features, then splits nodes depth-first from an explicit stack.
func (b *treeBuilder) build(nodes []node, pathLen []float64, base int32, seed, tree uint64, bootstrap bool) {
	b.src.Seed(seed, 0x9e3779b97f4a7c15^tree)
	b.sampleRows(bootstrap)
	feats := b.sampleFeatures()

	used := int32(1)
	b.stack = append(b.stack[:0], buildItem{idx: 0, lo: 0, hi: int32(b.ms), depth: 0})
	for len(b.stack) > 0 {
		it := b.stack[len(b.stack)-1]
		b.stack = b.stack[:len(b.stack)-1]
		rows := b.rows[it.lo:it.hi]
		nd := &nodes[it.idx]
		feat, lo, hi := int32(-1), 0.0, 0.0
		if len(rows) >= 2 && int(it.depth) < b.maxDepth {
			feat, lo, hi = b.splitFeature(rows, feats)
		}
		if feat < 0 {
			nd.feature = 0
			nd.value = math.Inf(1)
			nd.left = base + it.idx
			pathLen[it.idx] = float64(it.depth) + averagePathLength(len(rows))
			continue
		}
		thr := lo + b.rng.Float64()*(hi-lo)
		if thr >= hi {
			thr = lo
		}
		mid := it.lo + int32(b.partition(rows, feat, thr))
		left := used
		used += 2
		nd.feature = feat
		nd.value = thr
		nd.left = base + left
		b.stack = append(b.stack,
			buildItem{idx: left + 1, lo: mid, hi: it.hi, depth: it.depth + 1},
			buildItem{idx: left, lo: it.lo, hi: mid, depth: it.depth + 1})
	}
}

// sampleRows fills b.rows with the tree's training rows: ms drawn with replacement for
// bootstrap, else a uniform subset of size ms.
func (b *treeBuilder) sampleRows(bootstrap bool) {
	rng := b.rng
	switch {
	case bootstrap:
		for i := range b.rows {
			b.rows[i] = int32(rng.IntN(b.n))
		}
	case b.ms == b.n:
		for i := range b.rows {
			b.rows[i] = int32(i)
		}
	case b.ms*4 > b.n:
		// Partial Fisher–Yates over a full index; cheap when ms is a large share of n.
		if len(b.all) != b.n {
			b.all = make([]int32, b.n)
		}
		all := b.all
		for i := range all {
			all[i] = int32(i)
		}
		for i := range b.ms {
			j := i + rng.IntN(b.n-i)
			all[i], all[j] = all[j], all[i]
		}
		copy(b.rows, all[:b.ms])
	default:
		// Floyd's algorithm: ms distinct rows out of n in O(ms).
		clear(b.seen)
		k := 0
		for j := b.n - b.ms; j < b.n; j++ {
			t := int32(rng.IntN(j + 1))
			if _, dup := b.seen[t]; dup {
				t = int32(j)
			}
			b.seen[t] = struct{}{}
			b.rows[k] = t
			k++
		}
	}
}

// sampleFeatures returns the tree's features: mf of d without replacement.
func (b *treeBuilder) sampleFeatures() []int32 {
	for i := range b.feats {
		b.feats[i] = int32(i)
	}
	if b.mf < b.d {
		for i := range b.mf {
			j := i + b.rng.IntN(b.d-i)
			b.feats[i], b.feats[j] = b.feats[j], b.feats[i]
		}
	}
	return b.feats[:b.mf]
}

// splitFeature draws features in random order until one is not constant over rows, like
// scikit-learn's random splitter with max_features=1, and returns it with its range. It returns
// feature -1 when every feature is constant.
func (b *treeBuilder) splitFeature(rows, feats []int32) (feat int32, lo, hi float64) {
	X, d := b.X, b.d
	perm := b.perm
	copy(perm, feats)
	for k := len(perm); k > 0; k-- {
		j := b.rng.IntN(k)
		c := perm[j]
		perm[j] = perm[k-1]
		lo, hi = math.Inf(1), math.Inf(-1)
		for _, r := range rows {
			v := X[int(r)*d+int(c)]
			lo = min(lo, v)
			hi = max(hi, v)
		}
		if hi > lo+featureThreshold {
			return c, lo, hi
		}
	}
	return -1, lo, hi
}

// partition reorders rows so those with x[feat] <= thr come first and returns their count.
func (b *treeBuilder) partition(rows []int32, feat int32, thr float64) int {
	X, d := b.X, b.d
	i, j := 0, len(rows)-1
	for i <= j {
		if X[int(rows[i])*d+int(feat)] <= thr {
			i++
		} else {
			rows[i], rows[j] = rows[j], rows[i]
			j--
		}
	}
	return i
}

// ScoreSamples returns scikit-learn's score_samples for the n rows of X (row-major, d features
// as fitted) in dst, grown as needed: -2^(-E[h(x)]/c(max_samples)), in [-1, 0); lower is more
// abnormal. It allocates nothing when dst has room.
func (f *IsolationForest) ScoreSamples(X []float64, dst []float64) []float64 {
	d := f.nFeatures
	n := len(X) / d
	dst = slices.Grow(dst[:0], n)[:n]
	clear(dst)
	blocks := (n + scoreBlock - 1) / scoreBlock
	w := min(f.workers(), blocks)
	if w <= 1 {
		for b := range blocks {
			f.scoreBlock(X, dst, b)
		}
	} else {
		var wg sync.WaitGroup
		var mu sync.Mutex
		next := 0
		for range w {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					b := next
					next++
					mu.Unlock()
					if b >= blocks {
						return
					}
					f.scoreBlock(X, dst, b)
				}
			}()
		}
		wg.Wait()
	}
	return dst
}

// scoreBlock accumulates path lengths of block b over all trees, then maps them to scores.
// Descents are branch-free and eight points go down a tree together, so the CPU overlaps
// their dependent loads instead of stalling on mispredicted branches.
func (f *IsolationForest) scoreBlock(X, dst []float64, b int) {
	d := f.nFeatures
	lo := b * scoreBlock
	hi := min(lo+scoreBlock, len(dst))
	out := dst[lo:hi]
	nodes, pathLen, depth := f.nodes, f.pathLen, f.maxDepth
	const lanes = 8
	for _, root := range f.roots {
		i := 0
		for ; i+lanes <= len(out); i += lanes {
			var k [lanes]int32
			for j := range k {
				k[j] = root
			}
			base := (lo + i) * d
			if d == 1 {
				xs := X[base : base+lanes]
				for range depth {
					for j := range k {
						nd := &nodes[k[j]]
						var c int32
						if xs[j] > nd.value {
							c = 1
						}
						k[j] = nd.left + c
					}
				}
			} else {
				xs := X[base : base+lanes*d]
				for range depth {
					for j := range k {
						nd := &nodes[k[j]]
						var c int32
						if xs[j*d+int(nd.feature)] > nd.value {
							c = 1
						}
						k[j] = nd.left + c
					}
				}
			}
			for j := range k {
				out[i+j] += pathLen[k[j]]
			}
		}
		for ; i < len(out); i++ {
			out[i] += f.descend(root, X[(lo+i)*d:(lo+i+1)*d])
		}
	}
	for i, h := range out {
		out[i] = -math.Exp2(-h / f.norm)
	}
}

// descend returns the path length of x in the tree rooted at root.
func (f *IsolationForest) descend(root int32, x []float64) float64 {
	k := root
	for range f.maxDepth {
		nd := &f.nodes[k]
		var c int32
		if x[nd.feature] > nd.value {
			c = 1
		}
		k = nd.left + c
	}
	return f.pathLen[k]
}

// ScoreOne returns score_samples of one row without allocating.
func (f *IsolationForest) ScoreOne(x []float64) float64 {
	var h float64
	for _, root := range f.roots {
		h += f.descend(root, x)
	}
	return -math.Exp2(-h / f.norm)
}

// DecisionFunction returns score_samples - offset_ for each row in dst: negative values are
// outliers.
func (f *IsolationForest) DecisionFunction(X []float64, dst []float64) []float64 {
	dst = f.ScoreSamples(X, dst)
	for i := range dst {
		dst[i] -= f.offset
	}
	return dst
}

// Predict returns -1 for outliers (decision_function < 0) and 1 for inliers, in dst.
func (f *IsolationForest) Predict(X []float64, dst []int8) []int8 {
	s := f.ScoreSamples(X, nil)
	n := len(s)
	dst = slices.Grow(dst[:0], n)[:n]
	for i, v := range s {
		dst[i] = 1
		if v-f.offset < 0 {
			dst[i] = -1
		}
	}
	return dst
}

// percentile is numpy's percentile with linear interpolation (the default method) of xs at
// q in [0, 100]. xs is not modified.
func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	pos := q / 100 * float64(len(s)-1)
	lo := int(math.Floor(pos))
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	frac := pos - float64(lo)
	// numpy's _lerp: a + (b-a)·t, computed from the upper end when t >= 0.5.
	a, b := s[lo], s[lo+1]
	diff := b - a
	if frac >= 0.5 {
		return b - diff*(1-frac)
	}
	return a + diff*frac
}
