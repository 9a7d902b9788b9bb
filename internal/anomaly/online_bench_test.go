package anomaly

import (
	"testing"
	"time"
)

// BenchmarkOnline feeds a 1M-point heart-rate-like series at a 5 s step through the online
// detector; points/s is the figure of docs/anomaly.md.
func BenchmarkOnline(b *testing.B) {
	values, _ := syntheticHR(1_000_000, 3)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	step := int64(5 * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		d := NewOnline(OnlineOptions{})
		for i, x := range values {
			d.Step(t0+int64(i)*step, x)
		}
	}
	b.ReportMetric(float64(b.N)*float64(len(values))/b.Elapsed().Seconds(), "points/s")
}
