package reading

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Check validates and normalizes a reading built by a format's own reader (an export
// importer, the FHIR mapper) rather than parsed from wire JSON: the same rules as Parse,
// reported with the same codes and JSON-pointer paths, without encoding and parsing the
// reading again. r's time is normalized in place (UTC, truncated to microseconds); Check
// may be called again on the same reading.
func (p *Parser) Check(r *Reading) Errors {
	var errs Errors
	if r.ID != "" && (len(r.ID) > MaxIDLen || !printable(r.ID)) {
		errs = append(errs, FieldError{CodeInvalidID, "/id", fmt.Sprintf("id must be 1..%d printable characters", MaxIDLen)})
	}
	errs = p.checkIdent(r.Subject, "/subject", &p.okSubject, errs)
	errs = p.checkIdent(r.Device, "/device", &p.okDevice, errs)
	if r.Kind == "" {
		errs = append(errs, FieldError{CodeMissingField, "/kind", "field kind is required"})
	}
	errs = p.checkTime(r, errs)
	if r.Kind == "" {
		return errs
	}
	kind, ok := p.reg.Kind(r.Kind)
	if !ok {
		return append(errs, FieldError{CodeUnknownKind, "/kind",
			fmt.Sprintf("unknown kind %q; known kinds: %s (declare more under kinds: in the config)", r.Kind, strings.Join(p.reg.Names(), ", "))})
	}
	errs = checkValues(kind, r, errs)
	if len(errs) == 0 && kind.Check != nil {
		errs = append(errs, kind.Check(r)...)
	}
	return errs
}

// checkIdent checks a subject or device; ok is the last one found valid (readings of an
// import share their subject and device: they are checked once).
func (p *Parser) checkIdent(s, path string, ok *string, errs Errors) Errors {
	if s == *ok && s != "" {
		return errs
	}
	if s == "" {
		return append(errs, FieldError{CodeMissingField, path, "field " + path[1:] + " is required"})
	}
	if len(s) > MaxIDLen || !validIdent(s) {
		return append(errs, invalidIdent(path, s))
	}
	*ok = s
	return errs
}

// checkTime normalizes r.Time as parseTime does and checks its range.
func (p *Parser) checkTime(r *Reading, errs Errors) Errors {
	if r.Time.IsZero() {
		return append(errs, FieldError{CodeMissingField, "/time", "field time is required"})
	}
	t := r.Time.UTC().Truncate(time.Microsecond)
	if t.Before(minTime) {
		return append(errs, timeTooEarly(t))
	}
	// horizon is now plus the skew allowed, as of an earlier call: a time before it is
	// before the current one too; a time after it is checked against the clock again.
	if t.After(p.horizon) {
		p.horizon = p.Now().Add(MaxClockSkew)
	}
	if t.After(p.horizon) {
		return append(errs, timeInFuture(t))
	}
	r.Time = t
	return errs
}

// checkValues checks r's values against the fields of kind: each one declared with its
// type, numbers and samples within range, text allowed, required ones present.
func checkValues(kind *Kind, r *Reading, errs Errors) Errors {
	matched, samplesField := 0, false
	for i := range kind.Fields {
		f := &kind.Fields[i]
		present := false
		switch f.Type {
		case Number:
			var v float64
			if v, present = r.Values[f.Name]; present {
				if msg, ok := f.checkNumber(v); !ok {
					errs = append(errs, FieldError{CodeOutOfRange, "/values/" + f.Name, f.Name + " " + msg})
				}
			}
		case Text:
			var s string
			if s, present = r.Text[f.Name]; present {
				switch {
				case len(f.Enum) > 0 && !f.allows(s):
					errs = append(errs, FieldError{CodeInvalidValue, "/values/" + f.Name, fmt.Sprintf("%s %q is not one of %s", f.Name, s, strings.Join(f.Enum, ", "))})
				case s == "" || len(s) > MaxTextLen || !printable(s):
					errs = append(errs, FieldError{CodeInvalidValue, "/values/" + f.Name, fmt.Sprintf("%s must be 1..%d printable characters", f.Name, MaxTextLen)})
				}
			}
		case Samples:
			samplesField = true
			if present = r.Samples != nil; present {
				errs = checkSamples(f, r.Samples, errs)
			}
		}
		if present {
			matched++
		} else if _, wrongType := r.Values[f.Name]; wrongType && f.Type != Number {
			// reported by undeclaredValues
		} else if _, wrongType := r.Text[f.Name]; wrongType && f.Type != Text {
		} else if f.Required {
			errs = append(errs, FieldError{CodeMissingField, "/values/" + f.Name,
				fmt.Sprintf("kind %s requires value %s (%s)", kind.Name, f.Name, f.Unit)})
		}
	}
	if r.Samples != nil && !samplesField {
		errs = append(errs, unknownValue(kind, []byte("samples")))
		matched++
	}
	if matched < len(r.Values)+len(r.Text)+btoi(r.Samples != nil) {
		errs = append(errs, undeclaredValues(kind, r)...)
	}
	return errs
}

// undeclaredValues reports, in name order, the values and texts of r that kind does not
// declare with their type.
func undeclaredValues(kind *Kind, r *Reading) Errors {
	type value struct {
		name string
		got  string // JSON type of the value
	}
	var vals []value
	for name := range r.Values {
		if i, ok := kind.index[name]; !ok || kind.Fields[i].Type != Number {
			vals = append(vals, value{name, "number"})
		}
	}
	for name := range r.Text {
		if i, ok := kind.index[name]; !ok || kind.Fields[i].Type != Text {
			vals = append(vals, value{name, "string"})
		}
	}
	slices.SortFunc(vals, func(a, b value) int { return strings.Compare(a.name, b.name) })
	var errs Errors
	for _, v := range vals {
		i, ok := kind.index[v.name]
		if !ok {
			errs = append(errs, unknownValue(kind, []byte(v.name)))
			continue
		}
		f := &kind.Fields[i]
		msg := fmt.Sprintf("%s must be a number (%s), got %s", f.Name, f.Unit, v.got)
		if f.Type == Samples {
			msg = fmt.Sprintf("%s must be an array of numbers, got %s", f.Name, v.got)
		} else if f.Type == Text {
			msg = f.Name + " must be a string, got " + v.got
		}
		errs = append(errs, FieldError{CodeInvalidType, valuePath([]byte(v.name)), msg})
	}
	return errs
}

// checkSamples is parseSamples' check of an array already decoded.
func checkSamples(f *Field, samples []float64, errs Errors) Errors {
	if e, bad := f.samplesLength(len(samples), "/values/"+f.Name); bad {
		return append(errs, e)
	}
	for j, n := range samples {
		if msg, ok := f.checkNumber(n); !ok {
			return append(errs, FieldError{CodeOutOfRange, "/values/" + f.Name + "/" + strconv.Itoa(j), "sample " + msg})
		}
	}
	return errs
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
