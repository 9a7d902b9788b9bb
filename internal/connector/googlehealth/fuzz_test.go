package googlehealth

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
	"unicode/utf8"

	health "google.golang.org/api/health/v4"

	"github.com/pulselake/pulselake/internal/reading"
)

// FuzzMapPoint feeds arbitrary data points to the mapping of every data type: it must never
// panic, and every reading it makes must be valid JSON with a device name and id a reading
// accepts and at most reading.MaxSamples samples.
func FuzzMapPoint(f *testing.F) {
	fh, err := os.Open("testdata/points.ndjson")
	if err != nil {
		f.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f.Add(append([]byte(nil), sc.Bytes()...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var dp health.DataPoint
		if json.Unmarshal(data, &dp) != nil {
			return
		}
		for _, dt := range dataTypes {
			rs, err := mapPoint(dt, "subject-1", &dp)
			if err != nil {
				continue
			}
			for _, r := range rs {
				b := r.AppendJSON(nil)
				if !json.Valid(b) {
					t.Fatalf("%s: invalid JSON %s", dt, b)
				}
				if err := reading.CheckIdent("device", r.Device); err != nil {
					t.Fatalf("%s: %v", dt, err)
				}
				if r.ID == "" || len(r.ID) > reading.MaxIDLen || !utf8.ValidString(r.ID) {
					t.Fatalf("%s: id %q", dt, r.ID)
				}
				if len(r.Samples) > reading.MaxSamples {
					t.Fatalf("%s: %d samples", dt, len(r.Samples))
				}
			}
		}
	})
}
