package ecg

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// signalReadings splits x (360 Hz) into ecg readings of chunk samples from start.
func signalReadings(x []float64, chunk int, start time.Time) []reading.Reading {
	var out []reading.Reading
	for i := 0; i < len(x); i += chunk {
		end := min(i+chunk, len(x))
		out = append(out, reading.Reading{Subject: "p1", Device: "holter-1", Kind: KindSignal,
			Time:    start.Add(time.Duration(float64(i) / 360 * float64(time.Second))),
			Values:  map[string]float64{"fs": 360},
			Samples: x[i:end]})
	}
	return out
}

func TestLiveSignalReadings(t *testing.T) {
	dir := needData(t)
	x := recordSignal(t, dir, "208")[:360*300] // five minutes
	ref, err := RecordBeats(dir, "208")
	if err != nil {
		t.Fatal(err)
	}
	// The same signal pushed at once into a BeatStream gives the same beats as 10 s readings.
	whole := NewBeatStream(360)
	var want []StreamBeat
	for _, v := range x {
		want = whole.Push(v, want)
	}
	l := NewLive(LiveOptions{})
	rs := signalReadings(x, 3600, t0)
	var got []LiveBeat
	for i := range rs {
		id := rs[i].Identity()
		got = l.Beats(&rs[i], id, t0, got)
	}
	if len(got) != len(want) || len(got) < 300 {
		t.Fatalf("%d live beats, %d from one BeatStream", len(got), len(want))
	}
	for i := range got {
		wantTime := t0.Add(time.Duration(float64(want[i].Sample) / 360 * float64(time.Second))).Round(time.Microsecond)
		if !got[i].Time.Equal(wantTime) || got[i].Window != want[i].Samples || got[i].RR != want[i].RR {
			t.Fatalf("beat %d differs: time %v want %v", i, got[i].Time, wantTime)
		}
		// The source is the reading holding the R peak.
		chunk := int(want[i].Sample / 3600)
		if got[i].Source != rs[chunk].Identity() || got[i].Kind != KindSignal {
			t.Fatalf("beat %d at sample %d: source %s, want reading %d", i, want[i].Sample, got[i].Source, chunk)
		}
		if !got[i].RR.RRKnown() && i > 0 {
			t.Fatalf("beat %d has no RR features", i)
		}
	}
	// Beat times match the reference R peaks.
	var refPk, det []int64
	for _, b := range ref {
		if b.Sample < int64(len(x)) {
			refPk = append(refPk, b.Sample)
		}
	}
	for _, b := range got {
		det = append(det, int64(b.Time.Sub(t0).Seconds()*360+0.5))
	}
	mr := MatchBeats(refPk, det, 54)
	if mr.Sensitivity() < 0.99 || mr.PPV() < 0.97 {
		t.Errorf("live beats vs reference: Se %.4f +P %.4f", mr.Sensitivity(), mr.PPV())
	}
	if d, s := l.Devices(); d != 1 || s != 1 {
		t.Errorf("Devices() = %d, %d; want 1, 1", d, s)
	}
}

func TestLiveSignalGapRestarts(t *testing.T) {
	dir := needData(t)
	x := recordSignal(t, dir, "101")[:360*60]
	rs := signalReadings(x, 3600, t0)
	l := NewLive(LiveOptions{})
	var before []LiveBeat
	for i := 0; i < 3; i++ {
		before = l.Beats(&rs[i], rs[i].Identity(), t0, before)
	}
	// Readings 3 and 4 are lost: the stream restarts at reading 5, whose first beats need
	// the detector's learning period again; no beat may be placed inside the gap.
	var after []LiveBeat
	for i := 5; i < len(rs); i++ {
		after = l.Beats(&rs[i], rs[i].Identity(), t0, after)
	}
	if len(before) == 0 || len(after) == 0 {
		t.Fatalf("beats before the gap %d, after %d", len(before), len(after))
	}
	gapStart, gapEnd := rs[3].Time, rs[5].Time
	for _, b := range append(before, after...) {
		if !b.Time.Before(gapStart) && b.Time.Before(gapEnd) {
			t.Errorf("beat at %v inside the gap %v..%v", b.Time, gapStart, gapEnd)
		}
	}
	if after[0].Time.Before(gapEnd) {
		t.Errorf("first beat after the gap at %v, before the stream restarted at %v", after[0].Time, gapEnd)
	}
	if _, s := l.Devices(); s != 1 {
		t.Errorf("%d sample streams after a restart, want 1", s)
	}
	// Another sampling rate also restarts the stream.
	r := rs[len(rs)-1]
	r.Time = r.Time.Add(10 * time.Second)
	r.Values = map[string]float64{"fs": 250}
	l.Beats(&r, r.Identity(), t0, nil)
	if _, s := l.Devices(); s != 1 {
		t.Errorf("%d sample streams after a rate change, want 1", s)
	}
}

func TestLiveBeatReadingsAndRuns(t *testing.T) {
	l := NewLive(LiveOptions{})
	samples := make([]float64, WindowLen)
	for i := range samples {
		samples[i] = float64(i) / WindowLen
	}
	r := reading.Reading{Subject: "p", Device: "d", Kind: KindBeat, Time: t0, Samples: samples, Text: map[string]string{"label": "V"}}
	got := l.Beats(&r, r.Identity(), t0, nil)
	if len(got) != 1 || got[0].Label != "V" || got[0].RR.RRKnown() || got[0].Window[100] != float32(samples[100]) || !got[0].Time.Equal(t0) || got[0].Source != r.Identity() {
		t.Fatalf("ecg_beat reading gave %+v", got)
	}
	other := reading.Reading{Subject: "p", Device: "d", Kind: "heart_rate", Time: t0, Values: map[string]float64{"bpm": 60}}
	pred := reading.Reading{Subject: "p", Device: "d", Kind: PredictionKindName, Time: t0}
	if n := len(l.Beats(&other, other.Identity(), t0, nil)) + len(l.Beats(&pred, pred.Identity(), t0, nil)); n != 0 {
		t.Errorf("other kinds gave %d beats", n)
	}
	var runs []int
	for _, c := range []Class{ClassN, ClassV, ClassV, ClassV, ClassN, ClassV} {
		runs = append(runs, l.Record("p", "d", c))
	}
	if fmt.Sprint(runs) != "[1 1 2 3 1 1]" {
		t.Errorf("runs %v", runs)
	}
}

func TestLiveBounds(t *testing.T) {
	l := NewLive(LiveOptions{MaxDevices: 3, MaxStreams: 2, IdleTimeout: time.Minute})
	x := make([]float64, 360)
	for i := 0; i < 5; i++ {
		r := reading.Reading{Subject: "p", Device: fmt.Sprint("d", i), Kind: KindSignal, Time: t0, Values: map[string]float64{"fs": 360}, Samples: x}
		l.Beats(&r, r.Identity(), t0.Add(time.Duration(i)*time.Second), nil)
		d, s := l.Devices()
		if d > 3 || s > 2 {
			t.Fatalf("after %d devices: %d devices, %d streams", i+1, d, s)
		}
	}
	// The most recent device keeps its state; the oldest ones lost theirs.
	if l.Record("p", "d4", ClassV) != 1 || l.Record("p", "d4", ClassV) != 2 {
		t.Error("the newest device lost its run")
	}
	if _, ok := l.devices[devKey{"p", "d0"}]; ok {
		t.Error("the oldest device was not evicted")
	}
	if n := l.Evict(t0.Add(2 * time.Minute)); n != 3 {
		t.Errorf("Evict dropped %d idle devices, want 3", n)
	}
	if d, s := l.Devices(); d != 0 || s != 0 {
		t.Errorf("after eviction: %d devices, %d streams", d, s)
	}
}

func TestPredictionReading(t *testing.T) {
	reg, err := reading.NewRegistry(PredictionKind())
	if err != nil {
		t.Fatal(err)
	}
	p := reading.NewParser(reg)
	lp := LivePrediction{Subject: "p", Device: "d", Time: t0, Class: "V", Probs: map[string]float64{"N": 0.1, "S": 0, "V": 0.85, "F": 0.05, "Q": 0},
		Score: 0.85, Run: 3, Model: "builtin", Label: "V", Kind: KindBeat, Source: reading.ID{1}.String()}
	r := lp.Reading()
	got, errs := p.Parse(r.AppendJSON(nil))
	if errs != nil {
		t.Fatalf("prediction reading rejected: %v", errs)
	}
	if got.Text["class"] != "V" || got.Values["run"] != 3 || got.Values["p_v"] != 0.85 || got.Values["rr"] != 0 || got.Identity() != r.Identity() {
		t.Errorf("round trip: %+v", got)
	}
	lp.Class = "X"
	bad := lp.Reading()
	if _, errs := p.Parse(bad.AppendJSON(nil)); errs == nil {
		t.Error("class X accepted")
	}
}

func TestLocalMatchesModel(t *testing.T) {
	l, err := NewLocal("")
	if err != nil {
		t.Fatal(err)
	}
	beats := syntheticLiveBeats(50)
	ps, err := l.ClassifyBeats(context.Background(), beats)
	if err != nil || len(ps) != len(beats) {
		t.Fatalf("%d predictions, %v", len(ps), err)
	}
	for i := range beats {
		if want := l.Model.ClassifyWindow(&beats[i].Window, beats[i].RR); ps[i] != want {
			t.Fatalf("beat %d: %+v, want %+v", i, ps[i], want)
		}
	}
	if _, err := NewLocal("/nonexistent/model.bin"); err == nil {
		t.Error("missing model file accepted")
	}
}

// syntheticLiveBeats are the beats of syntheticBeats with float32-exact RR features.
func syntheticLiveBeats(n int) []LiveBeat {
	var out []LiveBeat
	for i, b := range syntheticBeats(n) {
		// The four intervals the KServe protocol carries (no medians, no morphology).
		rr := RRFeatures{Pre: b.RR.Pre, Post: b.RR.Post, Local: b.RR.Local, Average: b.RR.Average}
		if i%3 == 0 {
			rr = RRFeatures{} // some beats without RR features
		}
		for _, p := range []*float64{&rr.Pre, &rr.Post, &rr.Local, &rr.Average} {
			*p = float64(float32(*p))
		}
		out = append(out, LiveBeat{Subject: "p", Device: "d", Time: t0, Window: b.Samples, RR: rr})
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{}, ""},
		{Config{KServeURL: "http://127.0.0.1:8000", KServeModel: "ecg"}, ""},
		{Config{KServeURL: "ftp://x", KServeModel: "ecg"}, "ecg.kserve_url"},
		{Config{KServeURL: "http://127.0.0.1:8000"}, "ecg.kserve_model"},
		{Config{KServeModel: "ecg"}, "ecg.kserve_url"},
		{Config{KServeURL: "http://h:1", KServeModel: "ecg", Model: "m.bin"}, "ecg.model"},
		{Config{KServeInput: "image"}, "ecg.kserve_input"},
		{Config{KServeBatch: -1}, "ecg.kserve_batch"},
		{Config{KServeModel: "a/b", KServeURL: "http://h:1"}, "ecg.kserve_model"},
		{Config{IdleTimeout: yamlconf.Duration(-time.Second)}, "ecg.idle_timeout"},
	} {
		errs := tc.c.Validate()
		got := ""
		if len(errs) > 0 {
			got = errs[0].Error()
		}
		if (tc.want == "") != (got == "") || (tc.want != "" && !startsWith(got, tc.want+": ")) {
			t.Errorf("%+v: got %q, want prefix %q", tc.c, got, tc.want)
		}
	}
}

func startsWith(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
