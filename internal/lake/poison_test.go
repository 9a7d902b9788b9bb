package lake

import (
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
)

// Every quarantine.poison row holds one subject's record at most, so erase finds it; an
// undecodable message is one row with no subject.
func TestPoisonRowsOnePerRecord(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	b := &stream.Batch{Entries: []stream.Entry{
		{Reading: &reading.Reading{Subject: "p-1"}, Raw: []byte(`{"subject":"p-1"}`)},
		{Raw: []byte(`{"subject":"p-2","kind":"nope"}`)}, // rejected: subject read from the payload
		{Raw: []byte(`not json`)},
	}}
	p := stream.Poisoned{Consumer: "rules", Reason: stream.PoisonRejected, Seq: 7, Data: []byte("whole message"), Batch: b}
	rows := PoisonRows(p, now)
	if len(rows) != 3 {
		t.Fatalf("got %d rows, want one per record (3)", len(rows))
	}
	col := func(name string) int {
		for i, c := range PoisonColumns {
			if c.Name == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return -1
	}
	for i, want := range []struct {
		subject any
		raw     string
	}{{"p-1", `{"subject":"p-1"}`}, {"p-2", `{"subject":"p-2","kind":"nope"}`}, {nil, "not json"}} {
		r := rows[i]
		if len(r) != len(PoisonColumns) {
			t.Fatalf("row %d has %d values for %d columns", i, len(r), len(PoisonColumns))
		}
		if r[col("subject")] != want.subject || r[col("raw")] != want.raw || r[col("entry")] != int64(i) ||
			r[col("raw_bytes")] != int64(len(want.raw)) || r[col("seq")] != int64(7) {
			t.Errorf("row %d = %v", i, r)
		}
	}
	p.Batch = nil
	rows = PoisonRows(p, now)
	if len(rows) != 1 || rows[0][col("subject")] != nil || rows[0][col("entry")] != nil || rows[0][col("raw")] != "whole message" {
		t.Errorf("undecodable message rows = %v", rows)
	}
}
