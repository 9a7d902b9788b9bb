package ecg

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// ModelVersion is the version of the model file format this package writes. It also reads
// version 1 files (70 features, no decision offsets), version 2 files (89 features), version
// 3 files (95 features), version 4 files (98 features, as now, but no linear model) and version
// 5 files (the linear model's probabilities averaged with the trees') and version 6 files (98
// features, the linear model combined in log space, as now), version 7 files (103 features,
// no supraventricular gate) and version 8 files (as now, but the gate, when there is one,
// applies to every beat) and version 9 files (as now, but a gate limited to runs leaves their
// onsets out).
const ModelVersion = 10

// modelFeatures is the number of features of each model file version; each is a prefix of
// the next, so older models give the same predictions as before.
var modelFeatures = map[int]int{1: numV1Features, 2: numV2Features, 3: numV3Features, 4: numV4Features, 5: numV4Features, 6: numV4Features, 7: numV7Features, 8: NumFeatures, 9: NumFeatures, 10: NumFeatures}

const modelMagic = "PLECGGBT"

// Limits when reading a model file.
const (
	maxModelTrees = 1 << 16
	maxTreeNodes  = 1 << 16
	maxMetaBytes  = 1 << 20
	// maxTreeDepth bounds a tree's depth (TrainOptions.MaxDepth): classifying walks every
	// tree as deep as the deepest.
	maxTreeDepth = 24
)

// ErrModelFormat marks a model file that is not a valid pulselake ECG model.
var ErrModelFormat = errors.New("invalid ecg model file")

// ModelMeta describes how a model was trained. It is stored as JSON in the model file.
type ModelMeta struct {
	Records     []string          `json:"records,omitempty"`
	Beats       int               `json:"beats"`
	ClassCounts [NumClasses]int   `json:"class_counts"`
	Options     TrainOptions      `json:"options"`
	Features    []string          `json:"features,omitempty"`
	Extra       map[string]string `json:"extra,omitempty"`
}

// Model is a trained gradient-boosted tree classifier. It is immutable once built or loaded
// and safe for concurrent use.
type Model struct {
	Version     int
	NumFeatures int
	Meta        ModelMeta
	// ens[0] uses every feature; ens[1], when present, only the window shape, for beats
	// without RR features; ens[2], when present, every feature but the morphology, for beats
	// with RR features but unknown morphology.
	ens []*ensemble
	// lin, when not nil (version 5 and later), is the linear model combined with ens[0]: its
	// probabilities averaged with the trees' (version 5), or its log-probabilities added to
	// the trees' scores (versions 6 and later, see linearModel.combine).
	lin *linearModel
}

// ensemble is one boosted tree ensemble: a score per class is its base plus the leaf values
// of the class's trees.
type ensemble struct {
	Base [NumClasses]float32
	// Offset is the decision rule: added to the class scores before the softmax and the
	// arg max (a prior shift tuned on training records only; zero in version 1 files).
	Offset [NumClasses]float32
	Trees  []tree

	// flat holds every tree's nodes with absolute child indices; roots[c] lists class c's roots.
	flat  []flatNode
	roots [NumClasses][]int32
	depth int // longest root-to-leaf path
}

// NumTrees returns the number of trees of all ensembles.
func (m *Model) NumTrees() int {
	n := 0
	for _, e := range m.ens {
		n += len(e.Trees)
	}
	return n
}

// HasShapeModel reports whether m has an ensemble for beats without RR features (and, in
// version 2 files, one for beats without morphology).
func (m *Model) HasShapeModel() bool { return len(m.ens) > 1 }

// flatNode is the compact inference form of a node (16 bytes): the two children of a split
// are adjacent at Child and Child+1. A leaf points to itself with an infinite threshold, so a
// walk of exactly depth steps from any root ends on its leaf without testing for leaves.
type flatNode struct {
	Thr   float32
	Feat  int16
	_     int16
	Child int32
	Value float32
}

func (m *ensemble) flatten() {
	m.flat = m.flat[:0]
	for c := range m.roots {
		m.roots[c] = m.roots[c][:0]
	}
	type pair struct{ old, new, depth int32 }
	var queue []pair
	m.depth = 0
	for _, t := range m.Trees {
		root := int32(len(m.flat))
		m.roots[t.Class] = append(m.roots[t.Class], root)
		m.flat = append(m.flat, flatNode{})
		queue = append(queue[:0], pair{0, root, 0})
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			nd := t.Nodes[p.old]
			m.depth = max(m.depth, int(p.depth))
			if nd.Feat < 0 {
				m.flat[p.new] = flatNode{Thr: float32(math.Inf(1)), Child: p.new, Value: nd.Value}
				continue
			}
			child := int32(len(m.flat))
			m.flat = append(m.flat, flatNode{}, flatNode{})
			m.flat[p.new] = flatNode{Thr: nd.Thr, Feat: nd.Feat, Child: child}
			queue = append(queue, pair{nd.Left, child, p.depth + 1}, pair{nd.Right, child + 1, p.depth + 1})
		}
	}
}

// Prediction is a classifier's output for one beat.
type Prediction struct {
	Class Class
	Probs [NumClasses]float64 // in the order N, S, V, F, Q
}

// Classifier classifies heartbeat windows. Implementations are safe for concurrent use.
type Classifier interface {
	// Classify classifies a beat window of WindowLen samples in [0, 1] (the ecg_beat form)
	// with its RR features (zero values when unknown, which lowers accuracy).
	Classify(beat []float64, rr RRFeatures) Prediction
}

// Classify implements Classifier. Beats shorter than WindowLen are zero-padded; extra samples
// are ignored.
func (m *Model) Classify(beat []float64, rr RRFeatures) Prediction {
	var w [WindowLen]float32
	for i := 0; i < WindowLen && i < len(beat); i++ {
		w[i] = float32(beat[i])
	}
	return m.ClassifyWindow(&w, rr)
}

// fourIntervals keeps only Pre, Post, Local and Average: what beats that come without their
// raw signal carry (CSV and NDJSON input, the KServe protocol).
func (rr RRFeatures) fourIntervals() RRFeatures {
	return RRFeatures{Pre: rr.Pre, Post: rr.Post, Local: rr.Local, Average: rr.Average}
}

// RRKnown reports whether rr holds all four intervals (all positive).
func (rr RRFeatures) RRKnown() bool {
	return rr.Pre > 0 && rr.Post > 0 && rr.Local > 0 && rr.Average > 0
}

// ClassifyWindow classifies a window without copying it. Beats whose RR features are not all
// known go to the shape-only ensemble, beats with RR features but unknown morphology to the
// ensemble without morphology, when the model has them.
func (m *Model) ClassifyWindow(w *[WindowLen]float32, rr RRFeatures) Prediction {
	var f [NumFeatures]float32
	e := m.ens[0]
	switch {
	case !rr.RRKnown() && len(m.ens) > 1:
		e, rr = m.ens[1], RRFeatures{}
	case !rr.Morph.Known && len(m.ens) > 2:
		e, rr = m.ens[2], rr.fourIntervals()
	}
	Features(f[:], w, rr)
	if e == m.ens[0] && m.lin != nil {
		return e.predictWith(&f, m.lin)
	}
	return e.predict(&f)
}

// predict classifies a feature vector with the ensemble alone.
func (m *ensemble) predict(f *[NumFeatures]float32) Prediction { return m.predictWith(f, nil) }

// predictWith classifies a feature vector with the ensemble and, when lin is not nil, with the
// linear model: in log space (versions 6 and later, linearModel.combine) or by averaging the probabilities,
// lin.Share of them the linear model's (version 5).
func (m *ensemble) predictWith(f *[NumFeatures]float32, lin *linearModel) Prediction {
	s := m.scores(f)
	for c := range s {
		s[c] += float64(m.Offset[c])
	}
	var p Prediction
	if lin != nil && lin.geometric {
		lp := lin.logProbs(f[:])
		s = lin.combine(&s, lp)
		if lin.gated(&s, &lp, f) {
			// The supraventricular gate: the linear model's call and probabilities.
			softmax(p.Probs[:], lp[:])
			p.Class = ClassS
			return p
		}
		lin = nil
	}
	softmax(p.Probs[:], s[:])
	if lin != nil {
		var lp [NumClasses]float64
		ls := lin.scores(f[:])
		softmax(lp[:], ls[:])
		a := float64(lin.Share)
		for c := range p.Probs {
			p.Probs[c] = (1-a)*p.Probs[c] + a*lp[c]
		}
	}
	for c := 1; c < NumClasses; c++ {
		if p.Probs[c] > p.Probs[p.Class] {
			p.Class = Class(c)
		}
	}
	return p
}

// scores returns the class scores of a feature vector, without the decision offsets.
func (m *ensemble) scores(f *[NumFeatures]float32) [NumClasses]float64 {
	var s [NumClasses]float64
	flat := m.flat
	for c := 0; c < NumClasses; c++ {
		acc := float64(m.Base[c])
		roots := m.roots[c]
		// Walk four trees in lockstep: independent loads overlap, and there are no branches
		// on the data (see flatNode).
		k := 0
		for ; k+4 <= len(roots); k += 4 {
			i0, i1, i2, i3 := roots[k], roots[k+1], roots[k+2], roots[k+3]
			for d := 0; d < m.depth; d++ {
				i0 = step(flat, f, i0)
				i1 = step(flat, f, i1)
				i2 = step(flat, f, i2)
				i3 = step(flat, f, i3)
			}
			acc += float64(flat[i0].Value) + float64(flat[i1].Value) + float64(flat[i2].Value) + float64(flat[i3].Value)
		}
		for ; k < len(roots); k++ {
			i := roots[k]
			for d := 0; d < m.depth; d++ {
				i = step(flat, f, i)
			}
			acc += float64(flat[i].Value)
		}
		s[c] = acc
	}
	return s
}

func step(flat []flatNode, f *[NumFeatures]float32, i int32) int32 {
	nd := &flat[i]
	var right int32 // branch-free: the compiler emits a conditional move
	if f[nd.Feat] > nd.Thr {
		right = 1
	}
	return nd.Child + right
}

// WriteTo writes the model in the pulselake ECG model format (see docs/ecg.md): a gzip stream
// holding the magic "PLECGGBT", uint32 version, uint32 length + JSON metadata, uint32 number of
// classes, uint32 number of features, uint32 number of ensembles, and per ensemble float32 base
// scores, float32 decision offsets (version 2), uint32 number of trees, then each tree as
// uint32 class, uint32 node count and nodes of (int16 feature, float32 threshold, int32 left,
// int32 right, float32 value); versions 5 and later then have uint32 1 or 0 (whether a linear model
// follows) and the linear model (see linearModel.write; version 6 adds its base share, version 7
// five features, version 8 two features and the supraventricular gate, version 9 the gate's
// scope, version 10 a scope that adds the onsets of runs). All integers and floats are
// little-endian. A model read from an older file is written in its version.
func (m *Model) WriteTo(w io.Writer) (int64, error) {
	version := m.Version
	if modelFeatures[version] != m.NumFeatures {
		version = 0
		for v := 1; v <= ModelVersion; v++ {
			if modelFeatures[v] == m.NumFeatures {
				version = v
			}
		}
	}
	if version == 0 {
		return 0, fmt.Errorf("writing model: %d features, want %d", m.NumFeatures, NumFeatures)
	}
	if version < 5 && m.lin != nil {
		return 0, fmt.Errorf("writing model: a version %d model cannot hold a linear model", version)
	}
	if version == 1 {
		for _, e := range m.ens {
			if e.Offset != [NumClasses]float32{} {
				return 0, errors.New("writing model: a version 1 model cannot hold decision offsets")
			}
		}
	}
	var buf bytes.Buffer
	le := binary.LittleEndian
	buf.WriteString(modelMagic)
	meta, err := json.Marshal(m.Meta)
	if err != nil {
		return 0, fmt.Errorf("encoding model metadata: %w", err)
	}
	put := func(v any) { _ = binary.Write(&buf, le, v) }
	put(uint32(version))
	put(uint32(len(meta)))
	buf.Write(meta)
	put(uint32(NumClasses))
	put(uint32(m.NumFeatures))
	put(uint32(len(m.ens)))
	for _, e := range m.ens {
		put(e.Base)
		if version >= 2 {
			put(e.Offset)
		}
		put(uint32(len(e.Trees)))
		for _, t := range e.Trees {
			put(uint32(t.Class))
			put(uint32(len(t.Nodes)))
			for _, nd := range t.Nodes {
				put(nd.Feat)
				put(nd.Thr)
				put(nd.Left)
				put(nd.Right)
				put(nd.Value)
			}
		}
	}
	if version >= 5 {
		if m.lin == nil {
			put(uint32(0))
		} else {
			put(uint32(1))
			if err := m.lin.write(&buf, version); err != nil {
				return 0, fmt.Errorf("writing model: %w", err)
			}
		}
	}
	cw := &countWriter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestCompression)
	if err != nil {
		return 0, fmt.Errorf("writing model: %w", err)
	}
	if _, err := zw.Write(buf.Bytes()); err != nil {
		return cw.n, fmt.Errorf("writing model: %w", err)
	}
	if err := zw.Close(); err != nil {
		return cw.n, fmt.Errorf("writing model: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// SaveModel writes m to path durably: a temporary file in the same directory, fsync, rename.
func SaveModel(path string, m *Model) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("saving model %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	bw := bufio.NewWriter(f)
	if _, err := m.WriteTo(bw); err != nil {
		f.Close()
		return fmt.Errorf("saving model %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("saving model %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing model %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("saving model %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("saving model %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming model into place %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable where the platform allows it
		d.Close()
	}
	return nil
}

// LoadModel reads a model file.
func LoadModel(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loading model: %w", err)
	}
	defer f.Close()
	m, err := ReadModel(f)
	if err != nil {
		return nil, fmt.Errorf("loading model %s: %w", path, err)
	}
	return m, nil
}

// ReadModel decodes a model written by WriteTo, checking every index and count.
func ReadModel(r io.Reader) (*Model, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
	}
	data, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
	}
	br := bytes.NewReader(data)
	le := binary.LittleEndian
	magic := make([]byte, len(modelMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != modelMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrModelFormat)
	}
	var version, metaLen uint32
	if err := binary.Read(br, le, &version); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
	}
	if version < 1 || version > ModelVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads versions 1 to %d", ErrModelFormat, version, ModelVersion)
	}
	if err := binary.Read(br, le, &metaLen); err != nil || metaLen > maxMetaBytes {
		return nil, fmt.Errorf("%w: metadata length", ErrModelFormat)
	}
	meta := make([]byte, metaLen)
	if _, err := io.ReadFull(br, meta); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
	}
	m := &Model{Version: int(version)}
	if err := json.Unmarshal(meta, &m.Meta); err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", ErrModelFormat, err)
	}
	var nc, nf uint32
	if err := binary.Read(br, le, &nc); err != nil || nc != NumClasses {
		return nil, fmt.Errorf("%w: number of classes", ErrModelFormat)
	}
	// Older models use a prefix of today's features, which has not changed.
	wantNF := uint32(modelFeatures[int(version)])
	if err := binary.Read(br, le, &nf); err != nil || nf != wantNF {
		return nil, fmt.Errorf("%w: %d features, version %d models have %d", ErrModelFormat, nf, version, wantNF)
	}
	m.NumFeatures = int(nf)
	var ne uint32
	if err := binary.Read(br, le, &ne); err != nil || ne < 1 || ne > 3 || (version == 1 && ne > 2) {
		return nil, fmt.Errorf("%w: number of ensembles", ErrModelFormat)
	}
	for range ne {
		e, err := readEnsemble(br, int(version), int(nf))
		if err != nil {
			return nil, err
		}
		m.ens = append(m.ens, e)
	}
	if version >= 5 {
		var hasLinear uint32
		if err := binary.Read(br, le, &hasLinear); err != nil || hasLinear > 1 {
			return nil, fmt.Errorf("%w: linear model flag", ErrModelFormat)
		}
		if hasLinear == 1 {
			lin, err := readLinear(br, int(version))
			if err != nil {
				return nil, err
			}
			m.lin = lin
		}
	}
	if br.Len() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrModelFormat, br.Len())
	}
	return m, nil
}

func readEnsemble(br *bytes.Reader, version, nf int) (*ensemble, error) {
	le := binary.LittleEndian
	m := &ensemble{}
	var nt uint32
	if err := binary.Read(br, le, &m.Base); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
	}
	if version >= 2 {
		if err := binary.Read(br, le, &m.Offset); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrModelFormat, err)
		}
	}
	for c := range m.Base {
		if !finite32(m.Base[c]) || !finite32(m.Offset[c]) {
			return nil, fmt.Errorf("%w: base score or offset not finite", ErrModelFormat)
		}
	}
	if err := binary.Read(br, le, &nt); err != nil || nt > maxModelTrees {
		return nil, fmt.Errorf("%w: number of trees", ErrModelFormat)
	}
	m.Trees = make([]tree, nt)
	for k := range m.Trees {
		var cls, nn uint32
		if err := binary.Read(br, le, &cls); err != nil || cls >= NumClasses {
			return nil, fmt.Errorf("%w: tree %d class", ErrModelFormat, k)
		}
		if err := binary.Read(br, le, &nn); err != nil || nn == 0 || nn > maxTreeNodes || int64(nn)*18 > int64(br.Len()) {
			return nil, fmt.Errorf("%w: tree %d node count", ErrModelFormat, k)
		}
		t := tree{Class: int(cls), Nodes: make([]node, nn)}
		// Each node but the root has at most one parent, so the nodes are a tree and not a
		// graph of shared subtrees (whose paths multiply), and no path is deeper than
		// maxTreeDepth. Parents come before their children, so a node's depth is known when
		// it is read.
		depth := make([]int8, nn) // 0: no parent (yet); else the node's depth
		for i := range t.Nodes {
			nd := &t.Nodes[i]
			for _, v := range []any{&nd.Feat, &nd.Thr, &nd.Left, &nd.Right, &nd.Value} {
				if err := binary.Read(br, le, v); err != nil {
					return nil, fmt.Errorf("%w: tree %d: %w", ErrModelFormat, k, err)
				}
			}
			if nd.Feat >= 0 {
				// Children come after their parent, so every walk ends at a leaf.
				if int(nd.Feat) >= nf || nd.Left <= int32(i) || nd.Right <= int32(i) || nd.Left >= int32(nn) || nd.Right >= int32(nn) {
					return nil, fmt.Errorf("%w: tree %d node %d: bad split", ErrModelFormat, k, i)
				}
				if nd.Left == nd.Right || depth[nd.Left] != 0 || depth[nd.Right] != 0 {
					return nil, fmt.Errorf("%w: tree %d node %d: a child with two parents", ErrModelFormat, k, i)
				}
				if int(depth[i]) >= maxTreeDepth {
					return nil, fmt.Errorf("%w: tree %d deeper than %d", ErrModelFormat, k, maxTreeDepth)
				}
				depth[nd.Left], depth[nd.Right] = depth[i]+1, depth[i]+1
			}
			if math.IsNaN(float64(nd.Value)) || math.IsNaN(float64(nd.Thr)) {
				return nil, fmt.Errorf("%w: tree %d node %d: NaN", ErrModelFormat, k, i)
			}
		}
		m.Trees[k] = t
	}
	m.flatten()
	return m, nil
}

func finite32(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

//go:embed default_model.bin
var defaultModelFile string // a string so that the embedded bytes cannot be modified

// DefaultModel decodes the model embedded in the binary, trained on all 22 DS1 records
// (see docs/ecg.md for how it was made and how good it is; Meta.Records lists them).
func DefaultModel() (*Model, error) {
	m, err := ReadModel(strings.NewReader(defaultModelFile))
	if err != nil {
		return nil, fmt.Errorf("loading the embedded default model: %w", err)
	}
	return m, nil
}
