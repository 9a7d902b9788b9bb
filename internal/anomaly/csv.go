package anomaly

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxLineBytes is the longest CSV line ReadCSV accepts unless told otherwise.
const DefaultMaxLineBytes = 64 << 10

// ReadOptions configure ReadCSV.
type ReadOptions struct {
	// MaxLineBytes bounds the length of one line, newline excluded (default DefaultMaxLineBytes).
	MaxLineBytes int
	// TimeColumn names the timestamp column. Empty means the first of "timestamp", "time",
	// "datetime", "date" present (case-insensitive), else the first column.
	TimeColumn string
	// Columns names the value columns. Empty means every other column except one named "id".
	Columns []string
	// RequireValues rejects rows with a missing value (Isolation Forest needs every value).
	RequireValues bool
}

// Table is a parsed detect input: times, values and the raw lines, kept so the output repeats
// the input columns byte for byte.
type Table struct {
	Header     []string
	TimeName   string
	TimeIndex  int
	ValueNames []string
	ValueIndex []int
	Times      []int64   // Unix nanoseconds, UTC
	Values     []float64 // row-major, len(Times)·len(ValueNames); NaN = missing
	LineNo     []int32   // 1-based input line of each row

	header []byte // the raw header line
	raw    []byte // every row's raw line, back to back
	ends   []int  // end offset of each row's raw line in raw
}

// Rows returns the number of data rows.
func (t *Table) Rows() int { return len(t.Times) }

// Dim returns the number of value columns.
func (t *Table) Dim() int { return len(t.ValueNames) }

// Column returns value column c as a new slice.
func (t *Table) Column(c int) []float64 {
	d := t.Dim()
	out := make([]float64, t.Rows())
	for i := range out {
		out[i] = t.Values[i*d+c]
	}
	return out
}

// SortByTime puts the rows in time order, keeping the input order of rows with the same
// timestamp (a stable sort), and returns how many rows had a timestamp earlier than a row above
// them. A table already in order is left as it is.
func (t *Table) SortByTime() int {
	back := 0
	latest := int64(math.MinInt64)
	for _, ts := range t.Times {
		if ts < latest {
			back++
		}
		latest = max(latest, ts)
	}
	if back == 0 {
		return 0
	}
	n, d := t.Rows(), t.Dim()
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(t.Times[a], t.Times[b]) })
	times := make([]int64, n)
	values := make([]float64, len(t.Values))
	lines := make([]int32, n)
	raw := make([]byte, 0, len(t.raw))
	ends := make([]int, n)
	for k, i := range order {
		times[k] = t.Times[i]
		copy(values[k*d:(k+1)*d], t.Values[i*d:(i+1)*d])
		lines[k] = t.LineNo[i]
		raw = append(raw, t.line(i)...)
		ends[k] = len(raw)
	}
	t.Times, t.Values, t.LineNo, t.raw, t.ends = times, values, lines, raw, ends
	return back
}

// RepeatedRows returns how many rows of a time-ordered table have the timestamp of the row
// before them.
func (t *Table) RepeatedRows() int {
	n := 0
	for i := 1; i < len(t.Times); i++ {
		if t.Times[i] == t.Times[i-1] {
			n++
		}
	}
	return n
}

// mergeRepeated returns a time-ordered table with one row per distinct timestamp, each value
// the mean of that timestamp's present values (NaN when none is present), and for every row of
// t the row of the merged table it went into. When no timestamp repeats it returns t and nil.
// The merged table carries no raw lines: it is for scoring, not for writing.
func (t *Table) mergeRepeated() (*Table, []int) {
	if t.RepeatedRows() == 0 {
		return t, nil
	}
	d := t.Dim()
	m := &Table{Header: t.Header, TimeName: t.TimeName, TimeIndex: t.TimeIndex, ValueNames: t.ValueNames, ValueIndex: t.ValueIndex}
	group := make([]int, t.Rows())
	counts := make([]int, d)
	for i := 0; i < t.Rows(); {
		j := i
		for j < t.Rows() && t.Times[j] == t.Times[i] {
			group[j] = len(m.Times)
			j++
		}
		m.Times = append(m.Times, t.Times[i])
		m.LineNo = append(m.LineNo, t.LineNo[i])
		for c := range d {
			sum := 0.0
			counts[c] = 0
			for k := i; k < j; k++ {
				if v := t.Values[k*d+c]; !math.IsNaN(v) {
					sum += v
					counts[c]++
				}
			}
			mean := math.NaN()
			if counts[c] > 0 {
				mean = sum / float64(counts[c])
			}
			m.Values = append(m.Values, mean)
		}
		i = j
	}
	return m, group
}

func (t *Table) line(i int) []byte {
	start := 0
	if i > 0 {
		start = t.ends[i-1]
	}
	return t.raw[start:t.ends[i]]
}

var errQuote = errors.New("unterminated or misplaced quote")

// splitFields splits one CSV line (RFC 4180 quoting, no embedded newlines) into fields,
// appending to dst. Quoted fields are unescaped into scratch, which is returned grown.
func splitFields(line []byte, dst [][]byte, scratch []byte) ([][]byte, []byte, int, error) {
	dst = dst[:0]
	scratch = scratch[:0]
	// Unquoted fields are sub-slices of line; quoted ones are copied into scratch. Record
	// scratch ranges first, slice them afterwards (scratch may move while growing).
	type span struct{ lo, hi int }
	var quoted [8]span
	var qspans = quoted[:0]
	var qidx [8]int
	qi := qidx[:0]
	col := 1
	for {
		if len(line) > 0 && line[0] == '"' {
			lo := len(scratch)
			k := 1
			closed := false
			for k < len(line) {
				c := line[k]
				if c == '"' {
					if k+1 < len(line) && line[k+1] == '"' {
						scratch = append(scratch, '"')
						k += 2
						continue
					}
					closed = true
					k++
					break
				}
				scratch = append(scratch, c)
				k++
			}
			if !closed || (k < len(line) && line[k] != ',') {
				return dst, scratch, col, errQuote
			}
			qspans = append(qspans, span{lo, len(scratch)})
			qi = append(qi, len(dst))
			dst = append(dst, nil)
			if k == len(line) {
				break
			}
			line = line[k+1:]
		} else {
			j := bytes.IndexByte(line, ',')
			f := line
			if j >= 0 {
				f = line[:j]
			}
			if bytes.IndexByte(f, '"') >= 0 {
				return dst, scratch, col, errQuote
			}
			dst = append(dst, f)
			if j < 0 {
				break
			}
			line = line[j+1:]
		}
		col++
	}
	for k, s := range qspans {
		dst[qi[k]] = scratch[s.lo:s.hi:s.hi]
	}
	return dst, scratch, 0, nil
}

// ReadCSV reads a detect input: a header line, then one row per line with a timestamp column
// and one or more value columns. Timestamps are RFC 3339, "2006-01-02 15:04:05" (UTC, optional
// fraction, 'T' accepted) or Unix epoch (seconds, or milliseconds / microseconds / nanoseconds
// told apart by magnitude). An empty value is a missing point. Errors are *ParseError naming the
// line and column, or wrap ErrInvalidParam when opts name columns that are not there.
func ReadCSV(r io.Reader, opts ReadOptions) (*Table, error) {
	maxLine := opts.MaxLineBytes
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	lr := &csvLines{br: bufio.NewReaderSize(r, max(maxLine+2, 64<<10)), maxLine: maxLine}
	t := &Table{}
	head, err := lr.next()
	if err == io.EOF {
		return nil, &ParseError{Line: 1, Err: errors.New("empty input: a header line is required (e.g. timestamp,value)")}
	}
	if err != nil {
		return nil, err
	}
	fields, err := lr.split(head)
	if err != nil {
		return nil, err
	}
	if err := t.readHeader(head, fields, lr.lineNo); err != nil {
		return nil, err
	}
	if err := t.pickColumns(opts, t.columnIndex()); err != nil {
		return nil, err
	}
	for {
		line, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		fields, err := lr.split(line)
		if err != nil {
			return nil, err
		}
		if err := t.readRow(line, fields, lr.lineNo, opts); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// csvLines reads the non-blank lines of a detect input, counting lines and bounding their length.
type csvLines struct {
	br      *bufio.Reader
	maxLine int
	lineNo  int // of the line last returned
	fields  [][]byte
	scratch []byte
}

// split splits a line of the input into its fields, valid until the following call.
func (lr *csvLines) split(line []byte) ([][]byte, error) {
	var col int
	var err error
	lr.fields, lr.scratch, col, err = splitFields(line, lr.fields, lr.scratch)
	if err != nil {
		return nil, &ParseError{Line: lr.lineNo, Column: col, Err: err}
	}
	return lr.fields, nil
}

// next returns the next non-blank line without its line ending (and, on line 1, without a UTF-8
// byte order mark), or io.EOF. The slice is valid until the following call.
func (lr *csvLines) next() ([]byte, error) {
	for {
		line, err := lr.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > lr.maxLine+2 {
			lr.lineNo++
			return nil, &ParseError{Line: lr.lineNo, Err: fmt.Errorf("line longer than %d bytes", lr.maxLine)}
		}
		if err != nil && (err != io.EOF || len(line) == 0) {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("reading line %d: %w", lr.lineNo+1, err)
		}
		lr.lineNo++
		line = bytes.TrimSuffix(line, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > lr.maxLine {
			return nil, &ParseError{Line: lr.lineNo, Err: fmt.Errorf("line longer than %d bytes", lr.maxLine)}
		}
		if lr.lineNo == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
		}
		if len(bytes.TrimSpace(line)) == 0 {
			if err == io.EOF {
				return nil, io.EOF
			}
			continue // blank lines are skipped
		}
		return line, nil
	}
}

// readHeader sets t.Header from the header line head: at least two columns, each named, no
// two names equal ignoring case.
func (t *Table) readHeader(head []byte, fields [][]byte, lineNo int) error {
	if len(fields) < 2 {
		return &ParseError{Line: lineNo, Err: errors.New("header needs a timestamp column and at least one value column")}
	}
	t.header = append([]byte(nil), head...)
	seen := map[string]bool{}
	for i, f := range fields {
		name := strings.TrimSpace(string(f))
		if name == "" {
			return &ParseError{Line: lineNo, Column: i + 1, Err: errors.New("empty column name in header")}
		}
		if seen[strings.ToLower(name)] {
			return &ParseError{Line: lineNo, Column: i + 1, Name: name, Err: errors.New("duplicate column name in header")}
		}
		seen[strings.ToLower(name)] = true
		t.Header = append(t.Header, name)
	}
	return nil
}

// columnIndex maps each lower-cased header name to its column.
func (t *Table) columnIndex() map[string]int {
	idx := make(map[string]int, len(t.Header))
	for i, name := range t.Header {
		idx[strings.ToLower(name)] = i
	}
	return idx
}

// readRow parses one data line into t: its timestamp, its chosen values, its line number and
// its raw text.
func (t *Table) readRow(line []byte, fields [][]byte, lineNo int, opts ReadOptions) error {
	if len(fields) != len(t.Header) {
		return &ParseError{Line: lineNo, Err: fmt.Errorf("%d fields, the header has %d", len(fields), len(t.Header))}
	}
	ts, err := parseTimestamp(fields[t.TimeIndex])
	if err != nil {
		return &ParseError{Line: lineNo, Column: t.TimeIndex + 1, Name: t.TimeName, Err: err}
	}
	t.Times = append(t.Times, ts)
	for k, c := range t.ValueIndex {
		v, err := parseValue(fields[c])
		if err == nil && opts.RequireValues && math.IsNaN(v) {
			err = errors.New("missing value; this method needs every value")
		}
		if err != nil {
			return &ParseError{Line: lineNo, Column: c + 1, Name: t.ValueNames[k], Err: err}
		}
		t.Values = append(t.Values, v)
	}
	t.LineNo = append(t.LineNo, int32(min(lineNo, math.MaxInt32)))
	t.raw = append(t.raw, line...)
	t.ends = append(t.ends, len(t.raw))
	return nil
}

func (t *Table) pickColumns(opts ReadOptions, seen map[string]int) error {
	t.TimeIndex = 0
	if opts.TimeColumn != "" {
		i, ok := seen[strings.ToLower(opts.TimeColumn)]
		if !ok {
			return fmt.Errorf("%w: no column %q in the header (columns: %s)", ErrInvalidParam, opts.TimeColumn, strings.Join(t.Header, ","))
		}
		t.TimeIndex = i
	} else {
		for _, name := range []string{"timestamp", "time", "datetime", "date"} {
			if i, ok := seen[name]; ok {
				t.TimeIndex = i
				break
			}
		}
	}
	t.TimeName = t.Header[t.TimeIndex]
	if len(opts.Columns) > 0 {
		for _, c := range opts.Columns {
			i, ok := seen[strings.ToLower(strings.TrimSpace(c))]
			if !ok {
				return fmt.Errorf("%w: no column %q in the header (columns: %s)", ErrInvalidParam, c, strings.Join(t.Header, ","))
			}
			if i == t.TimeIndex {
				return fmt.Errorf("%w: column %q is the timestamp column", ErrInvalidParam, c)
			}
			t.ValueIndex = append(t.ValueIndex, i)
			t.ValueNames = append(t.ValueNames, t.Header[i])
		}
		return nil
	}
	for i, name := range t.Header {
		if i == t.TimeIndex || strings.EqualFold(name, "id") {
			continue
		}
		t.ValueIndex = append(t.ValueIndex, i)
		t.ValueNames = append(t.ValueNames, name)
	}
	if len(t.ValueIndex) == 0 {
		return fmt.Errorf("%w: no value column in the header (columns: %s)", ErrInvalidParam, strings.Join(t.Header, ","))
	}
	return nil
}

// parseValue parses a value field; empty (or NaN) is a missing point, ±Inf is an error.
func parseValue(f []byte) (float64, error) {
	f = bytes.TrimSpace(f)
	if len(f) == 0 {
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(string(f), 64)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a number", truncate(f))
	}
	if math.IsInf(v, 0) {
		return 0, fmt.Errorf("value %q is not finite", truncate(f))
	}
	return v, nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseTimestamp parses one timestamp field into Unix nanoseconds.
func parseTimestamp(f []byte) (int64, error) {
	f = bytes.TrimSpace(f)
	if len(f) == 0 {
		return 0, errors.New("empty timestamp")
	}
	// Fast path: "YYYY-MM-DD HH:MM:SS" or with 'T', optional "Z".
	if (len(f) == 19 || (len(f) == 20 && f[19] == 'Z')) && f[4] == '-' && f[7] == '-' &&
		(f[10] == ' ' || f[10] == 'T') && f[13] == ':' && f[16] == ':' {
		y, ok1 := digits(f[0:4])
		mo, ok2 := digits(f[5:7])
		d, ok3 := digits(f[8:10])
		h, ok4 := digits(f[11:13])
		mi, ok5 := digits(f[14:16])
		s, ok6 := digits(f[17:19])
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && s < 60 {
			tm := time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC)
			if tm.Day() == d {
				return tm.UnixNano(), nil
			}
		}
		return 0, fmt.Errorf("timestamp %q is not a valid date and time", truncate(f))
	}
	c := f[0]
	if (c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9')) && !bytes.ContainsAny(f, ":T ") && bytes.IndexByte(f[1:], '-') < 0 {
		v, err := strconv.ParseFloat(string(f), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("timestamp %q is neither a date nor an epoch number", truncate(f))
		}
		// Seconds up to 1e11 (year 5138), then milliseconds, microseconds, nanoseconds.
		a := math.Abs(v)
		var ns float64
		switch {
		case a < 1e11:
			ns = v * 1e9
		case a < 1e14:
			ns = v * 1e6
		case a < 1e17:
			ns = v * 1e3
		default:
			ns = v
		}
		if math.Abs(ns) > math.MaxInt64/2 {
			return 0, fmt.Errorf("epoch timestamp %q is out of range", truncate(f))
		}
		return int64(math.Round(ns)), nil
	}
	s := string(f)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05Z07:00", "2006-01-02"} {
		if tm, err := time.Parse(layout, s); err == nil {
			return tm.UnixNano(), nil
		}
	}
	return 0, fmt.Errorf("timestamp %q is not RFC 3339, \"2006-01-02 15:04:05\" or a Unix epoch", truncate(f))
}

// OutColumn is one column detect appends to the input: NaN is written as an empty field; Int
// columns are written as integers. A column with Text is written from it (words without commas
// or quotes) instead of Values.
type OutColumn struct {
	Name   string
	Values []float64
	Int    bool
	Text   []string
}

// WriteCSV writes the input lines of t followed by cols, header first.
func WriteCSV(w io.Writer, t *Table, cols []OutColumn) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	buf := make([]byte, 0, 4096)
	buf = append(buf, t.header...)
	for _, c := range cols {
		buf = append(buf, ',')
		buf = append(buf, c.Name...)
	}
	buf = append(buf, '\n')
	for i := range t.Rows() {
		if len(buf) > 3072 {
			if _, err := bw.Write(buf); err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
			buf = buf[:0]
		}
		buf = append(buf, t.line(i)...)
		for _, c := range cols {
			buf = append(buf, ',')
			if c.Text != nil {
				buf = append(buf, c.Text[i]...)
				continue
			}
			v := c.Values[i]
			switch {
			case math.IsNaN(v):
			case c.Int:
				buf = strconv.AppendInt(buf, int64(v), 10)
			default:
				buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
			}
		}
		buf = append(buf, '\n')
	}
	if _, err := bw.Write(buf); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}
