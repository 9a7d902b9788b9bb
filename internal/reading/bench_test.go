package reading

import "testing"

// BenchmarkParse measures Parse → Validate → Normalize of one blood-pressure reading.
func BenchmarkParse(b *testing.B) {
	p := newTestParser(b)
	data := []byte(`{"subject":"patient-17","device":"bp-0042","kind":"blood_pressure","time":"2026-11-23T10:00:00.123Z","values":{"systolic":142,"diastolic":91,"pulse":72}}`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, errs := p.Parse(data)
		if errs != nil {
			b.Fatal(errs)
		}
		_ = r.Identity()
	}
}

// BenchmarkSplitNDJSON measures splitting a 1,000-line NDJSON body.
func BenchmarkSplitNDJSON(b *testing.B) {
	line := `{"subject":"patient-17","device":"bp-0042","kind":"blood_pressure","time":"2026-11-23T10:00:00.123Z","values":{"systolic":142,"diastolic":91,"pulse":72}}` + "\n"
	var body []byte
	for range 1000 {
		body = append(body, line...)
	}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := SplitBody(body, FormatNDJSON, 10000); err != nil {
			b.Fatal(err)
		}
	}
}
