package stream

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
		dst = hex.AppendEncode(dst, e.Identity[:])
		dst = append(dst, `","reading":`...)
		dst = e.Reading.AppendJSON(dst)
	} else {
		errs, _ := json.Marshal(e.Errors)
		dst = append(dst, `"errors":`...)
		dst = append(dst, errs...)
	}
	if e.Origin != "" {
		dst = append(dst, `,"origin":`...)
		dst = appendOrigin(dst, e.Origin)
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

// appendOrigin appends origin as a JSON string. Origins are MQTT topics and file:line:
// printable ASCII is written as it is; anything else goes through encoding/json.
func appendOrigin(dst []byte, origin string) []byte {
	for i := 0; i < len(origin); i++ {
		if c := origin[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(origin)
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, origin...)
	return append(dst, '"')
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
		e, err := decodeEntry(line, p)
		if err != nil {
			return Batch{}, fmt.Errorf("%w: entry %d: %v", ErrBadEnvelope, len(b.Entries), err)
		}
		b.Entries = append(b.Entries, e)
	}
	return b, nil
}

// Identities calls f with the receive time of an envelope and the identity of each of its
// accepted entries, without parsing readings: what rebuilding the ingest de-duplication
// window needs, at a fraction of Decode's cost.
func Identities(data []byte, f func(received time.Time, id reading.ID)) error {
	line, rest, _ := bytes.Cut(data, []byte{'\n'})
	var h envelopeHeader
	if err := json.Unmarshal(line, &h); err != nil || h.V == 0 {
		return fmt.Errorf("%w: header %q", ErrBadEnvelope, truncate(line))
	}
	if h.V != envelopeVersion {
		return fmt.Errorf("%w: version %d, this build reads version %d", ErrBadEnvelope, h.V, envelopeVersion)
	}
	idPrefix, readingAfterID := []byte(`{"id":"`), []byte(`","reading":`)
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		var hexID []byte
		if bytes.HasPrefix(line, idPrefix) && bytes.HasPrefix(line[min(len(line), len(idPrefix)+32):], readingAfterID) {
			hexID = line[len(idPrefix) : len(idPrefix)+32] // Encode writes the id, then the reading
		} else {
			hasReading := false
			err := eachMember(line, func(key, val []byte) error {
				switch string(key) {
				case "id":
					if len(val) >= 2 {
						hexID = val[1 : len(val)-1]
					}
				case "reading":
					hasReading = true
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("%w: %v", ErrBadEnvelope, err)
			}
			if !hasReading {
				continue // a rejected record
			}
		}
		var id reading.ID
		if _, err := hex.Decode(id[:], hexID); err != nil || len(hexID) != 32 {
			return fmt.Errorf("%w: identity %q", ErrBadEnvelope, hexID)
		}
		f(h.Received, id)
	}
	return nil
}

// decodeEntry decodes one entry line. The line is split into its members without building
// a document (the lake writer decodes every stored reading, so this is on its hot path);
// the reading is parsed straight from its bytes and raw is kept byte for byte.
func decodeEntry(line []byte, p *reading.Parser) (Entry, error) {
	var (
		e          Entry
		id, rd     []byte
		rawText    []byte
		hasReading bool
	)
	err := eachMember(line, func(key, val []byte) error {
		switch string(key) {
		case "id":
			id = val
		case "reading":
			rd, hasReading = val, true
		case "errors":
			return json.Unmarshal(val, &e.Errors)
		case "origin":
			return json.Unmarshal(val, &e.Origin)
		case "raw":
			e.Raw = val
		case "raw_text":
			rawText = val
		}
		return nil
	})
	if err != nil {
		return Entry{}, err
	}
	if e.Raw == nil && rawText == nil {
		return Entry{}, errors.New("entry without raw or raw_text")
	}
	if rawText != nil {
		var s string
		if err := json.Unmarshal(rawText, &s); err != nil {
			return Entry{}, fmt.Errorf("raw_text: %v", err)
		}
		e.Raw = []byte(s)
	}
	if hasReading {
		r, errs := p.Parse(rd)
		if errs != nil {
			return Entry{}, fmt.Errorf("decoding reading: %v", errs)
		}
		if len(id) < 2 || id[0] != '"' {
			return Entry{}, errors.New("reading without an id")
		}
		ident, err := reading.ParseID(string(id[1 : len(id)-1]))
		if err != nil {
			return Entry{}, err
		}
		e.Reading, e.Identity = &r, ident
	}
	return e, nil
}

// eachMember calls f with the key (unquoted; keys of envelope entries have no escapes) and
// the raw value bytes of every member of the JSON object obj, in order.
func eachMember(obj []byte, f func(key, val []byte) error) error {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errors.New("entry is not a JSON object")
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		if skipSpace(obj, i+1) != len(obj) {
			return fmt.Errorf("unexpected data after the object at byte %d", i+1)
		}
		return nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return fmt.Errorf("expected a key at byte %d", i)
		}
		end, err := skipValue(obj, i)
		if err != nil {
			return err
		}
		key := obj[i+1 : end-1]
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return fmt.Errorf("expected ':' at byte %d", i)
		}
		i = skipSpace(obj, i+1)
		end, err = skipValue(obj, i)
		if err != nil {
			return err
		}
		if err := f(key, obj[i:end]); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		i = skipSpace(obj, end)
		if i >= len(obj) {
			return errors.New("unterminated object")
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			if skipSpace(obj, i+1) != len(obj) {
				return fmt.Errorf("unexpected data after the object at byte %d", i+1)
			}
			return nil
		default:
			return fmt.Errorf("expected ',' or '}' at byte %d", i)
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value starting at b[i]: strings honour escapes,
// objects and arrays nest; scalars end at the next delimiter. Values are validated where
// they are used (the reading by its parser, the rest by encoding/json).
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("missing value")
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return 0, errors.New("unterminated string")
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipValue(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("unterminated object or array")
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\t' && b[j] != '\r' {
			j++
		}
		if j == i {
			return 0, fmt.Errorf("unexpected %q at byte %d", b[i], i)
		}
		return j, nil
	}
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
