package wfdb

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dataDir is the shared MIT-BIH DS1 directory, beside the checkout.
const dataDir = "../../../../shared/data/mitdb-ds1"

func needData(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dataDir, "101.hea")); err != nil {
		t.Skipf("MIT-BIH data not found at %s (needs ../shared/data beside the checkout): %v", dataDir, err)
	}
	return dataDir
}

func TestParseHeader(t *testing.T) {
	h, err := ParseHeader(strings.NewReader("100 2 360 650000\n100.dat 212 200 11 1024 995 -22131 0 MLII\n100.dat 212 200(5)/uV 11 1024 1011 20052 0 V5\n# 69 M 1085 1629 x1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "100" || h.NumSig != 2 || h.Fs != 360 || h.NumSamp != 650000 {
		t.Fatalf("record line: %+v", h)
	}
	s := h.Signals[0]
	if s.Format != 212 || s.Gain != 200 || s.ADCZero != 1024 || s.Baseline != 1024 || s.InitValue != 995 || s.Checksum != -22131 || s.Description != "MLII" {
		t.Fatalf("signal 0: %+v", s)
	}
	if h.Signals[1].Baseline != 5 || h.Signals[1].Units != "uV" {
		t.Fatalf("signal 1: %+v", h.Signals[1])
	}
	if len(h.Comments) != 1 || h.Comments[0] != "69 M 1085 1629 x1" {
		t.Fatalf("comments: %q", h.Comments)
	}
}

func TestParseHeaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"empty", "", ErrSyntax},
		{"multi-segment", "100/2 2 360\n", ErrUnsupported},
		{"bad nsig", "100 x 360\n", ErrSyntax},
		{"too many signals", "100 1000 360\n", ErrLimit},
		{"bad fs", "100 1 -3\n", ErrSyntax},
		{"missing signal line", "100 2 360\n100.dat 212\n", ErrSyntax},
		{"extra signal line", "100 1 360\n100.dat 212\n100.dat 212\n", ErrSyntax},
		{"format 310", "100 1 360\n100.dat 310\n", ErrUnsupported},
		{"skew", "100 1 360\n100.dat 212:3\n", ErrUnsupported},
		{"bad gain", "100 1 360\n100.dat 212 abc\n", ErrSyntax},
		{"long line", "100 1 360\n" + strings.Repeat("x", 5000) + "\n", ErrSyntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseHeader(strings.NewReader(tc.in))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecode212And16(t *testing.T) {
	// Two 12-bit samples 0x123 and -2 (0xffe) pack as 0x23, 0xf1, 0xfe.
	got, err := DecodeSignals([]byte{0x23, 0xf1, 0xfe}, 212, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got[0][0] != 0x123 || got[1][0] != -2 {
		t.Fatalf("212: %v", got)
	}
	got, err = DecodeSignals([]byte{0x01, 0x00, 0xff, 0xff, 0x00, 0x80}, 16, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, -1, -32768}; !equalInts(got[0], want) {
		t.Fatalf("16: %v, want %v", got[0], want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAnnotationsRoundTrip(t *testing.T) {
	var b bytes.Buffer
	w := func(a, i int) { b.Write([]byte{byte(i), byte(a<<2 | i>>8)}) }
	w(1, 100)     // N at 100
	w(codeAux, 5) // aux "(AFIB" padded to even
	b.WriteString("(AFIB\x00")
	w(codeSkip, 0)                          // skip 70000
	b.Write([]byte{0x01, 0x00, 0x70, 0x11}) // high word 0x0001, low word 0x1170
	w(5, 10)                                // V at 100+70000+10
	w(codeChn, 1)
	w(codeNum, 1023) // num -1
	w(28, 0)         // rhythm change, same time, chan carries over
	w(0, 0)
	got, err := ParseAnnotations(&b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d annotations: %+v", len(got), got)
	}
	if got[0].Sample != 100 || got[0].Label() != "N" || got[0].Aux != "(AFIB" {
		t.Fatalf("first: %+v", got[0])
	}
	if got[1].Sample != 100+0x11170+10 || got[1].Label() != "V" || got[1].Chan != 1 || got[1].Num != -1 {
		t.Fatalf("second: %+v", got[1])
	}
	if got[2].Sample != got[1].Sample || got[2].Label() != "+" || got[2].Chan != 1 || got[2].Num != -1 {
		t.Fatalf("third: %+v", got[2])
	}
}

func TestAnnotationErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"modifier first", []byte{1, codeNum << 2}},
		{"truncated skip", []byte{0, codeSkip << 2, 1, 2}},
		{"aux past end", []byte{10, 4, 9, codeAux << 2, 'a'}},
		{"reserved code", []byte{1, 50 << 2}},
		{"odd byte", []byte{10, 4, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseAnnotations(bytes.NewReader(tc.in)); !errors.Is(err, ErrSyntax) {
				t.Fatalf("got %v, want ErrSyntax", err)
			}
		})
	}
}

// TestRealRecords reads every DS1 record; ReadSignals verifies each signal's first sample
// and 16-bit checksum against the header, so a decoding error fails here.
func TestRealRecords(t *testing.T) {
	dir := needData(t)
	names, err := ListRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 22 {
		t.Fatalf("%d records, want the 22 of DS1", len(names))
	}
	for _, name := range names {
		rec, err := ReadRecord(dir, name, "atr")
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.Signals) != 2 || len(rec.Signals[0]) != 650000 {
			t.Fatalf("%s: %d signals of %d samples", name, len(rec.Signals), len(rec.Signals[0]))
		}
		if len(rec.Annotations) < 1000 {
			t.Fatalf("%s: only %d annotations", name, len(rec.Annotations))
		}
	}
}

// TestRecord101Values pins known values of record 101 (header: initial values 955 and 992,
// checksums 29832 and 19589) and its reference annotations.
func TestRecord101Values(t *testing.T) {
	dir := needData(t)
	rec, err := ReadRecord(dir, "101", "atr")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Signals[0][0] != 955 || rec.Signals[1][0] != 992 {
		t.Fatalf("first samples %d %d", rec.Signals[0][0], rec.Signals[1][0])
	}
	if Checksum(rec.Signals[0]) != 29832 || Checksum(rec.Signals[1]) != 19589 {
		t.Fatal("checksums differ from the header")
	}
	if got := rec.Header.Signals[0].Physical(rec.Signals[0][0]); got != (955.0-1024)/200 {
		t.Fatalf("physical value %v", got)
	}
	beats := 0
	for _, a := range rec.Annotations {
		if IsBeat(a.Code) {
			beats++
		}
	}
	// PhysioNet's table of beats for record 101: 1860 N, 3 A, 2 Q = 1865 beats.
	if beats != 1865 {
		t.Fatalf("record 101: %d beat annotations, want 1865", beats)
	}
	if rec.Annotations[0].Aux != "(N" {
		t.Fatalf("first annotation aux %q, want rhythm (N", rec.Annotations[0].Aux)
	}
}
