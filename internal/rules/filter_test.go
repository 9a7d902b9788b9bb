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
	filter := stream.Filter{Kinds: func(k string) bool { return e.set.Load().uses(k) }, Brief: true}
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
