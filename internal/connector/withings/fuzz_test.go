package withings

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// FuzzDecodeGetmeas feeds arbitrary answers to the Getmeas and token decoders and the mapping:
// they must never panic, and every reading made must be valid JSON whose device a reading
// accepts.
func FuzzDecodeGetmeas(f *testing.F) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	start, end := time.Unix(0, 0), time.Unix(1<<40, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		if env, err := decodeEnvelope(data); err == nil {
			var tb tokenBody
			_ = json.Unmarshal(env.Body, &tb)
			_ = isInvalidGrant(env)
		}
		page, err := decodeGetmeas(data)
		if err != nil {
			return
		}
		rs, _ := mapGroups("subject-1", page.MeasureGroups, start, end)
		for _, r := range rs {
			b := r.AppendJSON(nil)
			if !json.Valid(b) {
				t.Fatalf("invalid JSON %s", b)
			}
			if err := reading.CheckIdent("device", r.Device); err != nil {
				t.Fatal(err)
			}
			if r.ID == "" || len(r.ID) > reading.MaxIDLen {
				t.Fatalf("id %q", r.ID)
			}
		}
	})
}
