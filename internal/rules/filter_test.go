package rules

import (
	"context"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
)

// TestEngineFilterAndReload: readings of kinds no rule evaluates reach the engine brief and
// still mark their device seen; a message decoded brief before a reload added a rule for
// its kind is decoded again in full, so that the new rule sees its values.
func TestEngineFilterAndReload(t *testing.T) {
	reg := registry(t)
	e, err := NewEngine(context.Background(), discard(), nil, Options{Registry: reg, SeenInterval: time.Nanosecond,
		Rules: []Rule{{Name: "crisis", Kind: "blood_pressure", When: "systolic >= 180"}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	p := reading.NewParser(reg)
	raw := []byte(`{"subject":"a","device":"d1","kind":"steps","time":"` + now.Format(time.RFC3339) + `","values":{"count":5000}}`)
	r, errs := p.Parse(raw)
	if errs != nil {
		t.Fatal(errs)
	}
	data := (&stream.Batch{Source: stream.SourceHTTP, Received: now, Entries: []stream.Entry{{Identity: r.Identity(), Reading: &r, Raw: raw}}}).Encode(nil)
	filter := e.filter()
	decode := func() *stream.Msg {
		b, err := stream.DecodeFiltered(data, p, filter)
		if err != nil {
			t.Fatal(err)
		}
		return &stream.Msg{Batch: b, Data: data, Seq: 1}
	}

	m := decode()
	if en := m.Batch.Entries; len(en) != 1 || !en[0].Brief || en[0].Reading.Values != nil {
		t.Fatalf("steps decoded %+v, want one brief reading", en)
	}
	if err := e.handle(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	seen := e.ev.seen[devKey{"a", "d1"}]
	e.mu.Unlock()
	if seen == nil || seen.Kind != "steps" {
		t.Errorf("device a/d1 seen: %+v, want seen by its steps reading", seen)
	}

	m = decode() // decoded for the old rules, handled by the new ones
	if err := e.Reload([]Rule{{Name: "active", Kind: "steps", When: "count > 1000"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.handle(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if en := m.Batch.Entries; len(en) != 1 || en[0].Brief || en[0].Reading.Values["count"] != 5000 {
		t.Errorf("after the reload the message holds %+v, want the full reading", en)
	}
	if got := e.Alerts(StateFiring); len(got) != 1 || got[0].Rule != "active" {
		t.Errorf("firing alerts %+v, want the new rule's", got)
	}
}

// TestEngineLeavesOutReadingsBeforeTheHorizon: readings older than MaxReadingAge and the
// longest window (an import of years past) are left out of the batch undecoded, and what is
// left fires the same alerts: a stale reading 65 minutes old is still counted in the 10-minute
// window of a reading 58 minutes old, which changes alert state.
func TestEngineLeavesOutReadingsBeforeTheHorizon(t *testing.T) {
	reg := registry(t)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	e, err := NewEngine(context.Background(), discard(), nil, Options{Registry: reg, Now: func() time.Time { return now },
		Rules: []Rule{{Name: "pair", Kind: "heart_rate", When: "count(bpm, 10m) >= 2"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.horizon(), now.Add(-70*time.Minute); !got.Equal(want) {
		t.Fatalf("horizon %v, want %v (MaxReadingAge 1h and the 10m window)", got, want)
	}
	p := reading.NewParser(reg)
	p.Now = func() time.Time { return now }
	b := &stream.Batch{Source: stream.SourceImport, Received: now}
	for _, ago := range []time.Duration{3 * 365 * 24 * time.Hour, 3*365*24*time.Hour - time.Minute, 65 * time.Minute, 58 * time.Minute} {
		r := reading.Reading{Subject: "a", Device: "watch", Kind: "heart_rate", Time: now.Add(-ago), Values: map[string]float64{"bpm": 70}}
		if errs := p.Check(&r); errs != nil {
			t.Fatal(errs)
		}
		b.Entries = append(b.Entries, stream.Entry{Identity: r.Identity(), Reading: &r, Raw: r.AppendJSON(nil)})
	}
	data := b.Encode(nil)
	got, err := stream.DecodeFiltered(data, p, e.filter())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 2 || !got.Entries[0].Reading.Time.Equal(now.Add(-65*time.Minute)) {
		t.Fatalf("decoded %d entries %+v, want the two of the last 70 minutes", len(got.Entries), got.Entries)
	}
	if err := e.handle(context.Background(), &stream.Msg{Batch: got, Data: data, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if a := e.Alerts(StateFiring); len(a) != 1 || a[0].Rule != "pair" {
		t.Errorf("firing alerts %+v, want pair (the 58-minute reading's window holds both)", a)
	}
}
