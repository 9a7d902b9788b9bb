package fhir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

func ptr(v float64) *float64 { return &v }

func testMapper(t testing.TB) *Mapper {
	t.Helper()
	reg, err := reading.NewRegistry(&reading.Kind{Name: "body_weight", Fields: []reading.Field{
		{Name: "kg", Type: reading.Number, Unit: "kg", Required: true, Min: ptr(0.2), Max: ptr(700)}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMapper(reg, []Declared{{Kind: "body_weight", LOINC: "29463-7", UCUM: "kg"}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The R4 specification's own examples become the readings they describe.
func TestSpecExamples(t *testing.T) {
	d := testMapper(t).NewDecoder()
	tests := []struct {
		file string
		want reading.Reading
	}{
		{"observation-example-heart-rate.json", reading.Reading{Subject: "example", Device: DefaultDevice, Kind: "heart_rate",
			Time: time.Date(1999, 7, 2, 0, 0, 0, 0, time.UTC), Values: map[string]float64{"bpm": 44}}},
		{"observation-example-bloodpressure.json", reading.Reading{ID: "fhir:urn:ietf:rfc:3986|urn:uuid:187e0c12-8dd2-67e2-99b2-bf273c878281",
			Subject: "example", Device: DefaultDevice, Kind: "blood_pressure",
			Time: time.Date(2012, 9, 17, 0, 0, 0, 0, time.UTC), Values: map[string]float64{"systolic": 107, "diastolic": 60}}},
		{"observation-example-satO2.json", reading.Reading{ID: "fhir:http://goodcare.org/observation/id|o1223435-10",
			Subject: "example", Device: "example", Kind: "spo2",
			Time: time.Date(2014, 12, 5, 8, 30, 10, 0, time.UTC), Values: map[string]float64{"percent": 95}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rs, issues := d.Observation(readFixture(t, tt.file), "")
			if len(issues) > 0 {
				t.Fatalf("issues: %v", issues)
			}
			if len(rs) != 1 || !reflect.DeepEqual(rs[0], tt.want) {
				t.Fatalf("got %+v\nwant %+v", rs, tt.want)
			}
		})
	}
}

// A reading becomes an Observation and that Observation the same reading, field by field.
func TestRoundTrip(t *testing.T) {
	m := testMapper(t)
	d := m.NewDecoder()
	at := time.Date(2026, 11, 23, 10, 0, 0, 123456000, time.UTC)
	samples := []float64{0.12, -0.5, 1.25, 0.003, 0}
	tests := []reading.Reading{
		{Subject: "patient-17", Device: "hr-1", Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": 72}},
		{ID: "client-key-1", Subject: "patient-17", Device: "bp-0042", Kind: "blood_pressure", Time: at,
			Values: map[string]float64{"systolic": 142, "diastolic": 91, "pulse": 72}},
		{Subject: "p1", Device: "ox", Kind: "spo2", Time: at, Values: map[string]float64{"percent": 97.5}},
		{Subject: "p1", Device: "band", Kind: "steps", Time: at, Values: map[string]float64{"count": 1234, "interval_s": 900}},
		{Subject: "p1", Device: "band", Kind: "steps", Time: at, Values: map[string]float64{"count": 0}},
		{ID: "fhir:http://example.org/ids|abc", Subject: "p1", Device: "scale", Kind: "body_weight", Time: at, Values: map[string]float64{"kg": 71.3}},
		{Subject: "p1", Device: "watch", Kind: "ecg", Time: at, Values: map[string]float64{"fs": 360}, Samples: samples},
		{Subject: "p1", Device: "watch", Kind: "ecg", Time: at, Values: map[string]float64{"fs": 512}, Samples: samples},
	}
	for _, want := range tests {
		t.Run(want.Kind, func(t *testing.T) {
			o, ok := m.Encode(&want, want.Identity().String())
			if !ok {
				t.Fatal("not encoded")
			}
			raw, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			rs, issues := d.Observation(raw, "")
			if len(issues) > 0 {
				t.Fatalf("issues: %v\n%s", issues, raw)
			}
			if len(rs) != 1 || !reflect.DeepEqual(rs[0], want) {
				t.Fatalf("got %+v\nwant %+v\n%s", rs, want, raw)
			}
			if rs[0].Identity() != want.Identity() {
				t.Fatal("identity differs")
			}
		})
	}
}

// Observations that cannot become readings name every problem with its element.
func TestObservationIssues(t *testing.T) {
	d := testMapper(t).NewDecoder()
	hr := string(readFixture(t, "observation-example-heart-rate.json"))
	tests := []struct {
		name, from, to string
		code, expr     string
	}{
		{"unknown code", `"8867-4"`, `"9279-1"`, CodeUnknownCode, "code"},
		{"no unit", `"unit": "beats/minute",`, ``, reading.CodeMissingField, "valueQuantity.unit"},
		{"wrong unit", `"code": "/min"`, `"code": "/s"`, CodeInvalidUnit, "valueQuantity.code"},
		{"no status", `"status": "final",`, ``, reading.CodeMissingField, "status"},
		{"entered in error", `"status": "final"`, `"status": "entered-in-error"`, CodeInvalidStatus, "status"},
		{"no category", `"vital-signs"`, `"laboratory"`, reading.CodeMissingField, "category"},
		{"no subject", `"reference": "Patient/example"`, `"reference": "Group/example"`, CodeInvalidRef, "subject.reference"},
		{"month only", `"1999-07-02"`, `"1999-07"`, reading.CodeInvalidTime, "effectiveDateTime"},
		{"out of range", `"value": 44`, `"value": 400`, reading.CodeOutOfRange, "valueQuantity.value"},
		{"value string", `"valueQuantity"`, `"valueString": "44", "x"`, CodeUnsupported, "valueString"},
		{"not an observation", `"resourceType": "Observation"`, `"resourceType": "Patient"`, CodeInvalidResource, "resourceType"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(hr, tt.from, tt.to, 1)
			if src == hr {
				t.Fatalf("fixture has no %s", tt.from)
			}
			rs, issues := d.Observation([]byte(src), "")
			if rs != nil {
				t.Fatalf("got readings %+v", rs)
			}
			for _, iss := range issues {
				if iss.Code == tt.code && iss.Expression == tt.expr {
					return
				}
			}
			t.Fatalf("want %s at %s, got %v", tt.code, tt.expr, issues)
		})
	}
}

// ifNoneExist and identifiers give the reading id: posting the same Observation twice is
// the same reading.
func TestIdentity(t *testing.T) {
	d := testMapper(t).NewDecoder()
	hr := readFixture(t, "observation-example-heart-rate.json")
	a, _ := d.Observation(hr, "identifier=http://acme.org|42")
	b, _ := d.Observation(hr, "identifier=http://acme.org|42")
	c, _ := d.Observation(hr, "identifier=http://acme.org|43")
	if a[0].ID != "fhir:http://acme.org|42" || a[0].Identity() != b[0].Identity() || a[0].Identity() == c[0].Identity() {
		t.Fatalf("ids %q %q %q", a[0].ID, b[0].ID, c[0].ID)
	}
	if _, issues := d.Observation(hr, "code=8867-4"); len(issues) == 0 || issues[0].Code != CodeInvalidRequest {
		t.Fatalf("ifNoneExist by code accepted: %v", issues)
	}
	long := "identifier=http://acme.org|" + strings.Repeat("x", 300)
	if r, _ := d.Observation(hr, long); len(r[0].ID) > reading.MaxIDLen || !strings.HasPrefix(r[0].ID, "fhir:sha256:") {
		t.Fatalf("long identifier id %q", r[0].ID)
	}
}

// A multi-lead ECG becomes one reading per lead, each with its own identity.
func TestECGLeads(t *testing.T) {
	d := testMapper(t).NewDecoder()
	src := `{"resourceType":"Observation","status":"final",
	 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
	 "code":{"coding":[{"system":"urn:oid:2.16.840.1.113883.6.24","code":"131328"}]},
	 "subject":{"reference":"Patient/p1"},"device":{"reference":"Device/ecg-7"},"effectiveDateTime":"2026-11-23T10:00:00Z",
	 "component":[
	  {"code":{"coding":[{"system":"urn:oid:2.16.840.1.113883.6.24","code":"131329"}]},
	   "valueSampledData":{"origin":{"value":2048,"unit":"uV","system":"http://unitsofmeasure.org","code":"uV"},"period":4,"factor":1.5,"dimensions":1,"data":"-1365 -1364 -1300"}},
	  {"code":{"coding":[{"system":"urn:oid:2.16.840.1.113883.6.24","code":"131330"}]},
	   "valueSampledData":{"origin":{"value":0,"system":"http://unitsofmeasure.org","code":"mV"},"period":4,"dimensions":1,"data":"0.1 0.2 0.3"}}]}`
	rs, issues := d.Observation([]byte(src), "")
	if len(issues) > 0 {
		t.Fatal(issues)
	}
	if len(rs) != 2 || rs[0].Identity() == rs[1].Identity() || rs[0].Values["fs"] != 250 {
		t.Fatalf("got %+v", rs)
	}
	want := []float64{(2048 - 1.5*1365) / 1000, (2048 - 1.5*1364) / 1000, (2048 - 1.5*1300) / 1000}
	for i, w := range want {
		if d := rs[0].Samples[i] - w; d > 1e-12 || d < -1e-12 {
			t.Fatalf("sample %d = %g, want %g", i, rs[0].Samples[i], w)
		}
	}
}

// A transaction Bundle's entries are decoded one by one; every bad entry names its problem.
func TestBundleEntries(t *testing.T) {
	d := testMapper(t).NewDecoder()
	b, err := ParseBundle(readFixture(t, "bundle-mixed.json"), 100, true)
	if err != nil {
		t.Fatal(err)
	}
	es := d.Entries(b, true)
	want := []string{"", CodeUnknownCode, CodeInvalidRequest, reading.CodeMissingField}
	if len(es) != len(want) {
		t.Fatalf("%d entries", len(es))
	}
	for i, e := range es {
		got := ""
		if len(e.Issues) > 0 {
			got = e.Issues[0].Code
		}
		if got != want[i] {
			t.Errorf("entry %d: issue %q, want %q (%v)", i, got, want[i], e.Issues)
		}
	}
	oo := OutcomeOf(es[3].Issues, EntryPath(3, es[3].EntryLevel))
	if oo.Issue[0].Expression[0] != "Bundle.entry[3].resource.valueQuantity.unit" {
		t.Fatalf("expression %v", oo.Issue[0].Expression)
	}
}

func TestParseBundleRefuses(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
	}{
		{"not json", `{`, 400},
		{"not a bundle", `{"resourceType":"Observation"}`, 400},
		{"collection", `{"resourceType":"Bundle","type":"collection","entry":[{}]}`, 400},
		{"empty", `{"resourceType":"Bundle","type":"batch"}`, 400},
		{"too many", `{"resourceType":"Bundle","type":"batch","entry":[{},{},{}]}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseBundle([]byte(tt.body), 2, true)
			be, ok := err.(*BundleError)
			if !ok || be.Status != tt.status {
				t.Fatalf("got %v, want status %d", err, tt.status)
			}
		})
	}
}

func FuzzBundle(f *testing.F) {
	for _, name := range []string{"bundle-mixed.json", "observation-example-heart-rate.json", "observation-example-bloodpressure.json", "observation-example-satO2.json"} {
		f.Add(readFixture(f, name))
	}
	m := testMapper(f)
	d := m.NewDecoder()
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := ParseBundle(data, 50, false); err == nil {
			for _, e := range d.Entries(b, true) {
				if (e.Readings == nil) == (e.Issues == nil) {
					t.Fatalf("entry with both or neither readings and issues: %+v", e)
				}
			}
		}
		rs, issues := d.Observation(data, "")
		if (rs == nil) == (issues == nil) {
			t.Fatalf("both or neither: %v %v", rs, issues)
		}
		for _, r := range rs {
			// Every reading decoded encodes back to an Observation of its kind.
			if _, ok := m.Encode(&r, r.Identity().String()); !ok {
				t.Fatalf("decoded reading %+v does not encode", r)
			}
		}
	})
}
