package stream

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/valyala/fastjson"

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
	// Identity of an accepted reading: always its Reading.Identity(). Encode does not store
	// it (version 3); decoders derive it from the reading, or read it from the line of an
	// envelope of an earlier version.
	Identity reading.ID
	Reading  *reading.Reading // accepted, normalized reading; nil when rejected
	Errors   reading.Errors   // why the record was rejected; empty when accepted
	Raw      []byte           // the record exactly as received
	Origin   string           // where it came from within the source, e.g. an MQTT topic
	// Brief marks an entry DecodeFiltered kept brief (Filter.Brief): its reading has no
	// values, and the entry no Raw, Origin nor Identity.
	Brief bool
}

// Accepted reports whether the entry holds a valid reading.
func (e *Entry) Accepted() bool { return e.Reading != nil }

// Envelope format v3 (documented in docs/formats.md): NDJSON; the first line is the header
// {"v":3,"source":...,"received":...,"token":...}; each further line is an entry
// {"reading":{...},"raw":...} or {"errors":[...],"raw":...}. "raw" is the record as received
// when it is valid JSON, otherwise "raw_text" holds it as a JSON string. Since v2 "raw" is
// left out of an accepted reading's entry when the record as received is byte for byte the
// reading as written (what importers and connectors send): the line does not carry it twice.
// v1 and v2 also wrote each reading's identity ({"id":...,"reading":...}); v3 leaves it to
// the decoder, which derives it from the reading: 32 hex digits of hash that no compressor
// shortens were half of an import's stored stream. Decoders read v1 to v3.
const envelopeVersion = 3

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
	sameRaw := false
	if e.Reading != nil {
		dst = append(dst, `"reading":`...)
		start := len(dst)
		dst = e.Reading.AppendJSON(dst)
		sameRaw = bytes.Equal(dst[start:], e.Raw)
	} else {
		errs, _ := json.Marshal(e.Errors)
		dst = append(dst, `"errors":`...)
		dst = append(dst, errs...)
	}
	if e.Origin != "" {
		dst = append(dst, `,"origin":`...)
		dst = appendOrigin(dst, e.Origin)
	}
	if sameRaw {
		// raw is the reading as written
	} else if oneLineJSON(e.Raw, e.Reading != nil) {
		dst = append(dst, `,"raw":`...)
		dst = append(dst, e.Raw...)
	} else {
		txt, _ := json.Marshal(string(e.Raw))
		dst = append(dst, `,"raw_text":`...)
		dst = append(dst, txt...)
	}
	return append(dst, '}')
}

// oneLineJSON reports whether raw can be written as it is into an envelope's line: JSON
// without a line break. A record can hold line breaks and still be valid (an element of a
// pretty-printed JSON array, an Observation of a pretty-printed FHIR Bundle); written as it
// is, it would end the line and leave the envelope unreadable. Those go into raw_text. The
// raw of an accepted reading was parsed, so it is checked with the faster fastjson
// validator; a rejected record may be anything, and is checked with encoding/json's, as
// before.
func oneLineJSON(raw []byte, accepted bool) bool {
	if len(raw) == 0 || bytes.IndexByte(raw, '\n') >= 0 {
		return false
	}
	if accepted {
		return fastjson.ValidateBytes(raw) == nil
	}
	return json.Valid(raw)
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

// Stored messages are compressed: a stream message is the envelope in one zstd frame (it
// starts with the frame's magic number 28 b5 2f fd; an envelope starts with "{"), or the
// envelope itself when compressing did not make it smaller (and in messages stored by
// earlier builds). Envelopes are JSON that repeats its keys, subjects and devices on every
// line: a frame is about a tenth of the envelope (an Apple Health import: 2.2 MB in 230 KB).
// Every byte a message takes is held several times while it moves (the publish window,
// the stream server's block cache, each consumer's pull and its copies), so this divides
// the memory of the stream's traffic, and the disk it takes, by about ten.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// MaxPayloadBytes bounds the size of a decompressed message, far above what a producer
// writes (messages are split at the server's message limit before compression).
const MaxPayloadBytes = 4 * DefaultMaxPayload

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
)

func zstdCodec() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		// The fastest level: it compresses an envelope at about 400 MB/s per core, and
		// the better levels gain little on JSON lines this repetitive. What repeats is
		// near (the lines of one subject and device): a 1 MiB window does as well as the
		// default 8 MiB, whose history each encoder would keep.
		zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true),
			zstd.WithWindowSize(1<<20), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
		zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(MaxPayloadBytes), zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderLowmem(true))
	})
	return zstdEnc, zstdDec
}

// Compress returns the stored form of an encoded envelope: one zstd frame, or the envelope
// itself when the frame would not be smaller.
func Compress(envelope []byte) []byte {
	enc, _ := zstdCodec()
	out := enc.EncodeAll(envelope, make([]byte, 0, len(envelope)/4))
	if len(out) >= len(envelope) {
		return envelope
	}
	return out
}

// Compressed reports whether a stream message is a compressed envelope.
func Compressed(data []byte) bool { return bytes.HasPrefix(data, zstdMagic) }

// Payload is the envelope a stream message holds: data decompressed, or data itself when
// it is not compressed.
func Payload(data []byte) ([]byte, error) {
	if !Compressed(data) {
		return data, nil
	}
	_, dec := zstdCodec()
	var h zstd.Header
	size := 0
	if h.Decode(data) == nil && h.HasFCS && h.FrameContentSize <= MaxPayloadBytes {
		size = int(h.FrameContentSize)
	}
	out, err := dec.DecodeAll(data, make([]byte, 0, size))
	if err != nil {
		return nil, fmt.Errorf("%w: decompressing: %v", ErrBadEnvelope, err)
	}
	return out, nil
}

// PayloadSize is the size of the envelope a stream message holds, read from the frame
// header of a compressed message without decompressing it (len(data) when unknown).
func PayloadSize(data []byte) int {
	if !Compressed(data) {
		return len(data)
	}
	var h zstd.Header
	if h.Decode(data) == nil && h.HasFCS && h.FrameContentSize <= MaxPayloadBytes {
		return int(h.FrameContentSize)
	}
	return len(data)
}

// Decode parses an envelope. Readings are decoded with p, which must know every kind the
// producer knew (a reading of an unknown kind is an error, never silently dropped).
func Decode(data []byte, p *reading.Parser) (Batch, error) {
	return DecodeFiltered(data, p, Filter{})
}

// Filter narrows what DecodeFiltered parses, for a processor that uses readings of some
// kinds only (the rule engine, the anomaly detectors, the ECG classifier): parsing and
// validating a reading, with its values, is most of the cost of decoding an envelope. The
// zero Filter decodes every entry in full.
type Filter struct {
	// Kinds reports whether the processor uses readings of a kind in full (nil: every kind).
	// Entries of other kinds are left out of the batch, or kept brief (Brief), and so are
	// rejected records; their readings are not validated. Kinds should report true for a
	// kind the parser does not know, so that it is parsed and reported as an error.
	Kinds func(kind string) bool
	// Brief keeps the entries of other kinds with a reading of only its id, subject,
	// device, kind and time (no values, and no identity), marked Entry.Brief.
	Brief bool
	// Since, when set, is called once per message: readings of a time before the one it
	// returns are left out, whatever their kind (for a processor they can change nothing
	// for: the rule engine, for readings older than any alert or window it evaluates).
	Since func() time.Time
}

func (f *Filter) active() bool { return f.Kinds != nil || f.Since != nil }

// uses reports whether the filter keeps readings of kind in full.
func (f *Filter) uses(kind string) bool { return f.Kinds == nil || f.Kinds(kind) }

// DecodeFiltered is Decode for a processor that needs only what f keeps. The envelope and
// every entry are still checked for their structure, so that what Decode cannot read is
// never handed on.
func DecodeFiltered(data []byte, p *reading.Parser, f Filter) (Batch, error) {
	return decodeFiltered(data, entryDecoder{p: p, f: f})
}

// decodeFiltered is DecodeFiltered with d's parser and filter (and, in tests, its general path
// only).
func decodeFiltered(data []byte, d entryDecoder) (Batch, error) {
	data, err := Payload(data)
	if err != nil {
		return Batch{}, err
	}
	line, rest, _ := bytes.Cut(data, []byte{'\n'})
	var h envelopeHeader
	if err := json.Unmarshal(line, &h); err != nil || h.V == 0 {
		return Batch{}, fmt.Errorf("%w: header %q", ErrBadEnvelope, truncate(line))
	}
	if h.V > envelopeVersion {
		return Batch{}, fmt.Errorf("%w: version %d, this build reads versions 1 to %d", ErrBadEnvelope, h.V, envelopeVersion)
	}
	b := Batch{Source: h.Source, Received: h.Received, Token: h.Token}
	d.rawOptional = h.V >= 2
	d.idDerived = h.V >= 3
	if d.f.Since != nil {
		d.since = d.f.Since()
	}
	n := bytes.Count(rest, []byte{'\n'})
	b.Entries = make([]Entry, 0, n)
	for index := 0; len(rest) > 0; {
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		e, keep, err := d.decode(line)
		if err != nil {
			return Batch{}, fmt.Errorf("%w: entry %d: %v", ErrBadEnvelope, index, err)
		}
		index++
		if keep {
			b.Entries = append(b.Entries, e)
		}
	}
	if d.f.active() && len(b.Entries) < cap(b.Entries)/2 {
		b.Entries = slices.Clip(b.Entries)
		if len(b.Entries) == 0 {
			b.Entries = nil
		}
	}
	return b, nil
}

// Identities calls f with the receive time of an envelope and the identity of each of its
// accepted entries, without parsing readings in the form Encode writes (p parses any
// other): what rebuilding the ingest de-duplication window needs, at a fraction of
// Decode's cost.
func Identities(data []byte, p *reading.Parser, f func(received time.Time, id reading.ID)) error {
	data, err := Payload(data)
	if err != nil {
		return err
	}
	line, rest, _ := bytes.Cut(data, []byte{'\n'})
	var h envelopeHeader
	if err := json.Unmarshal(line, &h); err != nil || h.V == 0 {
		return fmt.Errorf("%w: header %q", ErrBadEnvelope, truncate(line))
	}
	if h.V > envelopeVersion {
		return fmt.Errorf("%w: version %d, this build reads versions 1 to %d", ErrBadEnvelope, h.V, envelopeVersion)
	}
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		var hexID, rd []byte
		ok := false
		if h.V < 3 {
			hexID, _, ok = splitStoredV2(line)
		}
		if !ok {
			// Version 3, or a line in another form: the members, read as Decode reads them
			// (the last of a name).
			hasReading := false
			err := eachMember(line, func(key, val []byte) error {
				switch string(key) {
				case "id":
					if len(val) >= 2 {
						hexID = val[1 : len(val)-1]
					}
				case "reading":
					rd, hasReading = val, true
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
		if hexID == nil && h.V >= 3 {
			if id, ok = identityOf(rd, p); !ok {
				return fmt.Errorf("%w: reading %q", ErrBadEnvelope, truncate(rd))
			}
		} else if _, err := hex.Decode(id[:], hexID); err != nil || len(hexID) != 32 {
			return fmt.Errorf("%w: identity %q", ErrBadEnvelope, hexID)
		}
		f(h.Received, id)
	}
	return nil
}

// splitStoredV2 splits the line of an accepted reading as versions 1 and 2 wrote it,
// {"id":"<32 hex digits>","reading":..., into the identity's hex digits and what follows
// "reading":. ok is false for a line of any other form.
func splitStoredV2(line []byte) (hexID, rest []byte, ok bool) {
	const idPrefix, readingAfterID = `{"id":"`, `","reading":`
	i := len(idPrefix) + 2*len(reading.ID{})
	if !bytes.HasPrefix(line, []byte(idPrefix)) || !bytes.HasPrefix(line[min(i, len(line)):], []byte(readingAfterID)) {
		return nil, nil, false
	}
	return line[len(idPrefix):i], line[i+len(readingAfterID):], true
}

// identityOf derives the identity of the reading rd, the JSON of a reading in a line: read
// from its head in the form Encode writes, or else from the reading p parses.
func identityOf(rd []byte, p *reading.Parser) (reading.ID, bool) {
	if h, ok := reading.ReadEncodedHead(rd); ok {
		if id, ok := h.Identity(); ok {
			return id, true
		}
	}
	r, errs := p.Parse(rd)
	if errs != nil {
		return reading.ID{}, false
	}
	return r.Identity(), true
}

// entryDecoder decodes the entry lines of one envelope.
type entryDecoder struct {
	p *reading.Parser
	f Filter
	// general leaves out decodeStored (tests compare the two paths).
	general bool
	// rawOptional: the envelope's version (2 on) leaves out the raw of an accepted reading
	// that is the reading as written.
	rawOptional bool
	// idDerived: the envelope's version (3 on) leaves out the identity of a reading, which
	// the decoder derives from it.
	idDerived bool
	since     time.Time // Filter.Since for this envelope (zero: none)
	// The strings of the last brief reading, shared by the next ones of the same subject,
	// device and kind instead of allocating them each.
	subject, device, kind string
}

// decode decodes one entry line. The line is split into its members without building a
// document (the lake writer decodes every stored reading, so this is on its hot path); the
// reading is parsed straight from its bytes and raw is kept byte for byte. keep is false
// for an entry the filter leaves out.
func (d *entryDecoder) decode(line []byte) (e Entry, keep bool, err error) {
	if !d.general {
		if e, keep, ok := d.decodeStored(line); ok {
			return e, keep, nil
		}
	}
	var (
		id, rd, errs []byte
		origin       []byte
		rawText      []byte
		hasReading   bool
	)
	err = eachMember(line, func(key, val []byte) error {
		switch string(key) {
		case "id":
			id = val
		case "reading":
			rd, hasReading = val, true
		case "errors":
			errs = val
		case "origin":
			origin = val
		case "raw":
			e.Raw = val
		case "raw_text":
			rawText = val
		}
		return nil
	})
	if err != nil {
		return Entry{}, false, err
	}
	if e.Raw == nil && rawText == nil {
		if !hasReading || !d.rawOptional {
			return Entry{}, false, errors.New("entry without raw or raw_text")
		}
		e.Raw = rd // the record as received was the reading as written
	}
	if hasReading && (len(id) < 2 || id[0] != '"') && (id != nil || !d.idDerived) {
		return Entry{}, false, errors.New("reading without an id")
	}
	if d.f.active() {
		if !hasReading {
			return Entry{}, false, nil // a rejected record
		}
		h, ok := d.head(rd)
		stale := ok && d.stale(h.time)
		if ok && (stale || !d.f.uses(h.kind)) {
			if id != nil {
				if _, err := parseIdent(id[1 : len(id)-1]); err != nil {
					return Entry{}, false, err
				}
			}
			if !d.f.Brief || stale {
				return Entry{}, false, nil
			}
			if r, ok := d.brief(h); ok {
				return Entry{Reading: r, Brief: true}, true, nil
			}
		}
		// A kind the processor uses, or a reading not in the form Encode writes: parsed in
		// full below.
	}
	if errs != nil {
		if err := json.Unmarshal(errs, &e.Errors); err != nil {
			return Entry{}, false, fmt.Errorf("errors: %w", err)
		}
	}
	if origin != nil {
		if err := json.Unmarshal(origin, &e.Origin); err != nil {
			return Entry{}, false, fmt.Errorf("origin: %w", err)
		}
	}
	if rawText != nil {
		var s string
		if err := json.Unmarshal(rawText, &s); err != nil {
			return Entry{}, false, fmt.Errorf("raw_text: %v", err)
		}
		e.Raw = []byte(s)
	}
	if hasReading {
		r, errs := d.p.Parse(rd)
		if errs != nil {
			return Entry{}, false, fmt.Errorf("decoding reading: %v", errs)
		}
		ident, err := d.identity(id, &r)
		if err != nil {
			return Entry{}, false, err
		}
		e.Reading, e.Identity = &r, ident
	}
	return e, true, nil
}

// identity is the identity of reading r of a line: read from the line's id member (the
// JSON string id; earlier versions), or derived from r when the line has none.
func (d *entryDecoder) identity(id []byte, r *reading.Reading) (reading.ID, error) {
	if id == nil {
		return r.Identity(), nil
	}
	return parseIdent(id[1 : len(id)-1])
}

// decodeStored decodes the line of an accepted reading as Entry.encode writes it, the
// reading as Reading.AppendJSON writes it (reading.ParseEncoded): what the ingest stream
// holds, read without splitting the line into members first. ok is false for any other
// line, a reading the scanner leaves to the parser included; decode's general path then
// reads it, and reports what is wrong.
func (d *entryDecoder) decodeStored(line []byte) (e Entry, keep, ok bool) {
	var rd []byte
	const readingKey = `{"reading":` // a version 3 line
	derive := d.idDerived && bytes.HasPrefix(line, []byte(readingKey))
	if derive {
		rd = line[len(readingKey):]
	} else {
		hexID, after, ok := splitStoredV2(line)
		if !ok {
			return Entry{}, false, false
		}
		if _, err := hex.Decode(e.Identity[:], hexID); err != nil {
			return Entry{}, false, false
		}
		rd = after
	}
	h, ok := reading.ReadEncodedHead(rd)
	if !ok {
		return Entry{}, false, false
	}
	if stale := d.staleAt(h); stale || !d.f.uses(string(h.Kind)) {
		n, err := skipValue(rd, 0)
		if err != nil || !d.storedTail(rd[:n], rd[n:], nil) {
			return Entry{}, false, false
		}
		if !d.f.Brief || stale {
			return Entry{}, false, true
		}
		r, ok := d.brief(readingHead{id: h.ID, subject: h.Subject, device: h.Device, time: h.Time, kind: share(&d.kind, h.Kind)})
		if !ok {
			return Entry{}, false, false
		}
		return Entry{Reading: r, Brief: true}, true, true
	}
	r, n, ok := d.p.ParseEncoded(rd, h)
	if !ok || !d.storedTail(rd[:n], rd[n:], &e) {
		return Entry{}, false, false
	}
	if derive {
		e.Identity = r.Identity()
	}
	e.Reading = &r
	return e, true, true
}

// stale reports whether a reading's time (RFC 3339) is before the filter's Since; a time
// that does not parse is not (the reading is parsed in full, and fails there).
func (d *entryDecoder) stale(tm []byte) bool {
	if d.since.IsZero() {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, string(tm))
	return err == nil && t.Before(d.since)
}

// staleAt is stale for a head in the stored form.
func (d *entryDecoder) staleAt(h reading.EncodedHead) bool {
	if d.since.IsZero() {
		return false
	}
	t, ok := h.ParseTime()
	return ok && t.Before(d.since)
}

// storedTail reads what follows the reading rd in a stored line: an origin without escapes
// (optional), then raw, the line's last member (when absent, raw is the reading), into e
// (nil: only checked).
func (d *entryDecoder) storedTail(rd, tail []byte, e *Entry) bool {
	i := 0
	if bytes.HasPrefix(tail, []byte(`,"origin":"`)) {
		i = len(`,"origin":"`)
		end := bytes.IndexByte(tail[i:], '"')
		if end < 0 {
			return false
		}
		origin := tail[i : i+end]
		for _, c := range origin {
			if c < 0x20 || c == '\\' || c >= 0x7f {
				return false
			}
		}
		if e != nil {
			e.Origin = string(origin)
		}
		i += end + 1
	}
	if len(tail) == i+1 && tail[i] == '}' && d.rawOptional {
		if e != nil {
			e.Raw = rd
		}
		return true
	}
	if !bytes.HasPrefix(tail[i:], []byte(`,"raw":`)) {
		return false
	}
	i += len(`,"raw":`)
	end, err := skipValue(tail, i)
	if err != nil || end != len(tail)-1 || tail[end] != '}' {
		return false
	}
	if e != nil {
		e.Raw = tail[i:end]
	}
	return true
}

// errStopMembers ends eachMember early.
var errStopMembers = errors.New("stop")

// readingHead is the first members of an encoded reading, as Encode writes them: id (when
// the client sent one), subject, device, kind and time, all plain JSON strings.
type readingHead struct {
	id, subject, device, time []byte // without their quotes
	kind                      string
}

// head reads the head of an encoded reading. ok is false for a reading in another form
// (escaped strings, a member missing), which is left to the full parse.
func (d *entryDecoder) head(rd []byte) (h readingHead, ok bool) {
	var subject, device, kind, tm, rid []byte
	_ = eachMember(rd, func(key, val []byte) error {
		switch string(key) {
		case "id":
			rid = val
		case "subject":
			subject = val
		case "device":
			device = val
		case "kind":
			kind = val
		case "time":
			tm = val
			return errStopMembers // the members after time are values
		}
		return nil
	})
	var ok1, ok2, ok3, ok4 bool
	h.subject, ok1 = plainString(subject)
	h.device, ok2 = plainString(device)
	k, ok3 := plainString(kind)
	h.time, ok4 = plainString(tm)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return readingHead{}, false
	}
	if rid != nil {
		if h.id, ok = plainString(rid); !ok {
			return readingHead{}, false
		}
	}
	h.kind = share(&d.kind, k)
	return h, true
}

// brief is the reading of a head without values; ok is false when its time is not RFC 3339.
func (d *entryDecoder) brief(h readingHead) (*reading.Reading, bool) {
	t, err := time.Parse(time.RFC3339Nano, string(h.time))
	if err != nil {
		return nil, false
	}
	r := &reading.Reading{Time: t.UTC(), Subject: share(&d.subject, h.subject), Device: share(&d.device, h.device), Kind: h.kind}
	if h.id != nil {
		r.ID = string(h.id)
	}
	return r, true
}

// parseIdent is reading.ParseID of hexadecimal bytes, without allocating when they are valid.
func parseIdent(b []byte) (reading.ID, error) {
	var id reading.ID
	if len(b) == 2*len(id) {
		if _, err := hex.Decode(id[:], b); err == nil {
			return id, nil
		}
	}
	return reading.ParseID(string(b))
}

// plainString returns the text of a JSON string without escapes.
func plainString(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || bytes.IndexByte(v, '\\') >= 0 {
		return nil, false
	}
	return v[1 : len(v)-1], true
}

// share returns b as a string, last's string when they are equal.
func share(last *string, b []byte) string {
	if string(b) != *last {
		*last = string(b)
	}
	return *last
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
			if err == errStopMembers {
				return nil
			}
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
		// A quote ends the string unless an odd number of backslashes comes before it.
		for j := i + 1; ; {
			q := bytes.IndexByte(b[j:], '"')
			if q < 0 {
				return 0, errors.New("unterminated string")
			}
			q += j
			n := 0
			for k := q - 1; k > i && b[k] == '\\'; k-- {
				n++
			}
			if n%2 == 0 {
				return q + 1, nil
			}
			j = q + 1
		}
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
