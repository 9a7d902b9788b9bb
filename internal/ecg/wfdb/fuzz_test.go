package wfdb

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte("100 2 360 650000\n100.dat 212 200 11 1024 995 -22131 0 MLII\n100.dat 212 200 11 1024 1011 20052 0 V5\n# 69 M\n"))
	f.Add([]byte("x 1 250/1(3) 10 10:00:00 01/01/2000\nx.dat 16+24 100(2)/mV 16 0 0 0 0 ECG\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(bytes.NewReader(data))
		if err != nil {
			return
		}
		if len(h.Signals) != h.NumSig || h.NumSig > MaxSignals || !(h.Fs > 0) {
			t.Fatalf("inconsistent header accepted: %+v", h)
		}
		for _, s := range h.Signals {
			if s.Format != 212 && s.Format != 16 || !(s.Gain > 0) {
				t.Fatalf("bad signal accepted: %+v", s)
			}
		}
	})
}

func FuzzDecodeSignals(f *testing.F) {
	f.Add([]byte{0x23, 0xf1, 0xfe, 0x00, 0x10}, 212, 2)
	f.Add([]byte{1, 2, 3, 4, 5}, 16, 1)
	f.Fuzz(func(t *testing.T, data []byte, format, nsig int) {
		out, err := DecodeSignals(data, format, nsig, 0)
		if err != nil {
			return
		}
		for _, s := range out {
			if len(s) != len(out[0]) {
				t.Fatal("signals of different lengths")
			}
			for _, v := range s {
				if format == 212 && (v < -2048 || v > 2047) {
					t.Fatalf("212 sample %d out of 12-bit range", v)
				}
			}
		}
	})
}

func FuzzParseAnnotations(f *testing.F) {
	f.Add([]byte{100, 4, 5, 252, '(', 'A', 'F', 'I', 'B', 0, 0, 236, 1, 0, 0x70, 0x11, 10, 20, 1, 248, 0, 0})
	if b, err := os.ReadFile(filepath.Join(dataDir, "101.atr")); err == nil {
		f.Add(b[:min(len(b), 512)])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		anns, err := ParseAnnotations(bytes.NewReader(data))
		if err != nil {
			return
		}
		for i, a := range anns {
			if a.Sample < 0 || a.Code < 0 || a.Code > MaxCode {
				t.Fatalf("annotation %d invalid: %+v", i, a)
			}
			if i > 0 && a.Sample < anns[i-1].Sample {
				t.Fatalf("annotation %d goes back in time", i)
			}
		}
	})
}
