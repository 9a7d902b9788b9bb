package reading

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Reading is one validated, normalized sensor reading (wire format v1, SPEC §3).
type Reading struct {
	ID      string // client idempotency key; "" when the client sent none
	Subject string
	Device  string
	Kind    string
	Time    time.Time          // UTC, truncated to microseconds
	Values  map[string]float64 // numeric values
	Text    map[string]string  // text values (sleep stage, beat label, ...)
	Samples []float64          // the "samples" array of ecg and ecg_beat readings
}

// ID is the identity of a reading: 128 bits of SHA-256.
type ID [16]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses the hexadecimal form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("parsing identity %q: want %d hex digits", s, 2*len(id))
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err
}

// Identity is the client's idempotency key when given, else a hash of
// (subject, device, kind, time). Two payloads with the same identity are the same reading.
func (r *Reading) Identity() ID {
	return identity(r.ID, r.Subject, r.Device, r.Kind, r.Time.UnixMicro())
}

// identity hashes the parts of an identity in one call from a stack buffer: no allocation
// per reading.
func identity[S ~string | ~[]byte](id, subject, device, kind S, micros int64) ID {
	var buf [256]byte
	b := buf[:0]
	if len(id) > 0 {
		b = append(append(b, "id\x00"...), id...)
	} else {
		b = append(b, "key\x00"...)
		for _, p := range [...]S{subject, device, kind} {
			b = append(append(b, p...), 0)
		}
		b = binary.BigEndian.AppendUint64(b, uint64(micros))
	}
	sum := sha256.Sum256(b)
	var ident ID
	copy(ident[:], sum[:])
	return ident
}

// Time limits. Epoch 0 and dates of the 1970s are what devices with an unset clock send.
var minTime = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)

// MaxClockSkew is how far in the future a reading's time may lie.
const MaxClockSkew = 24 * time.Hour

// Parser parses payloads into readings. It is not safe for concurrent use; use one per
// goroutine (they are cheap to make and meant to be reused).
type Parser struct {
	reg  *Registry
	p    fastjson.Parser
	keys [][]byte // scratch of duplicateKey
	num  []byte   // scratch of number
	// names holds the subjects, devices and kinds seen, so that readings of the same
	// subject and device share their strings instead of allocating them each.
	names map[string]string
	// Now returns the current time; readings further than MaxClockSkew after it are rejected.
	Now func() time.Time
	// Check's memory: the last subject and device found valid, and Now()+MaxClockSkew as
	// of its last look at the clock.
	okSubject, okDevice string
	horizon             time.Time
}

// NewParser returns a parser for the kinds of reg.
func NewParser(reg *Registry) *Parser {
	return &Parser{reg: reg, Now: time.Now}
}

// Parse parses, validates and normalizes one payload. On failure it returns every field
// error found (with stable codes and JSON-pointer paths) and a zero Reading.
func (p *Parser) Parse(data []byte) (Reading, Errors) {
	return p.ParseWith(data, "", "")
}

// ParseWith is Parse for payloads whose kind and device may come from elsewhere, such as
// the MQTT topic readings/<kind>/<device>: a payload without them takes these; a payload
// with different ones is rejected.
func (p *Parser) ParseWith(data []byte, kind, device string) (Reading, Errors) {
	obj, errs := p.parseObject(data)
	if errs != nil {
		return Reading{}, errs
	}
	var r Reading
	values, seen, errs := p.readFields(obj, &r)
	seen, errs = takeFromTopic(&r, seen, kind, device, errs)
	errs = missingFields(seen, errs)
	if seen&hasKind != 0 && r.Kind != "" {
		errs = p.readKindValues(&r, values, errs)
	}
	if len(errs) > 0 {
		return Reading{}, errs
	}
	return r, nil
}

// fieldSet records which top-level fields a payload named.
type fieldSet uint8

const (
	hasSubject fieldSet = 1 << iota
	hasDevice
	hasKind
	hasTime
	hasValues
)

// requiredFields lists the top-level fields every reading needs, in the order their
// absence is reported.
var requiredFields = [...]struct {
	bit  fieldSet
	name string
}{{hasSubject, "subject"}, {hasDevice, "device"}, {hasKind, "kind"}, {hasTime, "time"}, {hasValues, "values"}}

// parseObject parses data as one JSON object in which no object names a key twice.
func (p *Parser) parseObject(data []byte) (*fastjson.Object, Errors) {
	v, err := p.p.ParseBytes(data)
	if err != nil {
		return nil, Errors{{Code: CodeInvalidJSON, Message: jsonErrorMessage(err)}}
	}
	obj, err := v.Object()
	if err != nil {
		return nil, Errors{{Code: CodeInvalidJSON, Message: "expected a JSON object {\"subject\":...,\"device\":...,\"kind\":...,\"time\":...,\"values\":{...}}, got " + v.Type().String()}}
	}
	// A key named twice means the payload kept as received says something other than the
	// reading stored (parsers disagree on which one wins): reject it.
	if path, key, dup := p.duplicateKey(v); dup {
		return nil, Errors{{Code: CodeInvalidJSON, Path: path,
			Message: fmt.Sprintf("key %q appears more than once in one object; send each key once", key)}}
	}
	return obj, nil
}

// readFields sets r's top-level fields from obj. It returns the values object (nil when
// absent or not an object), which fields were present, and the errors found.
func (p *Parser) readFields(obj *fastjson.Object, r *Reading) (values *fastjson.Object, seen fieldSet, errs Errors) {
	obj.Visit(func(key []byte, fv *fastjson.Value) {
		switch string(key) {
		case "id":
			if s, ok := str(fv, "/id", &errs); ok {
				if s == "" || len(s) > MaxIDLen || !printable(s) {
					errs = append(errs, FieldError{CodeInvalidID, "/id", fmt.Sprintf("id must be 1..%d printable characters", MaxIDLen)})
				} else {
					r.ID = s
				}
			}
		case "subject":
			seen |= hasSubject
			r.Subject = p.ident(fv, "/subject", &errs)
		case "device":
			seen |= hasDevice
			r.Device = p.ident(fv, "/device", &errs)
		case "kind":
			seen |= hasKind
			r.Kind, _ = p.str(fv, "/kind", &errs)
		case "time":
			seen |= hasTime
			r.Time = p.parseTime(fv, &errs)
		case "values":
			seen |= hasValues
			o, err := fv.Object()
			if err != nil {
				errs = append(errs, FieldError{CodeInvalidType, "/values", "values must be an object, got " + fv.Type().String()})
			} else {
				values = o
			}
		default:
			errs = append(errs, FieldError{CodeUnknownField, "/" + escapePointer(string(key)),
				fmt.Sprintf("unknown field %q; a reading has id, subject, device, kind, time and values", key)})
		}
	})
	return values, seen, errs
}

// maxNames bounds Parser.names; it starts again empty when full.
const maxNames = 4096

// str is the package's str for names (subjects, devices, kinds): a name seen before is
// returned without allocating.
func (p *Parser) str(v *fastjson.Value, path string, errs *Errors) (string, bool) {
	b, err := v.StringBytes()
	if err != nil {
		return str(v, path, errs)
	}
	return p.name(b), true
}

// takeFromTopic fills in the kind and device the payload left out from the ones given
// beside it (the MQTT topic), and reports those that differ.
func takeFromTopic(r *Reading, seen fieldSet, kind, device string, errs Errors) (fieldSet, Errors) {
	if kind != "" {
		if seen&hasKind == 0 {
			r.Kind, seen = kind, seen|hasKind
		} else if r.Kind != kind {
			errs = append(errs, FieldError{CodeInconsistent, "/kind", fmt.Sprintf("kind %q differs from %q in the topic", r.Kind, kind)})
		}
	}
	if device != "" {
		if seen&hasDevice == 0 {
			seen |= hasDevice
			if len(device) > MaxIDLen || !validIdent(device) {
				errs = append(errs, FieldError{CodeInvalidID, "/device", fmt.Sprintf("device %q from the topic must be 1..%d characters of A-Z a-z 0-9 . _ : @ + -", device, MaxIDLen)})
			} else {
				r.Device = device
			}
		} else if r.Device != device && r.Device != "" {
			errs = append(errs, FieldError{CodeInconsistent, "/device", fmt.Sprintf("device %q differs from %q in the topic", r.Device, device)})
		}
	}
	return seen, errs
}

// missingFields reports each required top-level field not in seen.
func missingFields(seen fieldSet, errs Errors) Errors {
	for _, f := range requiredFields {
		if seen&f.bit == 0 {
			errs = append(errs, FieldError{CodeMissingField, "/" + f.name, "field " + f.name + " is required"})
		}
	}
	return errs
}

// readKindValues looks up r's kind and, when values is present, sets r's values from it
// and runs the kind's own check on a reading with no errors so far.
func (p *Parser) readKindValues(r *Reading, values *fastjson.Object, errs Errors) Errors {
	kind, ok := p.reg.Kind(r.Kind)
	if !ok {
		return append(errs, FieldError{CodeUnknownKind, "/kind",
			fmt.Sprintf("unknown kind %q; known kinds: %s (declare more under kinds: in the config)", r.Kind, strings.Join(p.reg.Names(), ", "))})
	}
	if values == nil {
		return errs
	}
	errs = p.parseValues(kind, values, r, errs)
	if len(errs) == 0 && kind.Check != nil {
		errs = append(errs, kind.Check(r)...)
	}
	return errs
}

// duplicateKey finds a key named twice in one object, at any depth of v. It returns the
// JSON pointer of the second occurrence and the key. Objects of a reading have a handful of
// keys, so comparing each key with the ones before it is cheaper than any map.
func (p *Parser) duplicateKey(v *fastjson.Value) (path, key string, dup bool) {
	switch v.Type() {
	case fastjson.TypeObject:
		o, _ := v.Object()
		start := len(p.keys)
		o.Visit(func(k []byte, fv *fastjson.Value) {
			if dup {
				return
			}
			for _, prev := range p.keys[start:] {
				if string(prev) == string(k) {
					path, key, dup = "/"+escapePointer(string(k)), string(k), true
					return
				}
			}
			p.keys = append(p.keys, k)
			if t := fv.Type(); t == fastjson.TypeObject || t == fastjson.TypeArray {
				if sub, subKey, ok := p.duplicateKey(fv); ok {
					path, key, dup = "/"+escapePointer(string(k))+sub, subKey, true
				}
			}
		})
		clear(p.keys[start:])
		p.keys = p.keys[:start]
	case fastjson.TypeArray:
		arr, _ := v.Array()
		for i, e := range arr {
			if t := e.Type(); t == fastjson.TypeObject || t == fastjson.TypeArray {
				if sub, subKey, ok := p.duplicateKey(e); ok {
					return "/" + strconv.Itoa(i) + sub, subKey, true
				}
			}
		}
	}
	return path, key, dup
}

// parseValues sets r's values from values, each checked against its field of kind, and
// reports the values kind does not have and the required ones missing.
func (p *Parser) parseValues(kind *Kind, values *fastjson.Object, r *Reading, errs Errors) Errors {
	var present uint64
	values.Visit(func(key []byte, fv *fastjson.Value) {
		i, ok := kind.index[string(key)]
		if !ok {
			errs = append(errs, unknownValue(kind, key))
			return
		}
		present |= 1 << i
		f := &kind.Fields[i]
		switch f.Type {
		case Number:
			errs = p.parseNumber(f, fv, key, r, len(kind.Fields), errs)
		case Text:
			errs = parseText(f, fv, key, r, errs)
		case Samples:
			errs = p.parseSamples(f, fv, key, r, errs)
		}
	})
	for i, f := range kind.Fields {
		if f.Required && present&(1<<i) == 0 {
			errs = append(errs, FieldError{CodeMissingField, "/values/" + f.Name,
				fmt.Sprintf("kind %s requires value %s (%s)", kind.Name, f.Name, f.Unit)})
		}
	}
	return errs
}

// valuePath is the JSON pointer of the value named key; it is built only for errors.
func valuePath(key []byte) string { return "/values/" + escapePointer(string(key)) }

// unknownValue reports a value kind has no field for, naming the ones it has.
func unknownValue(kind *Kind, key []byte) FieldError {
	names := make([]string, len(kind.Fields))
	for j, f := range kind.Fields {
		names[j] = f.Name
	}
	return FieldError{CodeUnknownField, valuePath(key),
		fmt.Sprintf("kind %s has no value %q; its values are %s", kind.Name, key, strings.Join(names, ", "))}
}

// number reads a JSON number as strconv.ParseFloat rounds it, to the nearest float64.
// fastjson's own Float64 can be a unit in the last place off for a number with an exponent
// (764835386697e-7), and the stream's decoder (ParseEncoded) reads numbers with strconv:
// both must read every number alike. ok is false for a value that is not a number; one
// beyond float64's range reads as ±Inf, which the range checks refuse.
func (p *Parser) number(v *fastjson.Value) (n float64, ok bool) {
	if v.Type() != fastjson.TypeNumber {
		return 0, false
	}
	p.num = v.MarshalTo(p.num[:0])
	n, err := strconv.ParseFloat(string(p.num), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false
	}
	return n, true
}

// parseNumber sets the number field f of r from fv if it is a number within f's range;
// nfields sizes r.Values when it is made.
func (p *Parser) parseNumber(f *Field, fv *fastjson.Value, key []byte, r *Reading, nfields int, errs Errors) Errors {
	n, ok := p.number(fv)
	if !ok {
		return append(errs, FieldError{CodeInvalidType, valuePath(key), fmt.Sprintf("%s must be a number (%s), got %s", f.Name, f.Unit, fv.Type())})
	}
	if msg, ok := f.checkNumber(n); !ok {
		return append(errs, FieldError{CodeOutOfRange, valuePath(key), f.Name + " " + msg})
	}
	if r.Values == nil {
		r.Values = make(map[string]float64, nfields)
	}
	r.Values[f.Name] = n
	return errs
}

// parseText sets the text field f of r from fv if it is a printable string f allows.
func parseText(f *Field, fv *fastjson.Value, key []byte, r *Reading, errs Errors) Errors {
	s, ok := str(fv, valuePath(key), &errs)
	if !ok {
		return errs
	}
	switch {
	case len(f.Enum) > 0 && !f.allows(s):
		return append(errs, FieldError{CodeInvalidValue, valuePath(key), fmt.Sprintf("%s %q is not one of %s", f.Name, s, strings.Join(f.Enum, ", "))})
	case s == "" || len(s) > MaxTextLen || !printable(s):
		return append(errs, FieldError{CodeInvalidValue, valuePath(key), fmt.Sprintf("%s must be 1..%d printable characters", f.Name, MaxTextLen)})
	}
	if r.Text == nil {
		r.Text = make(map[string]string, 1)
	}
	r.Text[f.Name] = s
	return errs
}

// parseSamples sets r.Samples from fv if it is an array of the length f wants whose every
// element is a number within f's range; it reports the first bad sample only.
// samplesLength is the error of an array of n samples for f at path, if its length is wrong.
func (f *Field) samplesLength(n int, path string) (FieldError, bool) {
	if (f.Len > 0 && n != f.Len) || n == 0 || n > MaxSamples {
		want := fmt.Sprintf("1..%d", MaxSamples)
		if f.Len > 0 {
			want = strconv.Itoa(f.Len)
		}
		return FieldError{CodeInvalidLength, path, fmt.Sprintf("%s has %d samples, want %s", f.Name, n, want)}, true
	}
	return FieldError{}, false
}

func (p *Parser) parseSamples(f *Field, fv *fastjson.Value, key []byte, r *Reading, errs Errors) Errors {
	arr, err := fv.Array()
	if err != nil {
		return append(errs, FieldError{CodeInvalidType, valuePath(key), fmt.Sprintf("%s must be an array of numbers, got %s", f.Name, fv.Type())})
	}
	if e, bad := f.samplesLength(len(arr), valuePath(key)); bad {
		return append(errs, e)
	}
	samples := make([]float64, len(arr))
	for j, e := range arr {
		n, ok := p.number(e)
		if !ok {
			return append(errs, FieldError{CodeInvalidType, valuePath(key) + "/" + strconv.Itoa(j), "sample must be a number, got " + e.Type().String()})
		}
		if msg, ok := f.checkNumber(n); !ok {
			return append(errs, FieldError{CodeOutOfRange, valuePath(key) + "/" + strconv.Itoa(j), "sample " + msg})
		}
		samples[j] = n
	}
	r.Samples = samples
	return errs
}

// parseTime accepts RFC 3339 text or Unix epoch milliseconds and normalizes to UTC microseconds.
func (p *Parser) parseTime(v *fastjson.Value, errs *Errors) time.Time {
	var t time.Time
	switch v.Type() {
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		var err error
		t, err = time.Parse(time.RFC3339Nano, string(s))
		if err != nil {
			*errs = append(*errs, FieldError{CodeInvalidTime, "/time",
				fmt.Sprintf("time %q is not RFC 3339 (e.g. 2026-11-23T10:00:00.123Z) nor epoch milliseconds", s)})
			return time.Time{}
		}
	case fastjson.TypeNumber:
		ms, ok := p.number(v)
		if !ok || math.IsNaN(ms) || math.Abs(ms) > 1e15 {
			hint := ""
			if ok && math.Abs(ms) > 1e15 {
				hint = "; it looks like micro- or nanoseconds"
			}
			*errs = append(*errs, FieldError{CodeInvalidTime, "/time", "time must be Unix epoch milliseconds" + hint})
			return time.Time{}
		}
		t = time.UnixMicro(int64(math.Round(ms * 1000)))
	default:
		*errs = append(*errs, FieldError{CodeInvalidType, "/time", "time must be an RFC 3339 string or epoch milliseconds, got " + v.Type().String()})
		return time.Time{}
	}
	t = t.UTC().Truncate(time.Microsecond)
	if t.Before(minTime) {
		*errs = append(*errs, timeTooEarly(t))
		return time.Time{}
	}
	if now := p.Now(); t.After(now.Add(MaxClockSkew)) {
		*errs = append(*errs, timeInFuture(t))
		return time.Time{}
	}
	return t
}

// timeTooEarly and timeInFuture are the errors of a time out of range, parsed or checked.
func timeTooEarly(t time.Time) FieldError {
	return FieldError{CodeTimeOutOfRange, "/time",
		fmt.Sprintf("time %s is before %s; is the device clock set? (epoch seconds must be multiplied by 1000)", t.Format(time.RFC3339), minTime.Format("2006-01-02"))}
}

func timeInFuture(t time.Time) FieldError {
	return FieldError{CodeTimeOutOfRange, "/time",
		fmt.Sprintf("time %s is more than %s in the future; check the device clock", t.Format(time.RFC3339), MaxClockSkew)}
}

func str(v *fastjson.Value, path string, errs *Errors) (string, bool) {
	b, err := v.StringBytes()
	if err != nil {
		*errs = append(*errs, FieldError{CodeInvalidType, path, path[strings.LastIndexByte(path, '/')+1:] + " must be a string, got " + v.Type().String()})
		return "", false
	}
	return string(b), true
}

func (p *Parser) ident(v *fastjson.Value, path string, errs *Errors) string {
	s, ok := p.str(v, path, errs)
	if !ok {
		return ""
	}
	if len(s) == 0 || len(s) > MaxIDLen || !validIdent(s) {
		*errs = append(*errs, invalidIdent(path, s))
		return ""
	}
	return s
}

// invalidIdent is the error of a subject or device at path that is not an identifier.
func invalidIdent(path, s string) FieldError {
	return FieldError{CodeInvalidID, path,
		fmt.Sprintf("%s %q must be 1..%d characters of A-Z a-z 0-9 . _ : @ + - starting with a letter or digit", path[1:], s, MaxIDLen)}
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// escapePointer escapes a key for use in a JSON pointer (RFC 6901).
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func jsonErrorMessage(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return "payload is not valid JSON: " + msg
}

// AppendJSON appends the reading in wire format v1 with keys in a stable order.
func (r *Reading) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	if r.ID != "" {
		b = append(b, `"id":`...)
		b = appendString(b, r.ID)
		b = append(b, ',')
	}
	b = append(b, `"subject":`...)
	b = appendString(b, r.Subject)
	b = append(b, `,"device":`...)
	b = appendString(b, r.Device)
	b = append(b, `,"kind":`...)
	b = appendString(b, r.Kind)
	b = append(b, `,"time":"`...)
	b = appendTime(b, r.Time)
	b = append(b, `","values":{`...)
	first := true
	sep := func() {
		if !first {
			b = append(b, ',')
		}
		first = false
	}
	var scratch [8]string // the keys of most kinds, without allocating
	for _, k := range appendSortedKeys(scratch[:0], r.Values) {
		sep()
		b = appendString(b, k)
		b = append(b, ':')
		b = strconv.AppendFloat(b, r.Values[k], 'g', -1, 64)
	}
	for _, k := range appendSortedKeys(scratch[:0], r.Text) {
		sep()
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, r.Text[k])
	}
	if r.Samples != nil {
		sep()
		b = append(b, `"samples":[`...)
		for i, s := range r.Samples {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, s, 'g', -1, 64)
		}
		b = append(b, ']')
	}
	return append(b, '}', '}')
}

// MarshalJSON encodes the reading in wire format v1.
func (r Reading) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// timeLayout is how readings write their time: RFC 3339 with at most microseconds.
const timeLayout = "2006-01-02T15:04:05.999999Z07:00"

// appendTime appends t in timeLayout. Parsed readings hold UTC times of years 0000–9999,
// written here digit by digit (time.AppendFormat interprets the layout at every call);
// others go through AppendFormat.
func appendTime(b []byte, t time.Time) []byte {
	y, mo, d := t.Date()
	if t.Location() != time.UTC || y < 0 || y > 9999 {
		return t.AppendFormat(b, timeLayout)
	}
	h, mi, s := t.Clock()
	b = append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+mo/10), byte('0'+mo%10), '-', byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+s/10), byte('0'+s%10))
	if us := t.Nanosecond() / 1000; us > 0 {
		var frac [7]byte
		frac[0] = '.'
		for i := 6; i >= 1; i-- {
			frac[i] = byte('0' + us%10)
			us /= 10
		}
		n := 7
		for frac[n-1] == '0' {
			n--
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z')
}

// appendSortedKeys appends the keys of m to keys, sorted.
func appendSortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
