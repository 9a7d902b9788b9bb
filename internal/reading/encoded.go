package reading

import (
	"bytes"
	"strconv"
	"time"
)

// Readings stored by pulselake (the ingest stream's envelopes) are written by AppendJSON,
// always in one form: members id (when there is one), subject, device, kind, time and
// values in that order, strings without escapes, the time as timeLayout writes it in UTC,
// values' keys sorted (numbers, then texts, then samples). Every processor of the stream
// decodes every reading it uses, so this form is read by a scanner made for it instead of
// a JSON parser: about five times faster, with no document built.

// EncodedHead is the head of a reading in the stored form: its members before the values,
// as views of the reading's bytes (strings without their quotes); ID is nil when the reading
// has none.
type EncodedHead struct {
	ID, Subject, Device, Kind, Time []byte
	values                          int // offset of the values object's '{'
}

// ReadEncodedHead reads the head of the reading data starts with. ok is false when data
// does not start with a reading in the stored form.
func ReadEncodedHead(data []byte) (h EncodedHead, ok bool) {
	i := 0
	if !lit(data, &i, `{`) {
		return h, false
	}
	if bytes.HasPrefix(data[i:], []byte(`"id":`)) {
		i += len(`"id":`)
		// AppendJSON writes no empty id (Check would take one for none; Parse refuses it).
		if h.ID, ok = plainAt(data, &i); !ok || len(h.ID) == 0 || !lit(data, &i, `,`) {
			return EncodedHead{}, false
		}
	}
	for _, m := range [...]struct {
		key string
		dst *[]byte
	}{{`"subject":`, &h.Subject}, {`,"device":`, &h.Device}, {`,"kind":`, &h.Kind}, {`,"time":`, &h.Time}} {
		if !lit(data, &i, m.key) {
			return EncodedHead{}, false
		}
		if *m.dst, ok = plainAt(data, &i); !ok {
			return EncodedHead{}, false
		}
	}
	if !lit(data, &i, `,"values":`) || i >= len(data) || data[i] != '{' {
		return EncodedHead{}, false
	}
	h.values = i
	return h, true
}

// Identity is the identity of the reading the head begins (Reading.Identity); ok is false
// when its time is not written as AppendJSON writes it.
func (h EncodedHead) Identity() (ID, bool) {
	if len(h.ID) > 0 {
		return identity(h.ID, nil, nil, nil, 0), true
	}
	t, ok := h.ParseTime()
	if !ok {
		return ID{}, false
	}
	return identity(h.ID, h.Subject, h.Device, h.Kind, t.UnixMicro()), true
}

// ParseTime parses the head's time, as AppendJSON writes it (UTC); ok is false for a time
// written another way.
func (h EncodedHead) ParseTime() (time.Time, bool) { return parseEncodedTime(h.Time) }

// ParseEncoded parses the reading data starts with when it is in the stored form and
// valid: the reading Parse returns for it, and the length of its JSON. ok is false when it
// is not in that form, or not valid (an unknown kind or value, a value out of range, a
// time in the future): the caller parses it with Parse, which says why. h is the reading's
// head (ReadEncodedHead).
func (p *Parser) ParseEncoded(data []byte, h EncodedHead) (r Reading, n int, ok bool) {
	kind, found := p.reg.Kind(string(h.Kind))
	if !found {
		return Reading{}, 0, false
	}
	t, ok := parseEncodedTime(h.Time)
	if !ok {
		return Reading{}, 0, false
	}
	r = Reading{Subject: p.name(h.Subject), Device: p.name(h.Device), Kind: kind.Name, Time: t}
	if h.ID != nil {
		r.ID = string(h.ID)
	}
	if n, ok = p.encodedValues(data, h.values+1, kind, &r); !ok {
		return Reading{}, 0, false
	}
	if errs := p.Check(&r); errs != nil {
		return Reading{}, 0, false
	}
	return r, n, true
}

// encodedValues reads the values object starting at data[i] (after its '{') and the
// reading's closing '}'; n is the offset after the reading.
func (p *Parser) encodedValues(data []byte, i int, kind *Kind, r *Reading) (n int, ok bool) {
	var seen uint64 // the kind's fields met so far (at most MaxKindFields): a repeated key is left to Parse
	for first := true; ; first = false {
		if lit(data, &i, `}`) {
			break
		}
		if !first && !lit(data, &i, `,`) {
			return 0, false
		}
		key, ok := plainAt(data, &i)
		if !ok || !lit(data, &i, `:`) {
			return 0, false
		}
		fi, known := kind.index[string(key)]
		if !known || fi >= 64 || seen&(1<<fi) != 0 {
			return 0, false
		}
		seen |= 1 << fi
		switch f := &kind.Fields[fi]; {
		case f.Type == Number:
			v, ok := numberAt(data, &i)
			if !ok {
				return 0, false
			}
			if r.Values == nil {
				r.Values = make(map[string]float64, len(kind.Fields))
			}
			r.Values[f.Name] = v
		case f.Type == Text:
			s, ok := plainAt(data, &i)
			if !ok {
				return 0, false
			}
			if r.Text == nil {
				r.Text = make(map[string]string, 1)
			}
			r.Text[f.Name] = p.name(s)
		case f.Type == Samples && f.Name == "samples":
			if !lit(data, &i, `[`) {
				return 0, false
			}
			r.Samples = make([]float64, 0, 256)
			for {
				v, ok := numberAt(data, &i)
				if !ok || len(r.Samples) == MaxSamples {
					return 0, false
				}
				r.Samples = append(r.Samples, v)
				if lit(data, &i, `]`) {
					break
				}
				if !lit(data, &i, `,`) {
					return 0, false
				}
			}
		default:
			return 0, false
		}
	}
	if !lit(data, &i, `}`) {
		return 0, false
	}
	return i, true
}

// name is a subject, device or text value as a string, shared with the readings before it
// (see Parser.names).
func (p *Parser) name(b []byte) string {
	if s, ok := p.names[string(b)]; ok {
		return s
	}
	if p.names == nil || len(p.names) >= maxNames {
		p.names = make(map[string]string, 64)
	}
	s := string(b)
	p.names[s] = s
	return s
}

// lit consumes s at data[*i].
func lit(data []byte, i *int, s string) bool {
	if !bytes.HasPrefix(data[*i:], []byte(s)) {
		return false
	}
	*i += len(s)
	return true
}

// plainAt consumes a JSON string without escapes or control characters at data[*i] and
// returns its text.
func plainAt(data []byte, i *int) ([]byte, bool) {
	if *i >= len(data) || data[*i] != '"' {
		return nil, false
	}
	end := bytes.IndexByte(data[*i+1:], '"')
	if end < 0 {
		return nil, false
	}
	s := data[*i+1 : *i+1+end]
	for _, c := range s {
		if c < 0x20 || c == '\\' {
			return nil, false
		}
	}
	*i += end + 2
	return s, true
}

// numberAt consumes a JSON number as strconv.AppendFloat(…, 'g', -1, 64) writes it.
func numberAt(data []byte, i *int) (float64, bool) {
	j := *i
	for j < len(data) && (data[j] >= '0' && data[j] <= '9' || data[j] == '-' || data[j] == '.' || data[j] == 'e' || data[j] == '+') {
		j++
	}
	tok := data[*i:j]
	if len(tok) == 0 || !jsonNumber(tok) {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(tok), 64)
	if err != nil {
		return 0, false
	}
	*i = j
	return v, true
}

// jsonNumber reports whether tok follows JSON's number grammar (RFC 8259 §6):
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func jsonNumber(tok []byte) bool {
	i := 0
	if tok[0] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(tok) && tok[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(tok) && tok[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(tok) && (tok[i] == 'e' || tok[i] == 'E') {
		i++
		if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(tok)
}

// parseEncodedTime parses a time as appendTime writes it: YYYY-MM-DDTHH:MM:SS, up to six
// fraction digits, Z.
func parseEncodedTime(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[len(b)-1] != 'Z' || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(b[0:4])
	mo, ok2 := num(b[5:7])
	d, ok3 := num(b[8:10])
	h, ok4 := num(b[11:13])
	mi, ok5 := num(b[14:16])
	s, ok6 := num(b[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
		return time.Time{}, false
	}
	us := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 7 {
			return time.Time{}, false
		}
		v, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for k := len(frac) - 1; k < 6; k++ {
			v *= 10
		}
		us = v
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, us*1000, time.UTC)
	// time.Date normalizes what RFC 3339 parsing refuses (February 30, hour 24).
	if t.Year() != y || int(t.Month()) != mo || t.Day() != d || t.Hour() != h || t.Minute() != mi || t.Second() != s {
		return time.Time{}, false
	}
	return t, true
}
