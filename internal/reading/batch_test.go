package reading

import (
	"errors"
	"testing"
)

func TestSplitBody(t *testing.T) {
	tests := []struct {
		name, format string
		max          int
		body         string
		want         []string
		err          any
	}{
		{"ndjson with blank lines and CRLF", FormatNDJSON, 10, "{\"a\":1}\r\n\n  {\"b\":2}\n{broken\n", []string{`{"a":1}`, `{"b":2}`, `{broken`}, nil},
		{"single object", FormatJSON, 10, " {\"a\":1} ", []string{`{"a":1}`}, nil},
		{"array", FormatJSON, 10, "[ {\"a\":1} ,\n{\"b\":[1,2]}]", []string{`{"a":1}`, `{"b":[1,2]}`}, nil},
		{"empty array", FormatJSON, 10, "[]", nil, nil},
		{"broken array", FormatJSON, 10, `[{"a":1},{"b":`, nil, ErrMalformedBody{}},
		{"trailing data", FormatJSON, 10, `[{"a":1}] x`, nil, ErrMalformedBody{}},
		{"empty body", FormatJSON, 10, ``, nil, ErrMalformedBody{}},
		{"too many ndjson", FormatNDJSON, 2, "{}\n{}\n{}\n", nil, ErrTooManyRecords{}},
		{"too many array", FormatJSON, 2, "[{},{},{}]", nil, ErrTooManyRecords{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SplitBody([]byte(tt.body), tt.format, tt.max)
			if tt.err != nil {
				switch tt.err.(type) {
				case ErrMalformedBody:
					var e ErrMalformedBody
					if !errors.As(err, &e) {
						t.Fatalf("err = %v, want malformed body", err)
					}
				case ErrTooManyRecords:
					var e ErrTooManyRecords
					if !errors.As(err, &e) || e.Limit != 2 {
						t.Fatalf("err = %v, want too many records", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if string(got[i]) != tt.want[i] {
					t.Errorf("record %d = %q, want %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestFormatOf(t *testing.T) {
	for ct, want := range map[string]string{
		"": FormatJSON, "application/json; charset=utf-8": FormatJSON,
		"application/x-ndjson": FormatNDJSON, "application/jsonl": FormatNDJSON,
	} {
		if got, err := FormatOf(ct); err != nil || got != want {
			t.Errorf("FormatOf(%q) = %q, %v", ct, got, err)
		}
	}
	if _, err := FormatOf("application/x-www-form-urlencoded"); !errors.Is(err, ErrUnsupportedMedia) {
		t.Errorf("form content type: err = %v", err)
	}
}

func FuzzSplitBody(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n{\"b\":2}\n"), true)
	f.Add([]byte(`[{"a":1},{"b":[1,{"c":"]"}]}]`), false)
	f.Add([]byte(`[`), false)
	f.Fuzz(func(t *testing.T, body []byte, ndjson bool) {
		format := FormatJSON
		if ndjson {
			format = FormatNDJSON
		}
		recs, err := SplitBody(body, format, 1000)
		if err != nil {
			return
		}
		total := 0
		for _, r := range recs {
			if len(r) == 0 {
				t.Fatal("empty record")
			}
			total += len(r)
		}
		if total > len(body) {
			t.Fatalf("records (%d bytes) larger than body (%d)", total, len(body))
		}
	})
}
