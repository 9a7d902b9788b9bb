package anomaly

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Saved detector state. Every streaming detector can save its complete learned state
// (MarshalBinary) and a fresh detector built with the same method and parameters can take it
// back (UnmarshalBinary); it then scores the rest of a series exactly as the detector that
// saved it would have. The format is compact and versioned:
//
//	magic   "PLDS"
//	version 1 byte (stateVersion)
//	method  1 byte length + the method's name ("online", "holt-winters", "cv", "timeshift",
//	        "iforest"; "bootstrap" wraps holt-winters with the time of its first point)
//	body    the method's fields in a fixed order: integers as zig-zag varints, floats as their
//	        8 IEEE-754 bytes little-endian (so the state is restored bit for bit), slices as a
//	        varint length and their elements
//
// The parameters that shape the state (season length, window, shift, step, number of values)
// are part of the body and checked on restore. A state from another method, another version or
// other parameters is refused with an error wrapping ErrStateMismatch; the caller then starts
// the baseline afresh. A truncated or corrupt state is refused with ErrStateCorrupt.

// Stateful is a Streaming detector whose learned state can be saved and restored.
type Stateful interface {
	Streaming
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// Errors of UnmarshalBinary.
var (
	// ErrStateMismatch: the state was saved by another method, version or parameters.
	ErrStateMismatch = errors.New("saved detector state does not match the detector")
	// ErrStateCorrupt: the state is truncated or malformed.
	ErrStateCorrupt = errors.New("saved detector state is corrupt")
)

const (
	stateMagic   = "PLDS"
	stateVersion = 1
	// maxStateSlice bounds every slice length read from a state (a corrupt length must not
	// allocate gigabytes).
	maxStateSlice = 1 << 24
)

type stateWriter struct{ b []byte }

func newStateWriter(method string, size int) *stateWriter {
	w := &stateWriter{b: make([]byte, 0, size+len(stateMagic)+2+len(method))}
	w.b = append(w.b, stateMagic...)
	w.b = append(w.b, stateVersion, byte(len(method)))
	w.b = append(w.b, method...)
	return w
}

func (w *stateWriter) int(v int64) { w.b = binary.AppendVarint(w.b, v) }
func (w *stateWriter) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}
func (w *stateWriter) f64(v float64) {
	w.b = binary.LittleEndian.AppendUint64(w.b, math.Float64bits(v))
}
func (w *stateWriter) f64s(v []float64) {
	w.int(int64(len(v)))
	for _, x := range v {
		w.f64(x)
	}
}
func (w *stateWriter) bytes(v []byte) {
	w.int(int64(len(v)))
	w.b = append(w.b, v...)
}

// stateReader reads a state; the first error sticks and later reads return zero values.
type stateReader struct {
	b   []byte
	err error
}

// openState checks the header of data against method.
func openState(data []byte, method string) *stateReader {
	r := &stateReader{}
	if len(data) < len(stateMagic)+2 || string(data[:len(stateMagic)]) != stateMagic {
		r.err = fmt.Errorf("%w: no state header", ErrStateCorrupt)
		return r
	}
	data = data[len(stateMagic):]
	if data[0] != stateVersion {
		r.err = fmt.Errorf("%w: state format version %d, this build reads version %d", ErrStateMismatch, data[0], stateVersion)
		return r
	}
	n := int(data[1])
	if len(data) < 2+n {
		r.err = fmt.Errorf("%w: truncated header", ErrStateCorrupt)
		return r
	}
	if got := string(data[2 : 2+n]); got != method {
		r.err = fmt.Errorf("%w: state of method %q, detector is %q", ErrStateMismatch, got, method)
		return r
	}
	r.b = data[2+n:]
	return r
}

func (r *stateReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrStateCorrupt, fmt.Sprintf(format, args...))
	}
}

func (r *stateReader) int() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad integer")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) bool() bool {
	if r.err != nil {
		return false
	}
	if len(r.b) < 1 || r.b[0] > 1 {
		r.fail("bad flag")
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *stateReader) f64() float64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail("truncated")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

// count reads a non-negative count (bounded far below overflow).
func (r *stateReader) count(what string) int {
	v := r.int()
	if r.err == nil && (v < 0 || v >= 1<<62) {
		r.fail("bad %s %d", what, v)
		return 0
	}
	return int(v)
}

// length reads a slice length of elements of size bytes each.
func (r *stateReader) length(size int) int {
	n := r.int()
	if r.err == nil && (n < 0 || n > maxStateSlice || int(n)*size > len(r.b)) {
		r.fail("bad length %d", n)
		return 0
	}
	return int(n)
}

// f64sInto reads a slice of exactly len(dst) floats into dst.
func (r *stateReader) f64sInto(dst []float64, what string) {
	n := r.length(8)
	if r.err != nil {
		return
	}
	if n != len(dst) {
		r.err = fmt.Errorf("%w: %s has %d points, detector has %d", ErrStateMismatch, what, n, len(dst))
		return
	}
	for i := range dst {
		dst[i] = r.f64()
	}
}

func (r *stateReader) bytes() []byte {
	n := r.length(1)
	if r.err != nil {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// same checks a shaping parameter against the detector's.
func (r *stateReader) same(what string, saved, want int64) {
	if r.err == nil && saved != want {
		r.err = fmt.Errorf("%w: %s %d in the state, %d in the detector", ErrStateMismatch, what, saved, want)
	}
}

func (r *stateReader) sameF(what string, saved, want float64) {
	if r.err == nil && math.Float64bits(saved) != math.Float64bits(want) {
		r.err = fmt.Errorf("%w: %s %g in the state, %g in the detector", ErrStateMismatch, what, saved, want)
	}
}

// done checks that the whole state was read.
func (r *stateReader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}

func (w *stateWriter) time(started bool, t time.Time) {
	w.bool(started)
	if started {
		w.int(t.UnixNano())
	}
}

func (r *stateReader) time() (bool, time.Time) {
	if !r.bool() {
		return false, time.Time{}
	}
	return true, time.Unix(0, r.int())
}

// MarshalBinary saves the online detector's state (about 8 KiB with a daily profile).
func (d *Online) MarshalBinary() ([]byte, error) {
	w := newStateWriter("online", 8<<10)
	w.int(int64(d.o.Step))
	w.int(d.step)
	w.int(int64(d.ngaps))
	for _, g := range d.gaps[:d.ngaps] {
		w.int(g)
	}
	w.int(d.lastTime)
	w.bool(d.started)
	w.int(int64(d.n))
	for _, p := range d.pred {
		w.f64(p.level)
		w.f64(p.err)
		w.int(int64(p.over))
		w.f64(p.sign)
	}
	w.f64s(d.season)
	w.int(d.seasonBin)
	w.int(d.seasonT0)
	w.f64(d.perBin)
	w.f64(d.dayLevel)
	w.f64(d.dayRate)
	w.f64(d.last)
	w.bool(d.haveLast)
	w.f64(d.volFast)
	w.f64(d.volSlow)
	w.f64(d.mid)
	w.f64(d.long)
	w.f64(d.longVar)
	for i := range d.calib {
		c := &d.calib[i]
		for _, h := range c.hist {
			w.f64(h)
		}
		w.f64(c.total)
		w.f64(c.weight)
		w.f64(c.decay)
		w.f64(c.u)
		w.f64(c.sigma)
		w.f64(c.xi)
		w.int(int64(c.since))
	}
	for _, rs := range []*runs{&d.stuckRuns, &d.gapRuns} {
		for _, c := range rs.count {
			w.f64(c)
		}
		w.f64(rs.points)
		w.f64(rs.weight)
		w.f64(rs.decay)
	}
	w.int(int64(d.stuck))
	w.int(int64(d.missing))
	return w.b, nil
}

// UnmarshalBinary restores a state saved by MarshalBinary into d; on error d is unchanged.
func (d *Online) UnmarshalBinary(data []byte) error {
	r := openState(data, "online")
	var s Online
	s.o = d.o
	r.same("configured step (ns)", r.int(), int64(d.o.Step))
	s.step = int64(r.count("step"))
	s.ngaps = r.count("gap count")
	if s.ngaps > stepGaps {
		r.fail("bad gap count %d", s.ngaps)
		s.ngaps = 0
	}
	for i := range s.ngaps {
		s.gaps[i] = r.int()
	}
	s.lastTime = r.int()
	s.started = r.bool()
	s.n = r.count("point count")
	for i := range s.pred {
		p := &s.pred[i]
		p.level = r.f64()
		p.err = r.f64()
		p.over = int(r.int())
		p.sign = r.f64()
	}
	if n := r.length(8); n > 0 {
		s.season = make([]float64, n)
		for i := range s.season {
			s.season[i] = r.f64()
		}
	}
	s.seasonBin = r.int()
	s.seasonT0 = r.int()
	if r.err == nil && s.season != nil && (s.seasonBin <= 0 || int64(len(s.season)) > int64(day)/s.seasonBin+1) {
		r.fail("bad daily profile")
	}
	s.perBin = r.f64()
	s.dayLevel = r.f64()
	s.dayRate = r.f64()
	s.last = r.f64()
	s.haveLast = r.bool()
	s.volFast = r.f64()
	s.volSlow = r.f64()
	s.mid = r.f64()
	s.long = r.f64()
	s.longVar = r.f64()
	for i := range s.calib {
		c := &s.calib[i]
		for j := range c.hist {
			c.hist[j] = r.f64()
		}
		c.total = r.f64()
		c.weight = r.f64()
		c.decay = r.f64()
		c.u = r.f64()
		c.sigma = r.f64()
		c.xi = r.f64()
		c.since = r.count("refit count")
	}
	for _, rs := range []*runs{&s.stuckRuns, &s.gapRuns} {
		for j := range rs.count {
			rs.count[j] = r.f64()
		}
		rs.points = r.f64()
		rs.weight = r.f64()
		rs.decay = r.f64()
	}
	s.stuck = r.count("stuck run")
	s.missing = r.count("gap run")
	if err := r.done(); err != nil {
		return err
	}
	*d = s
	return nil
}

// MarshalBinary saves the Holt-Winters state: the recurrence and the time of the last point.
func (s *StreamHoltWinters) MarshalBinary() ([]byte, error) {
	h := s.hw
	w := newStateWriter("holt-winters", 16*len(h.seasonals)+96)
	w.int(int64(s.step))
	w.int(int64(h.o.SeasonLength))
	w.f64(h.o.Alpha)
	w.f64(h.o.Beta)
	w.f64(h.o.Gamma)
	w.f64(h.o.Delta)
	w.time(s.started, s.last)
	w.int(int64(h.i))
	w.f64(h.intercept)
	w.f64(h.slope)
	w.f64(h.nextPred)
	w.f64s(h.seasonals)
	w.f64s(h.deviations)
	return w.b, nil
}

// UnmarshalBinary restores a state saved by MarshalBinary; on error s is unchanged.
func (s *StreamHoltWinters) UnmarshalBinary(data []byte) error {
	r := openState(data, "holt-winters")
	h := s.hw
	r.same("step (ns)", r.int(), int64(s.step))
	r.same("season length", r.int(), int64(h.o.SeasonLength))
	r.sameF("alpha", r.f64(), h.o.Alpha)
	r.sameF("beta", r.f64(), h.o.Beta)
	r.sameF("gamma", r.f64(), h.o.Gamma)
	r.sameF("delta", r.f64(), h.o.Delta)
	started, last := r.time()
	n := HoltWinters{o: h.o, seasonals: make([]float64, len(h.seasonals)), deviations: make([]float64, len(h.deviations))}
	n.i = r.count("point index")
	n.intercept = r.f64()
	n.slope = r.f64()
	n.nextPred = r.f64()
	r.f64sInto(n.seasonals, "season")
	r.f64sInto(n.deviations, "deviations")
	if err := r.done(); err != nil {
		return err
	}
	*h = n
	s.started, s.last = started, last
	return nil
}

// MarshalBinary saves the cv window.
func (s *StreamCV) MarshalBinary() ([]byte, error) {
	m := s.m
	w := newStateWriter("cv", 8*len(m.ring)+64)
	w.int(int64(s.step))
	w.int(int64(m.o.Window))
	w.f64(m.o.WindowTolerance)
	w.f64(m.o.Threshold)
	w.time(s.started, s.last)
	w.int(int64(m.i))
	w.int(int64(m.valid))
	w.f64(m.sum)
	w.f64(m.sumSq)
	w.f64s(m.ring)
	return w.b, nil
}

// UnmarshalBinary restores a state saved by MarshalBinary; on error s is unchanged.
func (s *StreamCV) UnmarshalBinary(data []byte) error {
	r := openState(data, "cv")
	m := s.m
	r.same("step (ns)", r.int(), int64(s.step))
	r.same("window", r.int(), int64(m.o.Window))
	r.sameF("window tolerance", r.f64(), m.o.WindowTolerance)
	r.sameF("threshold", r.f64(), m.o.Threshold)
	started, last := r.time()
	n := MovingCV{o: m.o, ring: make([]float64, len(m.ring))}
	n.i = r.count("point index")
	n.valid = r.count("valid points")
	n.sum = r.f64()
	n.sumSq = r.f64()
	r.f64sInto(n.ring, "window")
	if r.err == nil && n.valid > len(n.ring) {
		r.fail("bad window counts")
	}
	if err := r.done(); err != nil {
		return err
	}
	*m = n
	s.started, s.last = started, last
	return nil
}

// MarshalBinary saves the timeshift ring: only its filled buckets, each as its bucket number
// and value.
func (s *StreamTimeShift) MarshalBinary() ([]byte, error) {
	filled := 0
	for _, b := range s.bucket {
		if b != math.MinInt64 {
			filled++
		}
	}
	w := newStateWriter("timeshift", 18*filled+48)
	w.int(s.step)
	w.int(s.lag)
	w.f64(s.threshold)
	w.int(int64(filled))
	for i, b := range s.bucket {
		if b != math.MinInt64 {
			w.int(b)
			w.f64(s.value[i])
		}
	}
	return w.b, nil
}

// UnmarshalBinary restores a state saved by MarshalBinary; on error s is unchanged.
func (s *StreamTimeShift) UnmarshalBinary(data []byte) error {
	r := openState(data, "timeshift")
	r.same("step (ns)", r.int(), s.step)
	r.same("shift (steps)", r.int(), s.lag)
	r.sameF("threshold", r.f64(), s.threshold)
	n := int64(len(s.bucket))
	filled := r.length(9)
	if r.err == nil && int64(filled) > n {
		r.fail("%d buckets in a ring of %d", filled, n)
	}
	bucket := make([]int64, n)
	value := make([]float64, n)
	for i := range bucket {
		bucket[i] = math.MinInt64
	}
	for range filled {
		b, v := r.int(), r.f64()
		if r.err != nil {
			break
		}
		if b == math.MinInt64 {
			r.fail("bad bucket")
			break
		}
		slot := floorMod(b, n)
		bucket[slot], value[slot] = b, v
	}
	if err := r.done(); err != nil {
		return err
	}
	s.bucket, s.value = bucket, value
	return nil
}

// MarshalBinary saves the Isolation Forest's window and the training window of the forest
// scoring now; the forest itself is rebuilt from it on restore (the same seed and data give the
// same forest). A refit requested but not finished is requested again after a restore.
func (s *StreamIForest) MarshalBinary() ([]byte, error) {
	fit := s.fitted.Load()
	var X []float64
	if fit != nil {
		X = fit.X
	}
	w := newStateWriter("iforest", 8*(len(s.ring)+len(X))+64)
	w.int(int64(s.d))
	w.int(int64(s.o.Window))
	w.int(int64(s.count))
	since := s.since
	if s.busy.Load() {
		since = s.o.RefitEvery
	}
	w.int(int64(since))
	w.f64s(s.ring)
	w.bool(fit != nil)
	if fit != nil {
		w.f64s(X)
	}
	return w.b, nil
}

// UnmarshalBinary restores a state saved by MarshalBinary, refitting the saved forest before
// it returns (milliseconds for the default 100 trees); on error s is unchanged. It must not be
// called concurrently with Observe.
func (s *StreamIForest) UnmarshalBinary(data []byte) error {
	r := openState(data, "iforest")
	r.same("number of values", r.int(), int64(s.d))
	r.same("window", r.int(), int64(s.o.Window))
	count, since := r.count("point count"), r.count("refit count")
	ring := make([]float64, len(s.ring))
	r.f64sInto(ring, "window")
	var fit *fitted
	if r.bool() {
		n := r.length(8)
		if r.err == nil && (n == 0 || n%s.d != 0 || n > len(ring)) {
			r.fail("bad training window of %d values", n)
		}
		X := make([]float64, n)
		for i := range X {
			X[i] = r.f64()
		}
		if r.err == nil {
			f, err := NewIsolationForest(s.o.Forest)
			if err == nil {
				err = f.Fit(X, s.d)
			}
			if err != nil {
				r.err = fmt.Errorf("%w: refitting the saved forest: %w", ErrStateCorrupt, err)
			}
			fit = &fitted{forest: f, X: X}
		}
	}
	if err := r.done(); err != nil {
		return err
	}
	s.ring, s.count, s.since = ring, count, since
	s.fitted.Store(fit)
	return nil
}

// MarshalBinary saves the wrapped detector with the time of the series' first point.
func (b *bootstrapped) MarshalBinary() ([]byte, error) {
	inner, ok := b.Streaming.(encoding.BinaryMarshaler)
	if !ok {
		return nil, fmt.Errorf("saving detector state: %T cannot be saved", b.Streaming)
	}
	in, err := inner.MarshalBinary()
	if err != nil {
		return nil, err
	}
	w := newStateWriter("bootstrap", len(in)+24)
	w.int(int64(b.span))
	w.time(!b.first.IsZero(), b.first)
	w.bytes(in)
	return w.b, nil
}

// UnmarshalBinary restores a state saved by MarshalBinary; on error b is unchanged.
func (b *bootstrapped) UnmarshalBinary(data []byte) error {
	inner, ok := b.Streaming.(encoding.BinaryUnmarshaler)
	if !ok {
		return fmt.Errorf("restoring detector state: %T cannot be restored", b.Streaming)
	}
	r := openState(data, "bootstrap")
	r.same("bootstrap span (ns)", r.int(), int64(b.span))
	started, first := r.time()
	in := r.bytes()
	if err := r.done(); err != nil {
		return err
	}
	if err := inner.UnmarshalBinary(in); err != nil {
		return err
	}
	if started {
		b.first = first
	} else {
		b.first = time.Time{}
	}
	return nil
}

var (
	_ Stateful = (*Online)(nil)
	_ Stateful = (*StreamHoltWinters)(nil)
	_ Stateful = (*StreamCV)(nil)
	_ Stateful = (*StreamTimeShift)(nil)
	_ Stateful = (*StreamIForest)(nil)
	_ Stateful = (*bootstrapped)(nil)
)
