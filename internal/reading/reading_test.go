package reading

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func newTestParser(t testing.TB) *Parser {
	reg, err := NewRegistry(&Kind{Name: "glucose", Fields: []Field{
		{Name: "mg_dl", Type: Number, Unit: "mg/dL", Required: true, Min: ptr(10), Max: ptr(1000)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := NewParser(reg)
	p.Now = func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }
	return p
}

func TestParseValid(t *testing.T) {
	p := newTestParser(t)
	tests := []struct {
		name, in string
		check    func(t *testing.T, r Reading)
	}{
		{"blood pressure RFC 3339 with offset", `{"subject":"patient-17","device":"bp-0042","kind":"blood_pressure","time":"2026-11-23T11:00:00.123+01:00","values":{"systolic":142,"diastolic":91,"pulse":72}}`,
			func(t *testing.T, r Reading) {
				if want := time.Date(2026, 11, 23, 10, 0, 0, 123e6, time.UTC); !r.Time.Equal(want) || r.Time.Location() != time.UTC {
					t.Errorf("time = %v, want %v UTC", r.Time, want)
				}
				if r.Values["systolic"] != 142 || r.Values["diastolic"] != 91 || r.Values["pulse"] != 72 {
					t.Errorf("values = %v", r.Values)
				}
			}},
		{"epoch milliseconds", `{"subject":"s","device":"d","kind":"heart_rate","time":1763892000123,"values":{"bpm":61.5}}`,
			func(t *testing.T, r Reading) {
				if r.Time.UnixMilli() != 1763892000123 {
					t.Errorf("time = %v", r.Time)
				}
			}},
		{"sleep text value", `{"subject":"s","device":"d","kind":"sleep","time":"2026-11-23T01:00:00Z","values":{"stage":"rem","duration_s":600}}`,
			func(t *testing.T, r Reading) {
				if r.Text["stage"] != "rem" || r.Values["duration_s"] != 600 {
					t.Errorf("got %v %v", r.Text, r.Values)
				}
			}},
		{"config kind", `{"id":"abc-1","subject":"s","device":"d","kind":"glucose","time":"2026-11-23T01:00:00Z","values":{"mg_dl":98}}`,
			func(t *testing.T, r Reading) {
				if r.ID != "abc-1" || r.Values["mg_dl"] != 98 {
					t.Errorf("got %+v", r)
				}
			}},
		{"ecg beat", `{"subject":"s","device":"d","kind":"ecg_beat","time":"2026-11-23T01:00:00Z","values":{"samples":[` + strings.TrimSuffix(strings.Repeat("0.5,", 187), ",") + `],"label":"N"}}`,
			func(t *testing.T, r Reading) {
				if len(r.Samples) != 187 || r.Text["label"] != "N" {
					t.Errorf("got %d samples, label %q", len(r.Samples), r.Text["label"])
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, errs := p.Parse([]byte(tt.in))
			if errs != nil {
				t.Fatalf("unexpected errors: %v", errs)
			}
			tt.check(t, r)
		})
	}
}

func TestParseRejects(t *testing.T) {
	p := newTestParser(t)
	bp := func(values string) string {
		return `{"subject":"p","device":"d","kind":"blood_pressure","time":"2026-11-23T10:00:00Z","values":` + values + `}`
	}
	tests := []struct {
		name, in string
		want     []FieldError // code and path only
	}{
		{"not json", `{"subject":`, []FieldError{{Code: CodeInvalidJSON, Path: ""}}},
		{"array not object", `[1,2]`, []FieldError{{Code: CodeInvalidJSON, Path: ""}}},
		{"systolic too high", bp(`{"systolic":301,"diastolic":90}`), []FieldError{{Code: CodeOutOfRange, Path: "/values/systolic"}}},
		{"both out of range", bp(`{"systolic":10,"diastolic":500}`), []FieldError{{Code: CodeOutOfRange, Path: "/values/systolic"}, {Code: CodeOutOfRange, Path: "/values/diastolic"}}},
		{"diastolic above systolic", bp(`{"systolic":90,"diastolic":120}`), []FieldError{{Code: CodeInconsistent, Path: "/values/diastolic"}}},
		{"missing diastolic", bp(`{"systolic":120}`), []FieldError{{Code: CodeMissingField, Path: "/values/diastolic"}}},
		{"string value", bp(`{"systolic":"120","diastolic":80}`), []FieldError{{Code: CodeInvalidType, Path: "/values/systolic"}}},
		{"unknown value", bp(`{"systolic":120,"diastolic":80,"map":93}`), []FieldError{{Code: CodeUnknownField, Path: "/values/map"}}},
		{"unknown kind", `{"subject":"p","device":"d","kind":"bloodpressure","time":"2026-11-23T10:00:00Z","values":{}}`, []FieldError{{Code: CodeUnknownKind, Path: "/kind"}}},
		{"missing everything", `{}`, []FieldError{{Code: CodeMissingField, Path: "/subject"}, {Code: CodeMissingField, Path: "/device"}, {Code: CodeMissingField, Path: "/kind"}, {Code: CodeMissingField, Path: "/time"}, {Code: CodeMissingField, Path: "/values"}}},
		{"bad time", `{"subject":"p","device":"d","kind":"heart_rate","time":"yesterday","values":{"bpm":70}}`, []FieldError{{Code: CodeInvalidTime, Path: "/time"}}},
		{"epoch seconds", `{"subject":"p","device":"d","kind":"heart_rate","time":1763892000,"values":{"bpm":70}}`, []FieldError{{Code: CodeTimeOutOfRange, Path: "/time"}}},
		{"future", `{"subject":"p","device":"d","kind":"heart_rate","time":"2026-11-25T10:00:00Z","values":{"bpm":70}}`, []FieldError{{Code: CodeTimeOutOfRange, Path: "/time"}}},
		{"bad subject", `{"subject":"a b","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70}}`, []FieldError{{Code: CodeInvalidID, Path: "/subject"}}},
		{"unknown top field with slash", `{"subject":"p","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70},"a/b":1}`, []FieldError{{Code: CodeUnknownField, Path: "/a~1b"}}},
		{"sleep stage", `{"subject":"p","device":"d","kind":"sleep","time":"2026-11-23T10:00:00Z","values":{"stage":"nap","duration_s":0}}`, []FieldError{{Code: CodeInvalidValue, Path: "/values/stage"}, {Code: CodeOutOfRange, Path: "/values/duration_s"}}},
		{"short beat", `{"subject":"p","device":"d","kind":"ecg_beat","time":"2026-11-23T10:00:00Z","values":{"samples":[0.1,0.2]}}`, []FieldError{{Code: CodeInvalidLength, Path: "/values/samples"}}},
		{"duplicate subject", `{"subject":"a","device":"d","kind":"heart_rate","subject":"b","time":"2026-11-23T10:00:00Z","values":{"bpm":70}}`, []FieldError{{Code: CodeInvalidJSON, Path: "/subject"}}},
		{"duplicate subject, escaped", `{"subject":"a","device":"d","kind":"heart_rate","sub\u006aect":"b","time":"2026-11-23T10:00:00Z","values":{"bpm":70}}`, []FieldError{{Code: CodeInvalidJSON, Path: "/subject"}}},
		{"duplicate value", bp(`{"systolic":120,"diastolic":80,"systolic":190}`), []FieldError{{Code: CodeInvalidJSON, Path: "/values/systolic"}}},
		{"duplicate unknown field", `{"subject":"p","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70},"x":1,"x":2}`, []FieldError{{Code: CodeInvalidJSON, Path: "/x"}}},
		{"duplicate deep", `{"subject":"p","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70},"meta":[{"a":{"b":1,"b":2}}]}`, []FieldError{{Code: CodeInvalidJSON, Path: "/meta/0/a/b"}}},
		{"duplicate id", `{"id":"x","id":"y","subject":"p","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70}}`, []FieldError{{Code: CodeInvalidJSON, Path: "/id"}}},
		{"accelerometer 20g", `{"subject":"p","device":"d","kind":"accelerometer","time":"2026-11-23T10:00:00Z","values":{"x":0,"y":-20,"z":1}}`, []FieldError{{Code: CodeOutOfRange, Path: "/values/y"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := p.Parse([]byte(tt.in))
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors %v, want %v", len(errs), errs, tt.want)
			}
			for i, e := range errs {
				if e.Code != tt.want[i].Code || e.Path != tt.want[i].Path {
					t.Errorf("error %d = %s %s, want %s %s", i, e.Code, e.Path, tt.want[i].Code, tt.want[i].Path)
				}
				if e.Message == "" {
					t.Errorf("error %d has no message", i)
				}
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	p := newTestParser(t)
	a, _ := p.Parse([]byte(`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70}}`))
	b, _ := p.Parse([]byte(`{"subject":"s","device":"d","kind":"heart_rate","time":1795428000000,"values":{"bpm":71}}`))
	c, _ := p.Parse([]byte(`{"subject":"s","device":"d2","kind":"heart_rate","time":1795428000000,"values":{"bpm":70}}`))
	d, _ := p.Parse([]byte(`{"id":"x","subject":"s","device":"d","kind":"heart_rate","time":1795428000000,"values":{"bpm":70}}`))
	if a.Identity() != b.Identity() {
		t.Error("same subject, device, kind and time must share an identity whatever the time format")
	}
	if a.Identity() == c.Identity() || a.Identity() == d.Identity() {
		t.Error("different device or explicit id must change the identity")
	}
	id, err := ParseID(a.Identity().String())
	if err != nil || id != a.Identity() {
		t.Errorf("ParseID round trip: %v %v", id, err)
	}
}

func TestAppendJSONRoundTrip(t *testing.T) {
	p := newTestParser(t)
	for _, in := range []string{
		`{"id":"q\"1","subject":"s","device":"d","kind":"blood_pressure","time":"2026-11-23T10:00:00.000123Z","values":{"systolic":142.5,"diastolic":91,"pulse":72}}`,
		`{"subject":"s","device":"d","kind":"sleep","time":"2026-11-23T10:00:00Z","values":{"stage":"deep","duration_s":30}}`,
		`{"subject":"s","device":"d","kind":"ecg","time":"2026-11-23T10:00:00Z","values":{"fs":360,"samples":[-0.145,0.2,1e-3]}}`,
	} {
		r, errs := p.Parse([]byte(in))
		if errs != nil {
			t.Fatal(errs)
		}
		out := r.AppendJSON(nil)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON: %s", out)
		}
		r2, errs := p.Parse(out)
		if errs != nil {
			t.Fatalf("re-parse %s: %v", out, errs)
		}
		if string(r2.AppendJSON(nil)) != string(out) || r2.Identity() != r.Identity() {
			t.Errorf("round trip changed the reading:\n%s\n%s", out, r2.AppendJSON(nil))
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"subject":"patient-17","device":"bp-0042","kind":"blood_pressure","time":"2026-11-23T10:00:00.123Z","values":{"systolic":142,"diastolic":91,"pulse":72}}`,
		`{"subject":"s","device":"d","kind":"heart_rate","time":1763892000123,"values":{"bpm":61.5}}`,
		`{"subject":"s","device":"d","kind":"ecg","time":"2026-11-23T10:00:00Z","values":{"fs":360,"samples":[0.1,-0.2]}}`,
		`{"id":"","values":[],"time":null}`, `[]`, `"x"`, `{"a/b~":1}`,
	} {
		f.Add([]byte(s))
	}
	p := newTestParser(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, errs := p.Parse(data)
		if errs == nil && !utf8.Valid(data) {
			t.Fatalf("accepted %q, which is not UTF-8", data)
		}
		if errs != nil {
			for _, e := range errs {
				if e.Code == "" || e.Message == "" {
					t.Fatalf("error without code or message: %+v", e)
				}
			}
			return
		}
		// An accepted reading re-encodes to JSON that parses back to the same reading.
		out := r.AppendJSON(nil)
		r2, errs := p.Parse(out)
		if errs != nil {
			t.Fatalf("re-parse of %s failed: %v", out, errs)
		}
		if r2.Identity() != r.Identity() || string(r2.AppendJSON(nil)) != string(out) {
			t.Fatalf("round trip mismatch: %s vs %s", out, r2.AppendJSON(nil))
		}
	})
}

// hasDuplicateKey is the reference for FuzzDuplicateKeys: encoding/json's tokenizer, which
// shares nothing with the parser, finds an object that names a key twice at any depth.
func hasDuplicateKey(data []byte) (dup, valid bool) {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	type frame struct {
		obj  bool
		keys map[string]bool
		key  bool // next token in this object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return dup, err.Error() == "EOF" && len(stack) == 0
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.obj && top.key
		if top != nil && top.obj {
			top.key = !top.key
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{obj: true, keys: map[string]bool{}, key: true})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].key = true
				}
			}
		case string:
			if isKey {
				if top.keys[v] {
					dup = true
				}
				top.keys[v] = true
			}
		}
	}
}

// FuzzDuplicateKeys checks that a payload is rejected as invalid-json naming a duplicate
// key exactly when it has an object with a key named twice, at any depth.
func FuzzDuplicateKeys(f *testing.F) {
	for _, s := range []string{
		`{"subject":"a","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70},"subject":"b"}`,
		`{"subject":"a","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70,"bpm":71}}`,
		`{"subject":"a","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70}}`,
		`{"a":[{"b":1},{"b":1}],"c":{"d":{"e":1,"E":2}}}`,
		`{"a":[{"b":1,"b":2}]}`, `{"\u0061":1,"a":2}`, `[{"x":1,"x":1}]`,
	} {
		f.Add([]byte(s))
	}
	p := newTestParser(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			// JSON text is UTF-8 (RFC 8259 §8.1). encoding/json, the reference here, reads
			// invalid bytes as U+FFFD and so finds keys equal that differ in their bytes; no
			// field or value name has such bytes, and the parser refuses the payload anyway.
			if _, errs := p.Parse(data); errs == nil {
				t.Fatalf("accepted %q, which is not UTF-8", data)
			}
			return
		}
		dup, valid := hasDuplicateKey(data)
		if !valid || !json.Valid(data) || !strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
			return // not a JSON object: rejected as such, whatever its keys
		}
		_, errs := p.Parse(data)
		got := len(errs) == 1 && errs[0].Code == CodeInvalidJSON && strings.Contains(errs[0].Message, "more than once")
		if dup != got {
			t.Fatalf("payload %s: duplicate key %v, parser says %v", data, dup, errs)
		}
	})
}

// TestParseRoundsNumbersExactly reads numbers as strconv.ParseFloat does (the nearest
// float64), as the stream's decoder does: fastjson's own parse is a unit in the last place
// off for some of these.
func TestParseRoundsNumbersExactly(t *testing.T) {
	p := newTestParser(t)
	for _, num := range []string{"764835386697e-7", "61.5", "6.15e1", "615e-1", "60.00000000000001", "1234567890123456789e-17", "72.123456789012345678", "1e-5"} {
		want, err := strconv.ParseFloat(num, 64)
		if err != nil {
			t.Fatal(err)
		}
		r, errs := p.Parse([]byte(`{"subject":"s","device":"d","kind":"steps","time":1763892000123,"values":{"count":` + num + `,"interval_s":` + num + `}}`))
		if errs != nil {
			t.Fatalf("%s: %v", num, errs)
		}
		if r.Values["count"] != want || r.Values["interval_s"] != want {
			t.Errorf("%s read as %v and %v, want %v", num, r.Values["count"], r.Values["interval_s"], want)
		}
	}
}
