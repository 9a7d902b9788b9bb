package googlehealth

import (
	"encoding/json"
	"testing"
	"time"

	health "google.golang.org/api/health/v4"
)

// BenchmarkHeartRatePage measures the client's share of a full page: decoding 10,000
// heart-rate points as the generated client does and turning them into wire-format readings.
func BenchmarkHeartRatePage(b *testing.B) {
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	resp := &health.ListDataPointsResponse{}
	for i := range 10000 {
		resp.DataPoints = append(resp.DataPoints, &health.DataPoint{
			DataSource: &health.DataSource{Device: &health.Device{Manufacturer: "Google", DisplayName: "Pixel Watch 3"}},
			HeartRate: &health.HeartRate{BeatsPerMinute: 60 + int64(i%40),
				SampleTime: &health.ObservationSampleTime{PhysicalTime: start.Add(time.Duration(i) * time.Minute).Format(time.RFC3339), UtcOffset: "0s"}},
		})
	}
	page, err := json.Marshal(resp)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		var r health.ListDataPointsResponse
		if err := json.Unmarshal(page, &r); err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, dp := range r.DataPoints {
			rs, err := mapPoint(HeartRate, "patient-1", dp)
			if err != nil {
				b.Fatal(err)
			}
			for i := range rs {
				n += len(rs[i].AppendJSON(nil))
			}
		}
	}
	b.ReportMetric(float64(b.N*10000)/b.Elapsed().Seconds(), "points/s")
}
