package fhir

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// Search paging limits (docs/formats.md, FHIR R4).
const (
	DefaultCount = 100
	MaxCount     = 1000
	MaxOffset    = 10_000_000
)

// Search is what GET /fhir/r4/Observation asks for.
type Search struct {
	Subject  string    // "" for any
	Kinds    []string  // the kinds the code parameter names; nil when it is absent
	From, To time.Time // time >= From, time < To; zero when open
	Count    int
	Offset   int
}

// SearchError is a search pulselake does not serve; Status is the HTTP status.
type SearchError struct {
	Status int
	Issue  Issue
}

func (e *SearchError) Error() string { return e.Issue.Error() }

func badParam(param, format string, args ...any) *SearchError {
	return &SearchError{400, Issue{Type: IssueInvalid, Code: "invalid-parameter", Expression: param, Message: fmt.Sprintf(format, args...)}}
}

// ParseSearch reads the search parameters: subject (or patient), code, date, _count and
// _offset; _format is ignored, any other parameter refused.
func (m *Mapper) ParseSearch(q url.Values) (Search, *SearchError) {
	s := Search{Count: DefaultCount}
	for name, vals := range q {
		switch name {
		case "subject", "patient":
			if len(vals) != 1 || s.Subject != "" {
				return s, badParam(name, "give subject (or patient) once")
			}
			v := vals[0]
			if id, ok := refID(v, "Patient"); ok {
				v = id
			}
			if err := reading.CheckIdent(name, v); err != nil {
				return s, badParam(name, "%v", err)
			}
			s.Subject = v
		case "code":
			s.Kinds = []string{}
			for _, v := range vals {
				for _, c := range strings.Split(v, ",") {
					s.Kinds = append(s.Kinds, m.KindsOf(c)...)
				}
			}
		case "date":
			for _, v := range vals {
				if err := s.addDate(v); err != nil {
					return s, err
				}
			}
		case "_count":
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 1 || n > MaxCount || len(vals) != 1 {
				return s, badParam(name, "_count must be 1..%d", MaxCount)
			}
			s.Count = n
		case "_offset":
			n, err := strconv.Atoi(vals[0])
			if err != nil || n < 0 || n > MaxOffset || len(vals) != 1 {
				return s, badParam(name, "_offset must be 0..%d", MaxOffset)
			}
			s.Offset = n
		case "_format":
		default:
			return s, &SearchError{400, Issue{Type: IssueNotSupported, Code: "unsupported-parameter", Expression: name,
				Message: fmt.Sprintf("search parameter %q is not supported; Observation searches take subject (or patient), code, date, _count and _offset", shorten(name))}}
		}
	}
	return s, nil
}

var datePrefix = regexp.MustCompile(`^(eq|ge|gt|le|lt)?(.+)$`)

// addDate narrows s by one date parameter: a prefix (eq, ge, gt, le, lt; none is eq) and
// a date or dateTime, whose precision makes the range it stands for.
func (s *Search) addDate(v string) *SearchError {
	m := datePrefix.FindStringSubmatch(v)
	if m == nil {
		return badParam("date", "date %q is a prefix (eq, ge, gt, le, lt) and a date", shorten(v))
	}
	lo, hi, err := DateRange(m[2])
	if err != nil {
		return badParam("date", "%v", err)
	}
	from := func(t time.Time) {
		if s.From.IsZero() || t.After(s.From) {
			s.From = t
		}
	}
	to := func(t time.Time) {
		if s.To.IsZero() || t.Before(s.To) {
			s.To = t
		}
	}
	switch m[1] {
	case "", "eq":
		from(lo)
		to(hi)
	case "ge":
		from(lo)
	case "gt":
		from(hi)
	case "lt":
		to(lo)
	case "le":
		to(hi)
	}
	return nil
}

// DateRange is the range [lo, hi) a FHIR date or dateTime stands for: its precision
// (year, month, day, minute, second, or finer) is its width.
func DateRange(v string) (lo, hi time.Time, err error) {
	for _, f := range []struct {
		layout string
		add    func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{time.DateOnly, func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01-02T15:04Z07:00", func(t time.Time) time.Time { return t.Add(time.Minute) }},
		{time.RFC3339, func(t time.Time) time.Time { return t.Add(time.Second) }},
	} {
		if t, err := time.Parse(f.layout, v); err == nil {
			return t.UTC(), f.add(t).UTC(), nil
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), t.Add(time.Microsecond).UTC(), nil
	}
	return lo, hi, fmt.Errorf("date %q is not YYYY, YYYY-MM, YYYY-MM-DD or a dateTime with zone (2026-11-23T10:00:00Z)", shorten(v))
}
