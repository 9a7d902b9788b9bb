package fhir

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// BenchmarkBundle decodes a batch Bundle of 1,000 heart-rate Observations into validated
// readings (what POST /fhir/r4 does before storing them).
func BenchmarkBundle(b *testing.B) {
	m := testMapper(b)
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	bundle := Bundle{ResourceType: TypeBundle, Type: BundleBatch}
	for i := range 1000 {
		r := reading.Reading{Subject: fmt.Sprintf("patient-%d", i%50), Device: "hr-1", Kind: "heart_rate",
			Time: at.Add(time.Duration(i) * time.Second), Values: map[string]float64{"bpm": float64(60 + i%40)}}
		o, _ := m.Encode(&r, "")
		raw, _ := json.Marshal(o)
		bundle.Entry = append(bundle.Entry, BundleEntry{Resource: raw, Request: &EntryRequest{Method: "POST", URL: "Observation"}})
	}
	data, _ := json.Marshal(bundle)
	d := m.NewDecoder()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		bd, err := ParseBundle(data, 1000, true)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range d.Entries(bd, true) {
			if e.Issues != nil {
				b.Fatal(e.Issues)
			}
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "readings/s")
}
