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

// PoisonColumns are the columns of quarantine.poison: one row per message and consumer.
var PoisonColumns = []Column{
	{ColTime, Timestamp}, // when the consumer terminated the message
	{"consumer", String}, // the durable consumer that gave up on it
	{"reason", String},   // undecodable, rejected or max-deliver
	{"error", String},
	{"deliveries", Int64},      // deliveries to the consumer, the last included
	{"stream_subject", String}, // e.g. ingest.http
	{"seq", Int64},             // ingest stream sequence
	{"stored", Timestamp},      // when the stream stored it
	{ColSubject, String},       // the readings' subject when they all have one, else NULL
	{"raw", String},            // the payload, its first PoisonRawLimit bytes
	{"raw_bytes", Int64},       // the payload's full size
}

// PoisonRow is the quarantine.poison row of p.
func PoisonRow(p stream.Poisoned, now time.Time) []any {
	raw := p.Data
	if len(raw) > PoisonRawLimit {
		raw = raw[:PoisonRawLimit]
	}
	var subject any
	if s := batchSubject(p.Batch); s != "" {
		subject = s
	}
	return []any{now.UTC(), p.Consumer, p.Reason, p.Err, int64(p.Delivered), p.Subject, int64(p.Seq),
		p.Stored.UTC(), subject, string(raw), int64(len(p.Data))}
}

// batchSubject is the one subject of a batch's records ("" when none or several).
func batchSubject(b *stream.Batch) string {
	if b == nil {
		return ""
	}
	subject := ""
	for i := range b.Entries {
		s := ""
		if r := b.Entries[i].Reading; r != nil {
			s = r.Subject
		} else {
			s = subjectOf(b.Entries[i].Raw)
		}
		if s == "" || subject != "" && s != subject || len(s) > reading.MaxIDLen {
			return ""
		}
		subject = s
	}
	return subject
}
