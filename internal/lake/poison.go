package lake

import (
	"time"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
)

// PoisonTable is quarantine.poison: ingest stream messages a processor (rule engine,
// anomaly detectors, ECG classifier) terminated because it could never handle them. The lake
// writer never terminates a message: what it cannot decode goes to quarantine.readings.
const PoisonTable = "poison"

// PoisonRawLimit is how much of a terminated message's payload a row keeps; the whole
// message stays in the stream for its retention (column seq).
const PoisonRawLimit = 64 << 10

// PoisonColumns are the columns of quarantine.poison: one row per record of a terminated
// message and consumer (one row with the whole payload when the message could not be
// decoded), so that every row holds one subject's data at most and erase can find it.
var PoisonColumns = []Column{
	{ColTime, Timestamp}, // when the consumer terminated the message
	{"consumer", String}, // the durable consumer that gave up on it
	{"reason", String},   // undecodable, rejected or max-deliver
	{"error", String},
	{"deliveries", Int64},      // deliveries to the consumer, the last included
	{"stream_subject", String}, // e.g. ingest.http
	{"seq", Int64},             // ingest stream sequence
	{"stored", Timestamp},      // when the stream stored it
	{"entry", Int64},           // the record's index in the message; NULL for an undecodable message
	{ColSubject, String},       // the record's subject (best effort for a rejected record)
	{"raw", String},            // the record (or undecodable payload), its first PoisonRawLimit bytes
	{"raw_bytes", Int64},       // its full size
}

// PoisonRows are the quarantine.poison rows of p: one per record of its batch, or one with
// the whole payload when it could not be decoded.
func PoisonRows(p stream.Poisoned, now time.Time) [][]any {
	row := func(entry, subject any, raw []byte) []any {
		n := len(raw)
		if n > PoisonRawLimit {
			raw = raw[:PoisonRawLimit]
		}
		return []any{now.UTC(), p.Consumer, p.Reason, p.Err, int64(p.Delivered), p.Subject, int64(p.Seq),
			p.Stored.UTC(), entry, subject, string(raw), int64(n)}
	}
	if p.Batch == nil || len(p.Batch.Entries) == 0 {
		return [][]any{row(nil, nil, p.Data)}
	}
	rows := make([][]any, 0, len(p.Batch.Entries))
	for i := range p.Batch.Entries {
		e := &p.Batch.Entries[i]
		s := ""
		if e.Reading != nil {
			s = e.Reading.Subject
		} else {
			s = subjectOf(e.Raw)
		}
		var subject any
		if s != "" && len(s) <= reading.MaxIDLen {
			subject = s
		}
		rows = append(rows, row(int64(i), subject, e.Raw))
	}
	return rows
}
