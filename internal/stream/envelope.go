package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// Sources of batches; the landing zone keeps one table per source.
const (
	SourceHTTP   = "http"
	SourceMQTT   = "mqtt"
	SourceImport = "import"
)

// Batch is the unit written to the ingest stream: every record of one request (or one
// group of MQTT messages) with its outcome. Accepted records carry the normalized reading,
// rejected ones their field errors; both keep the payload exactly as received.
type Batch struct {
	Source   string    // http, mqtt, import, or connector:<name>
	Received time.Time // when pulselake received the payload
	Token    string    // ID of the token that sent it ("" for internal sources)
	Entries  []Entry
	// Set by Decode from the stream message metadata; zero when encoding.
	Seq uint64
}

// Entry is one record of a batch.
type Entry struct {
	Identity reading.ID       // identity of an accepted reading
	Reading  *reading.Reading // accepted, normalized reading; nil when rejected
	Errors   reading.Errors   // why the record was rejected; empty when accepted
	Raw      []byte           // the record exactly as received
	Origin   string           // where it came from within the source, e.g. an MQTT topic
}

// Accepted reports whether the entry holds a valid reading.
func (e *Entry) Accepted() bool { return e.Reading != nil }

// Envelope format v1 (documented in docs/formats.md): NDJSON; the first line is the header
// {"v":1,"source":...,"received":...,"token":...}; each further line is an entry
// {"id":...,"reading":{...},"raw":...} or {"errors":[...],"raw":...}. "raw" is the record as
// received when it is valid JSON, otherwise "raw_text" holds it as a JSON string.
const envelopeVersion = 1

type envelopeHeader struct {
	V        int       `json:"v"`
	Source   string    `json:"source"`
	Received time.Time `json:"received"`
	Token    string    `json:"token,omitempty"`
}

type envelopeEntry struct {
	ID      string          `json:"id,omitempty"`
	Reading json.RawMessage `json:"reading,omitempty"`
	Errors  reading.Errors  `json:"errors,omitempty"`
	Raw     json.RawMessage `json:"raw,omitempty"`
	RawText *string         `json:"raw_text,omitempty"`
	Origin  string          `json:"origin,omitempty"`
}

// Encode appends the envelope encoding of b to dst.
func (b *Batch) Encode(dst []byte) []byte {
	dst = b.encodeHeader(dst)
	for i := range b.Entries {
		dst = append(dst, '\n')
		dst = b.Entries[i].encode(dst)
	}
	return append(dst, '\n')
}

func (b *Batch) encodeHeader(dst []byte) []byte {
	h, _ := json.Marshal(envelopeHeader{V: envelopeVersion, Source: b.Source, Received: b.Received.UTC(), Token: b.Token})
	return append(dst, h...)
}

func (e *Entry) encode(dst []byte) []byte {
	dst = append(dst, '{')
	if e.Reading != nil {
		dst = append(dst, `"id":"`...)
		dst = append(dst, e.Identity.String()...)
		dst = append(dst, `","reading":`...)
		dst = e.Reading.AppendJSON(dst)
	} else {
		errs, _ := json.Marshal(e.Errors)
		dst = append(dst, `"errors":`...)
		dst = append(dst, errs...)
	}
	if e.Origin != "" {
		dst = append(dst, `,"origin":`...)
		dst = strconv.AppendQuote(dst, e.Origin) // origins are MQTT topics: printable ASCII
	}
	if e.Reading != nil || (json.Valid(e.Raw) && bytes.IndexByte(e.Raw, '\n') < 0) {
		dst = append(dst, `,"raw":`...)
		dst = append(dst, e.Raw...)
	} else {
		txt, _ := json.Marshal(string(e.Raw))
		dst = append(dst, `,"raw_text":`...)
		dst = append(dst, txt...)
	}
	return append(dst, '}')
}

// ErrBadEnvelope is returned for a stream message that is not a batch envelope.
var ErrBadEnvelope = errors.New("not a pulselake batch envelope")

// Decode parses an envelope. Readings are decoded with p, which must know every kind the
// producer knew (a reading of an unknown kind is an error, never silently dropped).
func Decode(data []byte, p *reading.Parser) (Batch, error) {
	line, rest, _ := bytes.Cut(data, []byte{'\n'})
	var h envelopeHeader
	if err := json.Unmarshal(line, &h); err != nil || h.V == 0 {
		return Batch{}, fmt.Errorf("%w: header %q", ErrBadEnvelope, truncate(line))
	}
	if h.V != envelopeVersion {
		return Batch{}, fmt.Errorf("%w: version %d, this build reads version %d", ErrBadEnvelope, h.V, envelopeVersion)
	}
	b := Batch{Source: h.Source, Received: h.Received, Token: h.Token}
	n := bytes.Count(rest, []byte{'\n'})
	b.Entries = make([]Entry, 0, n)
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		var ee envelopeEntry
		if err := json.Unmarshal(line, &ee); err != nil {
			return Batch{}, fmt.Errorf("%w: entry %d: %v", ErrBadEnvelope, len(b.Entries), err)
		}
		e := Entry{Errors: ee.Errors, Raw: ee.Raw, Origin: ee.Origin}
		if ee.RawText != nil {
			e.Raw = []byte(*ee.RawText)
		}
		if ee.Reading != nil {
			r, errs := p.Parse(ee.Reading)
			if errs != nil {
				return Batch{}, fmt.Errorf("%w: entry %d: decoding reading: %v", ErrBadEnvelope, len(b.Entries), errs)
			}
			id, err := reading.ParseID(ee.ID)
			if err != nil {
				return Batch{}, fmt.Errorf("%w: entry %d: %v", ErrBadEnvelope, len(b.Entries), err)
			}
			e.Reading, e.Identity = &r, id
		}
		b.Entries = append(b.Entries, e)
	}
	return b, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
