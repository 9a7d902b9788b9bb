package ingest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestFileRecords(t *testing.T) {
	for _, tc := range []struct {
		name, format, data string
		want               []string // raw records emitted, in order
		origins            []string // their origins
		wantErr            string
	}{
		{name: "ndjson", format: "ndjson", data: "{\"a\":1}\n\n  {\"b\":2}  \r\n",
			want: []string{`{"a":1}`, `{"b":2}`}, origins: []string{"readings:1", "readings:3"}},
		{name: "ndjson empty", format: "ndjson", data: "\n \n"},
		{name: "json array", format: "json", data: `[ {"a":1}, {"b":[2,3]} ]`,
			want: []string{`{"a":1}`, `{"b":[2,3]}`}, origins: []string{"readings[0]", "readings[1]"}},
		{name: "json not array", format: "json", data: `{"a":1}`, wantErr: "want an array of readings"},
		{name: "json not json", format: "json", data: `nope`, wantErr: "not JSON"},
		{name: "json bad element", format: "json", data: `[{"a":1}, {]`, want: []string{`{"a":1}`},
			origins: []string{"readings[0]"}, wantErr: "element 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var raws, origins []string
			emit := func(raw []byte, origin string) error {
				raws, origins = append(raws, string(raw)), append(origins, origin)
				return nil
			}
			var err error
			if tc.format == "ndjson" {
				err = ndjsonRecords(strings.NewReader(tc.data), "dir/readings", emit)
			} else {
				err = jsonArrayRecords(strings.NewReader(tc.data), "dir/readings", emit)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Join(raws, "|") != strings.Join(tc.want, "|") || strings.Join(origins, "|") != strings.Join(tc.origins, "|") {
				t.Errorf("records %q at %q, want %q at %q", raws, origins, tc.want, tc.origins)
			}
		})
	}
}

// FuzzFileRecords checks that the NDJSON reader emits exactly the non-blank lines, trimmed,
// and that the JSON array reader emits only well-formed JSON values.
func FuzzFileRecords(f *testing.F) {
	for _, seed := range []string{
		"{\"a\":1}\n\n  {\"b\":2}  \r\n",
		`[ {"a":1}, {"b":[2,3]} ]`,
		`{"a":1}`,
		`[{"a":1}, {]`,
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var lines []string
		err := ndjsonRecords(bytes.NewReader(data), "f.ndjson", func(raw []byte, _ string) error {
			lines = append(lines, string(raw))
			return nil
		})
		if err == nil {
			var want []string
			for _, l := range bytes.Split(data, []byte("\n")) {
				if l = bytes.TrimSpace(l); len(l) > 0 {
					want = append(want, string(l))
				}
			}
			if strings.Join(lines, "\n") != strings.Join(want, "\n") || len(lines) != len(want) {
				t.Fatalf("ndjson records %q, want %q", lines, want)
			}
		}
		_ = jsonArrayRecords(bytes.NewReader(data), "f.json", func(raw []byte, _ string) error {
			if !json.Valid(raw) {
				t.Fatalf("json element %q is not valid JSON", raw)
			}
			return nil
		})
	})
}
