package anomaly

import (
	"encoding"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// stateSeries is a noisy daily series at step with a few spikes, a level shift and a gap, so
// every part of a detector's state has been used by the time it is saved.
func stateSeries(n int, step time.Duration) ([]time.Time, []float64) {
	rng := rand.New(rand.NewPCG(7, 11))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ts := make([]time.Time, 0, n)
	vs := make([]float64, 0, n)
	for i := range n {
		if i%500 >= 490 { // a stretch of absent rows
			continue
		}
		t := t0.Add(time.Duration(i) * step)
		v := 70 + 8*math.Sin(2*math.Pi*float64(t.Sub(t0))/float64(24*time.Hour)) + rng.NormFloat64()
		if i > n*2/3 {
			v += 15
		}
		if i%97 == 0 {
			v += 40
		}
		if i%211 == 0 {
			v = math.NaN()
		}
		ts = append(ts, t)
		vs = append(vs, v)
	}
	return ts, vs
}

func compileOne(t *testing.T, spec DetectorSpec) *Detector {
	t.Helper()
	spec.Kind, spec.Value = "heart_rate", "bpm"
	ds, errs := CompileDetectors([]DetectorSpec{spec}, fieldCheck)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return ds[0]
}

func newDet(t *testing.T, d *Detector) Stateful {
	t.Helper()
	s, err := d.New()
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := s.(io.Closer); ok {
		t.Cleanup(func() { c.Close() })
	}
	st, ok := s.(Stateful)
	if !ok {
		t.Fatalf("%s detector %T cannot save its state", d.Method, s)
	}
	return st
}

// settle waits until an Isolation Forest has no refit in flight, so two detectors fed the same
// points score with the same forest.
func settle(t *testing.T, s Streaming) {
	f, ok := s.(*StreamIForest)
	if !ok {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.busy.Load() {
		if time.Now().After(deadline) {
			t.Fatal("isolation forest refit did not finish in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// justRefitted reports whether the last observation of an Isolation Forest requested a refit.
func justRefitted(s Streaming) bool {
	f, ok := s.(*StreamIForest)
	return ok && f.since == 0
}

var stateSpecs = []DetectorSpec{
	{Method: "online"},
	{Method: "online", Params: Params{Set: &OnlineParams{Step: Duration(time.Minute)}}},
	{Method: "holt-winters", Params: Params{Set: &HoltWintersParams{Seasonality: Duration(2 * time.Hour)}}},
	{Method: "cv", Params: Params{Set: &CVParams{Window: "30m", Threshold: new(0.05)}}},
	{Method: "timeshift", Params: Params{Set: &TimeShiftParams{Shift: Duration(time.Hour), Threshold: new(0.2)}}},
	{Method: "iforest", Params: Params{Set: &IForestParams{Window: "128", RefitEvery: new(32), MinFit: new(64), NEstimators: new(20)}}},
}

// TestStateRoundTrip: a detector saved mid-series and restored into a fresh one scores the rest
// of the series exactly (bit for bit) like one that never stopped, for every method.
func TestStateRoundTrip(t *testing.T) {
	ts, vs := stateSeries(3000, time.Minute)
	for _, spec := range stateSpecs {
		d := compileOne(t, spec)
		t.Run(d.Name+"-"+d.Step.String()+"-"+spec.Method, func(t *testing.T) {
			for _, cut := range []int{0, 1, 40, len(ts) / 2, len(ts) - 1} {
				whole, first := newDet(t, d), newDet(t, d)
				for i := range cut {
					whole.Observe(ts[i], vs[i:i+1])
					first.Observe(ts[i], vs[i:i+1])
					settle(t, whole)
					settle(t, first)
				}
				data, err := first.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				rest := newDet(t, d)
				if err := rest.UnmarshalBinary(data); err != nil {
					t.Fatalf("cut %d: restoring: %v", cut, err)
				}
				again, err := rest.MarshalBinary()
				if err != nil || string(again) != string(data) {
					t.Fatalf("cut %d: the restored state saves differently (%v)", cut, err)
				}
				flagged := 0
				for i := cut; i < len(ts); i++ {
					s1, f1 := whole.Observe(ts[i], vs[i:i+1])
					s2, f2 := rest.Observe(ts[i], vs[i:i+1])
					refit := justRefitted(whole) || justRefitted(rest)
					settle(t, whole)
					settle(t, rest)
					if refit {
						// Scored while a refit ran: with the old forest or, if the fit was
						// quicker than the score, the new one. Not comparable.
						continue
					}
					if math.Float64bits(s1) != math.Float64bits(s2) || f1 != f2 {
						t.Fatalf("cut %d point %d: uninterrupted %v %v, restored %v %v", cut, i, s1, f1, s2, f2)
					}
					if f1 {
						flagged++
					}
				}
				if cut == len(ts)/2 && flagged == 0 {
					t.Errorf("no anomaly flagged after the cut: the comparison proves little")
				}
			}
		})
	}
}

// TestStateRefused: a state of another method, other parameters, another version or a
// corrupt one is refused with the right error, and the detector keeps its own state.
func TestStateRefused(t *testing.T) {
	ts, vs := stateSeries(400, time.Minute)
	saved := make([][]byte, len(stateSpecs)) // by index of stateSpecs
	for j, spec := range stateSpecs {
		s := newDet(t, compileOne(t, spec))
		for i := range ts {
			s.Observe(ts[i], vs[i:i+1])
			settle(t, s)
		}
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		saved[j] = b
	}
	online := compileOne(t, DetectorSpec{Method: "online"})
	cases := []struct {
		name string
		det  *Detector
		data []byte
		want error
	}{
		{"cv into online", online, saved[3], ErrStateMismatch},
		{"online with a step into one without", online, saved[1], ErrStateMismatch},
		{"other season", compileOne(t, DetectorSpec{Method: "holt-winters", Params: Params{Set: &HoltWintersParams{Seasonality: Duration(3 * time.Hour)}}}),
			saved[2], ErrStateMismatch},
		{"other cv threshold", compileOne(t, DetectorSpec{Method: "cv", Params: Params{Set: &CVParams{Window: "30m", Threshold: new(0.06)}}}),
			saved[3], ErrStateMismatch},
		{"other shift", compileOne(t, DetectorSpec{Method: "timeshift", Params: Params{Set: &TimeShiftParams{Shift: Duration(2 * time.Hour), Threshold: new(0.2)}}}),
			saved[4], ErrStateMismatch},
		{"other iforest window", compileOne(t, DetectorSpec{Method: "iforest", Params: Params{Set: &IForestParams{Window: "256", NEstimators: new(20)}}}),
			saved[5], ErrStateMismatch},
		{"future version", online, append([]byte("PLDS\x02"), saved[0][5:]...), ErrStateMismatch},
		{"empty", online, nil, ErrStateCorrupt},
		{"not a state", online, []byte(`{"level":3}`), ErrStateCorrupt},
		{"truncated", online, saved[0][:200], ErrStateCorrupt},
		{"trailing bytes", online, append(append([]byte{}, saved[0]...), 0), ErrStateCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.data == nil && c.name != "empty" {
				t.Fatal("no saved state for the case")
			}
			s := newDet(t, c.det)
			before, _ := s.MarshalBinary()
			err := s.UnmarshalBinary(c.data)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if after, _ := s.MarshalBinary(); string(after) != string(before) {
				t.Error("a refused state changed the detector")
			}
		})
	}
}

// FuzzUnmarshalState: no input makes a detector's UnmarshalBinary panic, and an accepted state
// survives a save and restore unchanged.
func FuzzUnmarshalState(f *testing.F) {
	ts, vs := stateSeries(300, time.Minute)
	var dets []*Detector
	for _, spec := range stateSpecs {
		spec.Kind, spec.Value = "heart_rate", "bpm"
		ds, errs := CompileDetectors([]DetectorSpec{spec}, fieldCheck)
		if len(errs) > 0 {
			f.Fatal(errs)
		}
		d := ds[0]
		dets = append(dets, d)
		s, _ := d.New()
		for i := range ts {
			s.Observe(ts[i], vs[i:i+1])
		}
		if c, ok := s.(io.Closer); ok {
			c.Close()
		}
		b, _ := s.(encoding.BinaryMarshaler).MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range dets {
			s, _ := d.New()
			if err := s.(encoding.BinaryUnmarshaler).UnmarshalBinary(data); err == nil {
				// An accepted state is a state: saved, restored and saved again it is the same.
				once, _ := s.(encoding.BinaryMarshaler).MarshalBinary()
				s2, _ := d.New()
				if err := s2.(encoding.BinaryUnmarshaler).UnmarshalBinary(once); err != nil {
					t.Errorf("%s: a state saved from an accepted one is refused: %v", d.Method, err)
				} else if twice, _ := s2.(encoding.BinaryMarshaler).MarshalBinary(); string(twice) != string(once) {
					t.Errorf("%s: accepted state saves differently after a round trip", d.Method)
				}
				if c, ok := s2.(io.Closer); ok {
					c.Close()
				}
			}
			if c, ok := s.(io.Closer); ok {
				c.Close()
			}
		}
	})
}

// BenchmarkOnlineState: saving and restoring one online baseline (a checkpoint copies this
// under the detectors' lock).
func BenchmarkOnlineState(b *testing.B) {
	ts, vs := stateSeries(5000, time.Minute)
	d := NewOnline(OnlineOptions{})
	for i := range ts {
		d.Observe(ts[i], vs[i:i+1])
	}
	data, _ := d.MarshalBinary()
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			d.MarshalBinary()
		}
		b.ReportMetric(float64(len(data)), "bytes/state")
	})
	b.Run("unmarshal", func(b *testing.B) {
		r := NewOnline(OnlineOptions{})
		for b.Loop() {
			if err := r.UnmarshalBinary(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
