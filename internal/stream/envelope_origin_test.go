package stream

import (
	"bytes"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pulselake/pulselake/internal/reading"
)

// TestEnvelopeOriginsRoundTrip: an entry's origin and identity read back as written, for
// plain topics and file:line origins and for ones that need escaping in JSON.
func TestEnvelopeOriginsRoundTrip(t *testing.T) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	raw := []byte(`{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70}}`)
	r, errs := p.Parse(raw)
	if errs != nil {
		t.Fatal(errs)
	}
	for _, origin := range []string{
		"readings/heart_rate/watch-1",
		"export.xml:123456",
		"Exportación.xml:7",
		`a "quoted" \ name`,
		"control\x01char\ttab",
		"\u2028 line separator",
	} {
		b := &Batch{Source: "import", Received: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
		e := Entry{Reading: &r, Identity: r.Identity(), Raw: raw, Origin: origin}
		env := append(b.encodeHeader(nil), '\n')
		env = append(e.encode(env), '\n')
		got, err := Decode(env, p)
		if err != nil {
			t.Fatalf("origin %q: %v\n%s", origin, err, env)
		}
		if len(got.Entries) != 1 || got.Entries[0].Origin != origin || got.Entries[0].Identity != e.Identity {
			t.Fatalf("origin %q: decoded %+v", origin, got.Entries)
		}
	}
}

// TestEnvelopeRawOnce: an entry whose record as received is the reading as written carries
// it once (no "raw" member); a record received in another form keeps its raw. Both decode
// to their raw byte for byte.
func TestEnvelopeRawOnce(t *testing.T) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	sent := []byte(`{ "subject":"s", "device":"d", "kind":"heart_rate", "time":"2026-11-23T10:00:00Z", "values":{"bpm":70} }`)
	r, errs := p.Parse(sent)
	if errs != nil {
		t.Fatal(errs)
	}
	written := r.AppendJSON(nil)
	b := &Batch{Source: "import", Received: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), Entries: []Entry{
		{Reading: &r, Identity: r.Identity(), Raw: written, Origin: "export.xml:1"},
		{Reading: &r, Identity: r.Identity(), Raw: sent},
	}}
	env := b.Encode(nil)
	if n := bytes.Count(env, []byte(`"raw":`)); n != 1 {
		t.Fatalf("%d raw members, want 1 (the record sent in another form):\n%s", n, env)
	}
	got, err := Decode(env, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 2 || !bytes.Equal(got.Entries[0].Raw, written) || !bytes.Equal(got.Entries[1].Raw, sent) || got.Entries[0].Origin != "export.xml:1" {
		t.Fatalf("decoded %+v", got.Entries)
	}
}

// TestEnvelopeRawWithLineBreaks: a record that spans lines (an element of a pretty-printed
// JSON array, an Observation of a pretty-printed FHIR Bundle) is accepted whole; its
// envelope line must not break there. It is kept in raw_text and decodes byte for byte, by
// every decoder.
func TestEnvelopeRawWithLineBreaks(t *testing.T) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	body := []byte("[\n  {\n    \"subject\": \"s\",\n    \"device\": \"d\",\n    \"kind\": \"heart_rate\",\n    \"time\": \"2026-11-23T10:00:00Z\",\n    \"values\": {\"bpm\": 70}\n  },\n  {\"subject\":\"s\",\"device\":\"d\",\"kind\":\"heart_rate\",\"time\":\"2026-11-23T10:00:01Z\",\"values\":{\"bpm\":71}}\n]")
	raws, err := reading.SplitBody(body, "json", 10)
	if err != nil || len(raws) != 2 || !bytes.Contains(raws[0], []byte("\n")) {
		t.Fatalf("split: %q, %v", raws, err)
	}
	b := &Batch{Source: SourceHTTP, Received: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	for _, raw := range raws {
		r, errs := p.Parse(raw)
		if errs != nil {
			t.Fatal(errs)
		}
		b.Entries = append(b.Entries, Entry{Reading: &r, Identity: r.Identity(), Raw: raw})
	}
	b.Entries = append(b.Entries, Entry{Errors: reading.Errors{{Code: "invalid-json"}}, Raw: []byte("{\n\"subject\":")})
	env := b.Encode(nil)
	if n := bytes.Count(env, []byte("\n")); n != 4 {
		t.Fatalf("%d lines, want 4 (header and three records):\n%s", n, env)
	}
	for _, general := range []bool{false, true} {
		got, err := decodeFiltered(env, entryDecoder{p: p, general: general})
		if err != nil {
			t.Fatalf("general path %v: %v", general, err)
		}
		for i, e := range got.Entries {
			if !bytes.Equal(e.Raw, b.Entries[i].Raw) || e.Identity != b.Entries[i].Identity {
				t.Errorf("general path %v: entry %d raw %q, want %q", general, i, e.Raw, b.Entries[i].Raw)
			}
		}
	}
}

// FuzzStoredBodyDecodes: whatever a request body holds, the envelope of its records (each
// accepted or rejected as intake would) decodes, every decoder path reads the same, and each
// record comes back byte for byte with its reading (a record kept as text, with bytes that
// are not UTF-8 replaced). A record that broke its envelope line was accepted with 202 and
// then set aside by every consumer as an unreadable message.
func FuzzStoredBodyDecodes(f *testing.F) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	p.Now = func() time.Time { return time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC) }
	f.Add([]byte("[\n {\"subject\": \"s\",\n  \"device\": \"d\", \"kind\": \"heart_rate\", \"time\": \"2026-11-23T10:00:00Z\", \"values\": {\"bpm\": 70}}\n]"), false)
	f.Add([]byte("{\"subject\":\"s\",\"device\":\"d\",\"kind\":\"spo2\",\"time\":1795425600123,\"values\":{\"percent\":97}}\n{bad\n"), true)
	f.Add([]byte(`{"id":"c-1","subject":"s","device":"d","kind":"steps","time":"2026-11-23T10:00:00.5+01:00","values":{"count":12}}`), false)
	f.Fuzz(func(t *testing.T, body []byte, ndjson bool) {
		format := reading.FormatJSON
		if ndjson {
			format = reading.FormatNDJSON
		}
		raws, err := reading.SplitBody(body, format, 100)
		if err != nil {
			raws = [][]byte{body} // intake keeps a malformed body whole, rejected
		}
		b := &Batch{Source: SourceHTTP, Received: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), Token: "t"}
		for _, raw := range raws {
			r, errs := p.Parse(raw)
			if errs != nil {
				b.Entries = append(b.Entries, Entry{Errors: errs, Raw: raw})
				continue
			}
			b.Entries = append(b.Entries, Entry{Reading: &r, Identity: r.Identity(), Raw: raw})
		}
		env := b.Encode(nil)
		for _, general := range []bool{false, true} {
			got, err := decodeFiltered(Compress(env), entryDecoder{p: p, general: general})
			if err != nil {
				t.Fatalf("general path %v: %v\n%s", general, err, env)
			}
			if len(got.Entries) != len(b.Entries) {
				t.Fatalf("general path %v: %d entries, want %d", general, len(got.Entries), len(b.Entries))
			}
			for i, e := range got.Entries {
				w := b.Entries[i]
				// The one difference allowed: bytes that are not UTF-8, in a record kept as text.
				sameRaw := bytes.Equal(e.Raw, w.Raw) || !utf8.Valid(w.Raw) && bytes.Equal(e.Raw, asJSONString(w.Raw))
				if !sameRaw || e.Identity != w.Identity || (e.Reading == nil) != (w.Reading == nil) ||
					e.Reading != nil && !reflect.DeepEqual(*e.Reading, *w.Reading) {
					t.Fatalf("general path %v: entry %d = %+v, want %+v", general, i, e, w)
				}
			}
		}
	})
}

// asJSONString is raw as encoding/json writes it into a string: each byte that does not
// begin a valid UTF-8 sequence becomes U+FFFD.
func asJSONString(raw []byte) []byte {
	var out []byte
	for len(raw) > 0 {
		r, n := utf8.DecodeRune(raw)
		out = utf8.AppendRune(out, r) // utf8.RuneError for an invalid byte
		raw = raw[n:]
	}
	return out
}
