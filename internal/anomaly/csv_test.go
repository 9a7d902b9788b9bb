package anomaly

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestReadCSV(t *testing.T) {
	ts := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixNano()
	}
	for _, c := range []struct {
		name   string
		in     string
		opts   ReadOptions
		cols   []string
		times  []int64
		values []float64
	}{
		{"nab", "timestamp,value\n2014-04-01 00:00:00,1.5\n2014-04-01 00:05:00,\n", ReadOptions{}, []string{"value"},
			[]int64{ts("2014-04-01T00:00:00Z"), ts("2014-04-01T00:05:00Z")}, []float64{1.5, nan}},
		{"fitbit quoted header, id skipped", "\"id\",\"time\",\"hr\"\n2022484408,2016-04-12 11:21:00,97\n", ReadOptions{}, []string{"hr"},
			[]int64{ts("2016-04-12T11:21:00Z")}, []float64{97}},
		{"rfc3339 with zone and fraction, crlf, bom, blank lines", "\xef\xbb\xbfvalue,timestamp\r\n3,2026-01-01T01:00:00.5+01:00\r\n\r\n4,2026-01-01T00:00:01Z\r\n\n", ReadOptions{}, []string{"value"},
			[]int64{ts("2026-01-01T00:00:00.5Z"), ts("2026-01-01T00:00:01Z")}, []float64{3, 4}},
		{"epoch seconds and milliseconds", "t,a,b\n1700000000,1,2\n1700000001000,3,\n", ReadOptions{}, []string{"a", "b"},
			[]int64{1700000000e9, 1700000001e9}, []float64{1, 2, 3, nan}},
		{"quoted values and chosen columns", "ts,x,\"y,z\"\n1,\"5\",\"6\"\"\"\n", ReadOptions{TimeColumn: "ts", Columns: []string{"x"}}, []string{"x"},
			[]int64{1e9}, []float64{5}},
		{"header only", "timestamp,value\n", ReadOptions{}, []string{"value"}, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, err := ReadCSV(strings.NewReader(c.in), c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(tab.ValueNames, ",") != strings.Join(c.cols, ",") {
				t.Errorf("value columns %v, want %v", tab.ValueNames, c.cols)
			}
			if len(tab.Times) != len(c.times) {
				t.Fatalf("%d rows, want %d", len(tab.Times), len(c.times))
			}
			for i := range c.times {
				if tab.Times[i] != c.times[i] {
					t.Errorf("time[%d] = %v, want %v", i, time.Unix(0, tab.Times[i]).UTC(), time.Unix(0, c.times[i]).UTC())
				}
			}
			for i := range c.values {
				if !near(tab.Values[i], c.values[i], 0) {
					t.Errorf("value[%d] = %g, want %g", i, tab.Values[i], c.values[i])
				}
			}
		})
	}
}

func TestReadCSVErrors(t *testing.T) {
	for _, c := range []struct {
		name, in string
		opts     ReadOptions
		want     string // substring of the error
	}{
		{"empty", "", ReadOptions{}, "line 1: empty input"},
		{"one column", "timestamp\n", ReadOptions{}, "line 1: header needs"},
		{"bad number", "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,abc\n", ReadOptions{}, `line 3, column 2 ("value"): value "abc" is not a number`},
		{"bad time", "timestamp,value\n2014-13-01 00:00:00,1\n", ReadOptions{}, `line 2, column 1 ("timestamp")`},
		{"field count", "timestamp,value\n2014-04-01 00:00:00,1,2\n", ReadOptions{}, "line 2: 3 fields, the header has 2"},
		{"quote", "timestamp,value\n2014-04-01 00:00:00,\"1\n", ReadOptions{}, "line 2, column 2: unterminated"},
		{"long line", "timestamp,value\n2014-04-01 00:00:00," + strings.Repeat("1", 200) + "\n", ReadOptions{MaxLineBytes: 100}, "line 2: line longer than 100 bytes"},
		{"infinite", "timestamp,value\n1,Inf\n", ReadOptions{}, "not finite"},
		{"missing required", "timestamp,value\n1,\n", ReadOptions{RequireValues: true}, "line 2, column 2 (\"value\"): missing value"},
		{"duplicate column", "t,v,V\n", ReadOptions{}, "duplicate column"},
		{"unknown column", "t,v\n", ReadOptions{Columns: []string{"hr"}}, `no column "hr"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(c.in), c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
	_, err := ReadCSV(strings.NewReader("t,v\n"), ReadOptions{Columns: []string{"x"}})
	if !errors.Is(err, ErrInvalidParam) {
		t.Errorf("unknown column: %v is not ErrInvalidParam", err)
	}
	_, err = ReadCSV(strings.NewReader("t,v\nx,1\n"), ReadOptions{})
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 2 || pe.Column != 1 {
		t.Errorf("bad timestamp: %#v", err)
	}
}

// FuzzReadCSV checks that any input either fails with an error or yields a table that
// WriteCSV reproduces and ReadCSV reads back to the same times and values.
func FuzzReadCSV(f *testing.F) {
	for _, s := range []string{
		"timestamp,value\n2014-04-01 00:00:00,1.5\n2014-04-01 00:05:00,\n",
		"\"id\",\"time\",\"hr\"\n2022484408,2016-04-12 11:21:00,97\n",
		"t,a,b\n1700000000,1,2\n1700000001000,3,\n",
		"ts,x,\"y,z\"\n1,\"5\",\"6\"\"\"\n",
		"value,timestamp\r\n3,2026-01-01T01:00:00.5+01:00\r\n",
		"timestamp,value\n2014-04-01 00:00:00,\"1\n",
		"a,b\n-1e3,.5\n+2,nan\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		tab, err := ReadCSV(bytes.NewReader(in), ReadOptions{MaxLineBytes: 512})
		if err != nil {
			return
		}
		if len(tab.Values) != tab.Rows()*tab.Dim() || len(tab.LineNo) != tab.Rows() {
			t.Fatalf("inconsistent table: %d values, %d rows, %d columns", len(tab.Values), tab.Rows(), tab.Dim())
		}
		var out bytes.Buffer
		if err := WriteCSV(&out, tab, nil); err != nil {
			t.Fatal(err)
		}
		again, err := ReadCSV(&out, ReadOptions{MaxLineBytes: 1024})
		if err != nil {
			t.Fatalf("re-reading written output: %v\n%q", err, out.String())
		}
		if again.Rows() != tab.Rows() {
			t.Fatalf("rows %d after round trip, want %d", again.Rows(), tab.Rows())
		}
		for i := range tab.Times {
			if again.Times[i] != tab.Times[i] {
				t.Fatalf("time %d changed in round trip", i)
			}
		}
		for i := range tab.Values {
			a, b := again.Values[i], tab.Values[i]
			if a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
				t.Fatalf("value %d changed in round trip: %g vs %g", i, a, b)
			}
		}
	})
}

func TestWriteCSV(t *testing.T) {
	tab, err := ReadCSV(strings.NewReader("timestamp,value\n2014-04-01 00:00:00,1.50\n2014-04-01 00:05:00,\n"), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = WriteCSV(&b, tab, []OutColumn{{Name: "score", Values: []float64{0.25, nan}}, {Name: "anomaly", Values: []float64{1, 0}, Int: true}})
	if err != nil {
		t.Fatal(err)
	}
	want := "timestamp,value,score,anomaly\n2014-04-01 00:00:00,1.50,0.25,1\n2014-04-01 00:05:00,,,0\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
