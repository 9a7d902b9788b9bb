package ecg

import (
	"context"
	"math"
	"testing"
)

// BenchmarkClassify measures classification of synthetic beat windows with the default model
// on one goroutine; the beats/s metric is the throughput.
func BenchmarkClassify(b *testing.B) {
	m, err := DefaultModel()
	if err != nil {
		b.Fatal(err)
	}
	beats := syntheticBeats(256)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		bt := &beats[i%len(beats)]
		m.ClassifyWindow(&bt.Samples, bt.RR)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "beats/s")
}

// BenchmarkClassifyInterface is BenchmarkClassify through the Classifier interface
// ([]float64 input, as the streaming path uses it).
func BenchmarkClassifyInterface(b *testing.B) {
	m, err := DefaultModel()
	if err != nil {
		b.Fatal(err)
	}
	var cl Classifier = m
	beats := syntheticBeats(256)
	w := make([][]float64, len(beats))
	for i := range beats {
		w[i] = make([]float64, WindowLen)
		for k, v := range beats[i].Samples {
			w[i][k] = float64(v)
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		cl.Classify(w[i%len(w)], beats[i%len(beats)].RR)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "beats/s")
}

// BenchmarkQRSDetector measures the online QRS detector, one sample per iteration.
func BenchmarkQRSDetector(b *testing.B) {
	x := syntheticECG(360 * 60)
	d := NewQRSDetector(360)
	var out []int64
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		out = d.Push(x[i%len(x)], out[:0])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkTrain measures training on 5,000 synthetic beats, 20 rounds.
func BenchmarkTrain(b *testing.B) {
	beats := syntheticBeats(5000)
	for b.Loop() {
		if _, err := Train(context.Background(), beats, TrainOptions{Rounds: 20, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

// syntheticECG is a crude 72 bpm ECG-like signal in mV: a narrow R wave and a T wave.
func syntheticECG(n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		t := math.Mod(float64(i)/360, 60.0/72)
		x[i] = 1.2*math.Exp(-math.Pow((t-0.2)/0.012, 2)) + 0.3*math.Exp(-math.Pow((t-0.45)/0.05, 2)) + 0.05*math.Sin(float64(i)/200)
	}
	return x
}

func syntheticBeats(n int) []Beat {
	x := syntheticECG(360 * 600)
	peaks := make([]int64, 0, n+1)
	for k := 0; len(peaks) < n+1; k++ {
		// jitter the RR a little, deterministically
		peaks = append(peaks, int64(float64(k)*300+72+float64(k%7)*3))
	}
	labels := make([]string, len(peaks))
	for i := range labels {
		labels[i] = [...]string{"N", "N", "N", "V", "A", "F"}[i%6]
	}
	for i := range peaks {
		peaks[i] %= int64(len(x) - 800)
	}
	// Keep peaks increasing: wrap-around only matters for the window contents.
	b := make([]Beat, 0, n)
	for i := 0; i < n; i++ {
		bs := BeatsFromPeaks(x, 360, []int64{peaks[i], peaks[i] + 300}, labels[i:i+2], "syn")
		b = append(b, bs...)
	}
	return b
}

// BenchmarkBeatFeatures measures the per-beat work the patient-relative features add to
// cutting a beat (raw segment, RR medians, template comparison and update), on one goroutine.
func BenchmarkBeatFeatures(b *testing.B) {
	x := syntheticECG(360 * 60)
	var tr beatTracker
	var seg [segLen]float64
	at := func(i int64) float64 { return x[i] }
	for i := 0; b.Loop(); i++ {
		r := int64(1000 + (i%60)*300)
		cutSegment(&seg, at, 0, int64(len(x)), r, 360)
		tr.next(0.83, 0.83, &seg)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "beats/s")
}

// BenchmarkClassifyRecordBeats measures classification of the beats of record 208 as training
// and streaming cut them (RR intervals and morphology known, so by the first ensemble) with
// the default model, on one goroutine.
func BenchmarkClassifyRecordBeats(b *testing.B) {
	beats, err := RecordBeats(needData(b), "208")
	if err != nil {
		b.Fatal(err)
	}
	m, err := DefaultModel()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		bt := &beats[i%len(beats)]
		m.ClassifyWindow(&bt.Samples, bt.RR)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "beats/s")
}
