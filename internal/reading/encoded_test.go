package reading

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// parseEncoded is ReadEncodedHead then ParseEncoded, as the stream's decoder calls them.
func parseEncoded(p *Parser, data []byte) (Reading, int, bool) {
	h, ok := ReadEncodedHead(data)
	if !ok {
		return Reading{}, 0, false
	}
	return p.ParseEncoded(data, h)
}

// randomReadings are valid readings of every built-in kind and a declared one, with the
// values, ids, devices and times the stream holds.
func randomReadings(p *Parser, n int, seed uint64) []Reading {
	rng := rand.New(rand.NewPCG(seed, 1))
	kinds := append(Builtin(), &Kind{Name: "glucose"})
	var out []Reading
	for len(out) < n {
		k, _ := p.reg.Kind(kinds[rng.IntN(len(kinds))].Name)
		r := Reading{Subject: "patient-" + strconv.Itoa(rng.IntN(5)), Device: []string{"Alices-Apple-Watch.Watch6-1", "bp", "d_2"}[rng.IntN(3)], Kind: k.Name,
			Time: time.Date(2026, time.Month(1+rng.IntN(10)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e6)*1000*rng.IntN(2), time.UTC)}
		if rng.IntN(2) == 0 {
			r.ID = "ah-" + strconv.FormatUint(rng.Uint64(), 16)
		}
		for _, f := range k.Fields {
			if !f.Required && rng.IntN(2) == 0 {
				continue
			}
			lo, hi := -1000.0, 1000.0
			if f.Min != nil {
				lo = *f.Min
			}
			if f.Max != nil {
				hi = *f.Max
			}
			v := func() float64 {
				x := lo + (hi-lo)*(0.01+0.98*rng.Float64())
				switch rng.IntN(3) {
				case 0:
					return math.Round(x) // integers, as most sensors send
				case 1:
					return math.Round(x*10) / 10
				}
				return x
			}
			switch f.Type {
			case Number:
				if r.Values == nil {
					r.Values = map[string]float64{}
				}
				r.Values[f.Name] = v()
			case Text:
				if r.Text == nil {
					r.Text = map[string]string{}
				}
				r.Text[f.Name] = "N"
				if len(f.Enum) > 0 {
					r.Text[f.Name] = f.Enum[rng.IntN(len(f.Enum))]
				}
			case Samples:
				m := f.Len
				if m == 0 {
					m = 1 + rng.IntN(500)
				}
				r.Samples = make([]float64, m)
				for i := range r.Samples {
					r.Samples[i] = v()
				}
			}
		}
		if k.Name == "blood_pressure" && r.Values["diastolic"] >= r.Values["systolic"] {
			continue
		}
		if errs := p.Check(&r); errs != nil {
			panic(errs.Error())
		}
		out = append(out, r)
	}
	return out
}

// TestParseEncodedAgreesWithParse: every valid reading as AppendJSON writes it is read by
// the scanner (not left to Parse) into exactly the reading Parse gives, with the length of
// its JSON.
func TestParseEncodedAgreesWithParse(t *testing.T) {
	p := newTestParser(t)
	for i, r := range randomReadings(p, 3000, 1) {
		wire := r.AppendJSON(nil)
		want, errs := p.Parse(wire)
		if errs != nil {
			t.Fatalf("reading %d: Parse: %v", i, errs)
		}
		got, n, ok := parseEncoded(p, append(wire, `,"raw":{}}`...))
		if !ok {
			t.Fatalf("reading %d left to Parse: %s", i, wire)
		}
		if n != len(wire) {
			t.Fatalf("reading %d: length %d, want %d", i, n, len(wire))
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("reading %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

// TestParseEncodedLeavesTheRestToParse: readings not in the stored form or not valid are
// not read by the scanner, so that Parse reports them as it always did.
func TestParseEncodedLeavesTheRestToParse(t *testing.T) {
	p := newTestParser(t)
	for _, data := range []string{
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":900}}`,              // out of range
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":60,"bpm":61}}`,      // duplicate
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":60,"x":1}}`,         // unknown value
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":"60"}}`,             // wrong type
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{}}`,                       // missing value
		`{"subject":"s","device":"d","kind":"mood","time":"2026-11-23T10:00:00Z","values":{"x":1}}`,                        // unknown kind
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-02-30T10:00:00Z","values":{"bpm":60}}`,               // no such day
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00+01:00","values":{"bpm":60}}`,          // offset
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00.1234567Z","values":{"bpm":60}}`,       // nanoseconds
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2030-11-23T10:00:00Z","values":{"bpm":60}}`,               // future
		`{"subject":"s","device":"d","kind":"heart_rate","time":1795428000000,"values":{"bpm":60}}`,                        // epoch
		`{"subject":"s\u0041","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":60}}`,         // escape
		`{"device":"d","subject":"s","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":60}}`,               // order
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":060}}`,              // not JSON
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":1e999}}`,            // overflow
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":60},"extra":1}`,     // member
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":60}`,                // cut
		`{"subject":"s","device":"-d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":60}}`,              // device
		`{"subject":"s","device":"d","kind":"ecg_beat","time":"2026-11-23T10:00:00Z","values":{"samples":[]}}`,             // empty
		`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":60,"samples":[1]}}`, // samples
	} {
		if r, _, ok := parseEncoded(p, []byte(data)); ok {
			t.Errorf("read by the scanner: %s\n→ %+v", data, r)
		}
	}
}

// FuzzParseEncoded: whatever the scanner reads, Parse reads the same way.
func FuzzParseEncoded(f *testing.F) {
	p := newTestParser(f)
	for _, r := range randomReadings(p, 40, 2) {
		f.Add(r.AppendJSON(nil))
	}
	f.Add([]byte(`{"subject":"s","device":"d","kind":"sleep","time":"2026-11-23T10:00:00Z","values":{"duration_s":1,"stage":"deep"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := newTestParser(t)
		got, n, ok := parseEncoded(p, data)
		if !ok {
			return
		}
		want, errs := p.Parse(data[:n])
		if errs != nil {
			t.Fatalf("scanner read %q, Parse refuses it: %v", data[:n], errs)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n scanner %+v\n   Parse %+v", data[:n], got, want)
		}
		// The identity a stream decoder derives from the head alone is the reading's.
		h, _ := ReadEncodedHead(data)
		if id, ok := h.Identity(); !ok || id != want.Identity() {
			t.Fatalf("%q: head identity %v (%v), reading's %v", data[:n], id, ok, want.Identity())
		}
		// And what AppendJSON writes reads back with the same identity.
		again, errs := p.Parse(want.AppendJSON(nil))
		if errs != nil || again.Identity() != want.Identity() {
			t.Fatalf("%q: written again %v, identity %v, was %v", data[:n], errs, again.Identity(), want.Identity())
		}
	})
}

func BenchmarkParseEncoded(b *testing.B) {
	p := newTestParser(b)
	r := Reading{ID: "ah-0f8a1c2e9b7d4a3f0f8a1c2e9b7d4a3f", Subject: "bench", Device: "Alices-Apple-Watch.Watch6-1", Kind: "heart_rate",
		Time: time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC), Values: map[string]float64{"bpm": 61}}
	wire := r.AppendJSON(nil)
	b.Run("scanner", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := parseEncoded(p, wire); !ok {
				b.Fatal("left to Parse")
			}
		}
	})
	b.Run("Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, errs := p.Parse(wire); errs != nil {
				b.Fatal(errs)
			}
		}
	})
}
