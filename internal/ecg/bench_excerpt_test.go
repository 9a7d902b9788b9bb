package ecg_test

import (
	"testing"

	"github.com/pulselake/pulselake/internal/ecg"
	"github.com/pulselake/pulselake/internal/ecg/excerpt"
)

// BenchmarkClassifyDemoBeats measures classification of the real MIT-BIH beats shipped in the
// demo excerpt with the default model, on one goroutine.
func BenchmarkClassifyDemoBeats(b *testing.B) {
	m, err := ecg.DefaultModel()
	if err != nil {
		b.Fatal(err)
	}
	beats, err := excerpt.DemoBeats()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		bt := &beats[i%len(beats)]
		m.ClassifyWindow(&bt.Samples, bt.RR)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "beats/s")
}
