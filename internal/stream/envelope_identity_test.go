package stream

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// TestEnvelopeIdentityDerived: a version 3 envelope stores no identity, and every decoder
// (the scanner, the general path, each filter, Identities) derives the one the producer
// had, Reading.Identity(): for readings with and without a client id and with times in
// microseconds. Brief entries have none.
func TestEnvelopeIdentityDerived(t *testing.T) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	data := filterBatch(t, 40)
	env, err := Payload(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(env, []byte(`{"v":3,`)) {
		t.Fatalf("header %q, want version 3", env[:min(len(env), 40)])
	}
	for _, line := range strings.Split(string(env), "\n")[1:] {
		if strings.HasPrefix(line, `{"id":`) {
			t.Fatalf("a line stores its identity: %s", line)
		}
	}
	want := map[string]reading.ID{} // by origin (unique per entry)
	var wantIDs []reading.ID
	full, err := decodeFiltered(data, entryDecoder{p: p, general: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range full.Entries {
		if e.Accepted() {
			want[e.Origin] = e.Reading.Identity()
			wantIDs = append(wantIDs, e.Reading.Identity())
		}
	}
	if len(want) != 40 {
		t.Fatalf("%d accepted entries, want 40", len(want))
	}
	check := func(name string, b Batch, origins bool) {
		t.Helper()
		n := 0
		for _, e := range b.Entries {
			if !e.Accepted() {
				continue
			}
			n++
			if e.Identity != e.Reading.Identity() {
				t.Errorf("%s: identity %v, reading's %v", name, e.Identity, e.Reading.Identity())
			}
			if origins && e.Identity != want[e.Origin] {
				t.Errorf("%s: %s: identity %v, want %v", name, e.Origin, e.Identity, want[e.Origin])
			}
		}
		if n == 0 {
			t.Errorf("%s: no accepted entries", name)
		}
	}
	for _, general := range []bool{false, true} {
		for _, f := range []Filter{{}, {Kinds: func(k string) bool { return k == "spo2" }},
			{Kinds: func(k string) bool { return k == "spo2" }, Brief: true}} {
			b, err := decodeFiltered(data, entryDecoder{p: p, f: f, general: general})
			if err != nil {
				t.Fatal(err)
			}
			var full Batch
			for _, e := range b.Entries {
				if e.Brief {
					if e.Identity != (reading.ID{}) {
						t.Errorf("brief entry with an identity: %+v", e)
					}
				} else {
					full.Entries = append(full.Entries, e)
				}
			}
			check("decode", full, true)
		}
	}
	var got []reading.ID
	if err := Identities(data, p, func(_ time.Time, id reading.ID) { got = append(got, id) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, wantIDs) {
		t.Errorf("Identities %v, want %v", got, wantIDs)
	}
}

// TestEnvelopeVersion2StillDecodes: an envelope an earlier build stored (version 2, every
// accepted line with its identity) decodes with the identities it holds, by every path.
func TestEnvelopeVersion2StillDecodes(t *testing.T) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	const id1, id2 = "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
	env := []byte(`{"v":2,"source":"import","received":"2026-11-23T10:00:00Z"}
{"id":"` + id1 + `","reading":{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T09:00:00Z","values":{"bpm":70}},"origin":"export.xml:1"}
{"errors":[{"code":"invalid-json","path":"","message":"x"}],"raw_text":"{"}
{"id":"` + id2 + `","reading":{"id":"c-1","subject":"s","device":"d","kind":"steps","time":"2026-11-23T09:00:00.5Z","values":{"count":12}},"raw":{"x":1}}
`)
	want := []reading.ID{mustID(t, id1), mustID(t, id2)}
	for _, general := range []bool{false, true} {
		for _, c := range []struct {
			f    Filter
			want []reading.ID
		}{{Filter{}, want}, {Filter{Kinds: func(k string) bool { return k == "steps" }}, want[1:]}} {
			b, err := decodeFiltered(env, entryDecoder{p: p, f: c.f, general: general})
			if err != nil {
				t.Fatal(err)
			}
			var got []reading.ID
			for _, e := range b.Entries {
				if e.Accepted() {
					got = append(got, e.Identity)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("general %v, filter %v: identities %v, want %v", general, c.f.Kinds != nil, got, c.want)
			}
		}
	}
	var got []reading.ID
	if err := Identities(env, p, func(_ time.Time, id reading.ID) { got = append(got, id) }); err != nil || !slices.Equal(got, want) {
		t.Errorf("Identities: %v, %v; want %v", err, got, want)
	}
	// Version 2 without an identity is damaged, not derived.
	bad := bytes.Replace(env, []byte(`{"id":"`+id1+`",`), []byte(`{`), 1)
	if _, err := Decode(bad, p); err == nil || !strings.Contains(err.Error(), "without an id") {
		t.Errorf("version 2 line without its identity: %v", err)
	}
	// The same readings re-encoded (version 3) decode to the same readings.
	b, err := Decode(env, p)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Decode(b.Encode(nil), p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b.Entries {
		if !reflect.DeepEqual(again.Entries[i].Reading, b.Entries[i].Reading) {
			t.Errorf("entry %d: %+v, then %+v", i, b.Entries[i].Reading, again.Entries[i].Reading)
		}
	}
}

func mustID(t *testing.T, s string) reading.ID {
	t.Helper()
	id, err := reading.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
