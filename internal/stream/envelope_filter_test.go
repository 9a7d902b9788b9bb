package stream

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// filterBatch is an envelope of heart-rate, step and SpO2 readings of three subjects (some
// with a client id) and a rejected record.
func filterBatch(t testing.TB, n int) []byte {
	t.Helper()
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	b := &Batch{Source: SourceImport, Received: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	for i := range n {
		subject := []string{"p-1", "p-2", "p-3"}[i%3]
		var raw string
		switch i % 4 {
		case 0, 1:
			raw = fmt.Sprintf(`{"subject":%q,"device":"watch","kind":"heart_rate","time":"2026-11-23T09:%02d:%02d.25Z","values":{"bpm":%d}}`, subject, i/60%60, i%60, 60+i%40)
		case 2:
			raw = fmt.Sprintf(`{"id":"c-%d","subject":%q,"device":"phone","kind":"steps","time":"2026-11-23T09:%02d:%02dZ","values":{"count":%d}}`, i, subject, i/60%60, i%60, i)
		case 3:
			raw = fmt.Sprintf(`{"subject":%q,"device":"watch","kind":"spo2","time":"2026-11-23T09:%02d:%02dZ","values":{"percent":97}}`, subject, i/60%60, i%60)
		}
		r, errs := p.Parse([]byte(raw))
		if errs != nil {
			t.Fatalf("%s: %v", raw, errs)
		}
		b.Entries = append(b.Entries, Entry{Identity: r.Identity(), Reading: &r, Raw: []byte(raw), Origin: fmt.Sprintf("export.xml:%d", i)})
		if i == n/2 {
			b.Entries = append(b.Entries, Entry{Errors: reading.Errors{{Code: "invalid-json", Path: "", Message: "not JSON"}}, Raw: []byte("{bad")})
		}
	}
	return b.Encode(nil)
}

// TestDecodeFilteredKeepsWhatTheFilterAsks: without Brief only the readings of the kinds
// the filter uses are kept, exactly as Decode reads them; with Brief the others are kept
// too, with the same id, subject, device, kind and time and no values nor identity;
// rejected records are left out.
func TestDecodeFilteredKeepsWhatTheFilterAsks(t *testing.T) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	data := filterBatch(t, 40)
	full, err := Decode(data, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Entries) != 41 {
		t.Fatalf("Decode: %d entries, want 41", len(full.Entries))
	}
	uses := func(kind string) bool { return kind == "heart_rate" }

	only, err := DecodeFiltered(data, p, Filter{Kinds: uses})
	if err != nil {
		t.Fatal(err)
	}
	var want []Entry
	for _, e := range full.Entries {
		if e.Reading != nil && e.Reading.Kind == "heart_rate" {
			want = append(want, e)
		}
	}
	if len(want) != 20 || !reflect.DeepEqual(only.Entries, want) {
		t.Errorf("filtered: %d entries, want the %d heart-rate ones as Decode reads them", len(only.Entries), len(want))
	}
	if only.Source != full.Source || !only.Received.Equal(full.Received) {
		t.Errorf("header %q %v, want %q %v", only.Source, only.Received, full.Source, full.Received)
	}

	brief, err := DecodeFiltered(data, p, Filter{Kinds: uses, Brief: true})
	if err != nil {
		t.Fatal(err)
	}
	var accepted []Entry
	for _, e := range full.Entries {
		if e.Reading != nil {
			accepted = append(accepted, e)
		}
	}
	if len(brief.Entries) != len(accepted) {
		t.Fatalf("brief: %d entries, want %d", len(brief.Entries), len(accepted))
	}
	nBrief := 0
	for i, got := range brief.Entries {
		w := accepted[i]
		if w.Reading.Kind == "heart_rate" {
			if got.Brief || !reflect.DeepEqual(got, w) {
				t.Errorf("entry %d: %+v, want %+v", i, got, w)
			}
			continue
		}
		nBrief++
		r := *w.Reading
		r.Values, r.Text, r.Samples = nil, nil, nil
		if !got.Brief || got.Identity != (reading.ID{}) || got.Reading == nil || !reflect.DeepEqual(*got.Reading, r) {
			t.Errorf("entry %d: %+v %+v, want a brief %+v", i, got, got.Reading, r)
		}
	}
	if nBrief != 20 {
		t.Errorf("%d brief entries, want 20", nBrief)
	}
}

// TestDecodeFilteredSince: readings before Filter.Since are left out whatever their kind,
// brief or not; later ones are decoded as without it.
func TestDecodeFilteredSince(t *testing.T) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	data := filterBatch(t, 240) // readings from 09:00:00 to 09:03:59
	since := time.Date(2026, 11, 23, 9, 2, 0, 0, time.UTC)
	all, err := Decode(data, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, brief := range []bool{false, true} {
		f := Filter{Kinds: func(k string) bool { return k == "heart_rate" }, Brief: brief, Since: func() time.Time { return since }}
		got, err := DecodeFiltered(data, p, f)
		if err != nil {
			t.Fatal(err)
		}
		var want []Entry
		for _, e := range all.Entries {
			if e.Reading == nil || e.Reading.Time.Before(since) {
				continue
			}
			if e.Reading.Kind != "heart_rate" {
				if !brief {
					continue
				}
				r := *e.Reading
				r.Values = nil
				e = Entry{Reading: &r, Brief: true}
			}
			want = append(want, e)
		}
		if n := 60 + 60*btoi(brief); len(got.Entries) != len(want) || len(want) != n {
			t.Fatalf("brief %v: %d entries, want %d of %d (of 240, half before %v; half of those heart rate)", brief, len(got.Entries), n, len(want), since)
		}
		if !reflect.DeepEqual(got.Entries, want) {
			t.Errorf("brief %v: entries differ from Decode's after %v", brief, since)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestDecodeFilteredChecksStructure: an entry cut short, or a reading without an identity,
// fails the filtered decode as it fails Decode, whatever its kind.
func TestDecodeFilteredChecksStructure(t *testing.T) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	head := "{\"v\":1,\"source\":\"http\",\"received\":\"2026-11-23T10:00:00Z\"}\n"
	for _, entry := range []string{
		`{"kind":"steps","reading":{"sub`,
		`{"reading":{"subject":"s","device":"d","kind":"steps","time":"2026-11-23T10:00:00Z","values":{"count":1}},"raw":{}}`,
		`{"id":"00","reading":{"subject":"s","device":"d","kind":"steps","time":"2026-11-23T10:00:00Z","values":{"count":1}},"raw":{}}`,
		`{"id":"` + strings.Repeat("0", 32) + `","reading":{"subject":"s","device":"d","kind":"steps","time":"2026-11-23T10:00:00Z","values":{"count":1}}}`,
	} {
		data := []byte(head + entry + "\n")
		if _, err := Decode(data, p); err == nil {
			t.Fatalf("Decode accepted %s", entry)
		}
		for _, f := range []Filter{{Kinds: func(string) bool { return false }}, {Kinds: func(string) bool { return false }, Brief: true}} {
			if _, err := DecodeFiltered(data, p, f); err == nil {
				t.Errorf("DecodeFiltered (brief %v) accepted %s", f.Brief, entry)
			}
		}
	}
	// Version 2 leaves raw out when it is the reading as written: Decode gives that back.
	rd := `{"subject":"s","device":"d","kind":"steps","time":"2026-11-23T10:00:00Z","values":{"count":1}}`
	data := []byte(strings.Replace(head, `"v":1`, `"v":2`, 1) + `{"id":"` + strings.Repeat("0", 32) + `","reading":` + rd + `,"origin":"o"}` + "\n")
	for _, general := range []bool{false, true} {
		b, err := decodeFiltered(data, entryDecoder{p: p, general: general})
		if err != nil || len(b.Entries) != 1 || string(b.Entries[0].Raw) != rd || b.Entries[0].Origin != "o" {
			t.Errorf("version 2 without raw (general path %v): %v %+v", general, err, b.Entries)
		}
	}
}

// BenchmarkDecode decodes an import envelope of 5,000 readings (half heart rate, a quarter
// steps, a quarter SpO2) in full, as the lake writer does; with a filter of one kind, as the
// anomaly detectors do; and with that filter keeping the other readings brief, as the rule
// engine does.
func BenchmarkDecode(b *testing.B) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	data := filterBatch(b, 5000)
	uses := func(kind string) bool { return kind == "spo2" }
	for _, bc := range []struct {
		name string
		f    Filter
	}{
		{"full", Filter{}},
		{"filtered", Filter{Kinds: uses}},
		{"filtered-brief", Filter{Kinds: uses, Brief: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeFiltered(data, p, bc.f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/5000, "ns/reading")
		})
	}
}

// TestConsumeFilterHandsOnlyUsedKinds: a consumer with a Filter hands its handler only the
// readings of the kinds it uses; a message it quarantines is described with every record.
func TestConsumeFilterHandsOnlyUsedKinds(t *testing.T) {
	f := newConsumeFixture(t)
	cons := f.follow(f.conn, "filtered", 30*time.Second)
	var mu sync.Mutex
	var kinds [][]string
	f.run(cons, ConsumerOptions{Name: "filtered", Filter: Filter{Kinds: func(k string) bool { return k == "heart_rate" }},
		Handle: func(_ context.Context, m *Msg) error {
			var ks []string
			for _, e := range m.Batch.Entries {
				ks = append(ks, e.Reading.Kind)
			}
			mu.Lock()
			kinds = append(kinds, ks)
			mu.Unlock()
			if len(ks) == 0 {
				return nil
			}
			return Poison(errors.New("refused"))
		}})
	p := reading.NewParser(f.kinds)
	b := &Batch{Source: SourceHTTP, Received: time.Now()}
	for _, raw := range []string{
		`{"subject":"s","device":"d","kind":"steps","time":1795428000000,"values":{"count":5}}`,
		`{"subject":"s","device":"d","kind":"heart_rate","time":1795428000000,"values":{"bpm":70}}`,
		`{"subject":"s","device":"d","kind":"spo2","time":1795428000000,"values":{"percent":97}}`,
	} {
		r, errs := p.Parse([]byte(raw))
		if errs != nil {
			t.Fatal(errs)
		}
		b.Entries = append(b.Entries, Entry{Identity: r.Identity(), Reading: &r, Raw: []byte(raw)})
	}
	b.Entries = append(b.Entries, Entry{Errors: reading.Errors{{Code: "invalid-json", Message: "not JSON"}}, Raw: []byte("{bad")})
	if _, err := f.conn.Publish(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	seq := f.lastSeq()
	ackedThrough(t, cons, seq)
	mu.Lock()
	if fmt.Sprint(kinds) != "[[heart_rate]]" {
		t.Errorf("handler saw %v, want [[heart_rate]]", kinds)
	}
	mu.Unlock()
	ps := f.poisoned()
	if len(ps) != 1 || ps[0].Seq != seq || ps[0].Reason != PoisonRejected || ps[0].Batch == nil {
		t.Fatalf("quarantined %+v", ps)
	}
	if got := ps[0].Batch.Entries; len(got) != 4 || got[0].Reading.Kind != "steps" || got[2].Reading.Values["percent"] != 97 || got[3].Reading != nil {
		t.Errorf("quarantined batch %+v, want all four records", got)
	}
}
