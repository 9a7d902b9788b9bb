package catalog

import (
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// Type inference (docs/catalog.md#types). A column's type is the widest of the types of its
// sampled values: null values say nothing; bigint and double widen to double; date and
// timestamp widen to timestamp; any other mix becomes string. A column with only null values
// is string.

// widen returns the type that holds values of both a and b ("" is "no value seen yet").
func widen(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "" || a == b:
		return a
	case (a == TypeBigint && b == TypeDouble) || (a == TypeDouble && b == TypeBigint):
		return TypeDouble
	case (a == TypeDate && b == TypeTimestamp) || (a == TypeTimestamp && b == TypeDate):
		return TypeTimestamp
	}
	return TypeString
}

// timestampLayouts are the timestamp spellings recognised in text (a fraction of a second is
// accepted after the seconds in each).
var timestampLayouts = []string{
	time.RFC3339,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04:05Z07:00",
}

// temporalType returns date or timestamp for text spelling one, else "".
func temporalType(s string) string {
	if len(s) < 10 || len(s) > 40 || s[4] != '-' || s[7] != '-' {
		return ""
	}
	if len(s) == 10 {
		if _, err := time.Parse(time.DateOnly, s); err == nil {
			return TypeDate
		}
		return ""
	}
	for _, l := range timestampLayouts {
		if _, err := time.Parse(l, s); err == nil {
			return TypeTimestamp
		}
	}
	return ""
}

// isInteger reports an optionally signed run of ASCII digits.
func isInteger(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isDecimal reports a plain decimal number with a fraction or exponent (no inf, nan, hex).
func isDecimal(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	mant, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	if hasExp && !isInteger(exp) {
		return false
	}
	ip, fp, hasDot := strings.Cut(mant, ".")
	if !hasDot && !hasExp {
		return false
	}
	digits := func(x string) bool { return x == "" || isInteger(x) && x[0] != '+' && x[0] != '-' }
	return (ip != "" || fp != "") && digits(ip) && digits(fp)
}

// TextType is the type of a CSV cell: "" (null) for an empty cell, else boolean (true or
// false in any case), bigint (integer within 64 bits), double (decimal number), date
// (YYYY-MM-DD), timestamp (date and time, optional fraction and zone) or string.
func TextType(s string) string {
	switch {
	case s == "":
		return ""
	case strings.EqualFold(s, "true") || strings.EqualFold(s, "false"):
		return TypeBoolean
	case isInteger(s):
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return TypeBigint
		}
		return TypeDouble
	case isDecimal(s):
		return TypeDouble
	}
	if t := temporalType(s); t != "" {
		return t
	}
	return TypeString
}

// PartitionType is the type of a hive partition value: bigint, date, timestamp or string
// (the types DuckDB, Athena and Spark all derive from folder names; other numbers and
// booleans stay text). "" is the null partition (__HIVE_DEFAULT_PARTITION__).
func PartitionType(s string) string {
	if s == "" || s == hiveNull {
		return ""
	}
	switch t := TextType(s); t {
	case TypeBigint, TypeDate, TypeTimestamp:
		return t
	}
	return TypeString
}

// hiveNull is the folder value Hive and Spark write for a null partition key.
const hiveNull = "__HIVE_DEFAULT_PARTITION__"

// jsonType is the type of a JSON value and whether it is an object or array (kept as text).
func jsonType(v *fastjson.Value) (typ string, nested bool) {
	switch v.Type() {
	case fastjson.TypeNull:
		return "", false
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return TypeBoolean, false
	case fastjson.TypeNumber:
		raw := string(v.MarshalTo(nil))
		if isInteger(raw) {
			if _, err := strconv.ParseInt(raw, 10, 64); err == nil {
				return TypeBigint, false
			}
		}
		return TypeDouble, false
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if t := temporalType(string(b)); t != "" {
			return t, false
		}
		return TypeString, false
	}
	return TypeString, true // object or array
}

// schema accumulates columns in the order they are first seen.
type schema struct {
	cols  []Column
	index map[string]int
}

func newSchema() *schema { return &schema{index: map[string]int{}} }

// add records one value of type typ ("" for null) for column name.
func (s *schema) add(name, typ string, nested bool) {
	i, ok := s.index[name]
	if !ok {
		i = len(s.cols)
		s.index[name] = i
		s.cols = append(s.cols, Column{Name: name})
	}
	c := &s.cols[i]
	c.Type = widen(c.Type, typ)
	c.Nested = c.Nested || nested
	if c.Nested {
		c.Type = TypeString
	}
}

// columns returns the inferred columns; all-null columns become string.
func (s *schema) columns() []Column {
	out := make([]Column, len(s.cols))
	for i, c := range s.cols {
		if c.Type == "" {
			c.Type = TypeString
		}
		out[i] = c
	}
	return out
}

// addJSON adds the fields of one JSON-lines row.
func (s *schema) addJSON(p *fastjson.Parser, line []byte) error {
	v, err := p.ParseBytes(line)
	if err != nil {
		return err
	}
	o, err := v.Object()
	if err != nil {
		return errNotObject
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		typ, nested := jsonType(v)
		s.add(string(k), typ, nested)
	})
	return nil
}
