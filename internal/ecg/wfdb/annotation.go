package wfdb

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Annotation is one entry of an annotation file.
type Annotation struct {
	Sample int64  // sample number (time) of the annotation
	Code   int    // annotation code, 1..49 (see Mnemonic)
	Sub    int    // subtype
	Chan   int    // signal the annotation refers to
	Num    int    // context-dependent number
	Aux    string // auxiliary text, e.g. a rhythm "(AFIB"
}

// Pseudo-annotation codes of the MIT annotation format (annot(5)).
const (
	codeSkip = 59
	codeNum  = 60
	codeSub  = 61
	codeChn  = 62
	codeAux  = 63
	// MaxCode is the largest real annotation code (ACMAX in the WFDB library).
	MaxCode = 49
)

// mnemonicTable holds the one-letter mnemonic of each standard annotation code, indexed by
// code (ecgcodes.h); a space marks a code without one.
const mnemonicTable = " NLRaVFJASEj/Q~ | sT*D\"=pB^t+u?![]en@xf()r"

// Mnemonic returns the one-letter label of an annotation code, e.g. "N" for 1 and "V" for 5;
// "" for codes without a standard mnemonic.
func Mnemonic(code int) string {
	if code < 0 || code >= len(mnemonicTable) || mnemonicTable[code] == ' ' {
		return ""
	}
	return mnemonicTable[code : code+1]
}

// IsBeat reports whether an annotation code labels a QRS complex (isqrs in the WFDB library):
// N L R a V F J A S E j / Q e n f B r ? and ventricular flutter waves !.
func IsBeat(code int) bool {
	switch code {
	case 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 25, 30, 31, 34, 35, 38, 41:
		return true
	}
	return false
}

// Label returns the mnemonic of a.
func (a Annotation) Label() string { return Mnemonic(a.Code) }

// ParseAnnotations reads an annotation file in the MIT format: a sequence of little-endian
// 16-bit words, each holding a 6-bit code and a 10-bit time difference, with the pseudo-codes
// SKIP (a 32-bit time difference follows), NUM, SUB, CHN (set the field of the annotation just
// read; NUM and CHN carry over to later annotations) and AUX (a counted byte string follows).
// A zero word ends the file.
func ParseAnnotations(r io.Reader) ([]Annotation, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxAnnotations*8+1))
	if err != nil {
		return nil, fmt.Errorf("reading annotations: %w", err)
	}
	if len(data) > MaxAnnotations*8 {
		return nil, fmt.Errorf("reading annotations: larger than %d bytes: %w", MaxAnnotations*8, ErrLimit)
	}
	var (
		out       []Annotation
		t         int64
		num, chn  int
		haveAnnot bool
	)
	ar := &annotationReader{data: data}
	for {
		start := ar.pos
		a, i, ok := ar.word()
		if !ok {
			if ar.pos < len(data) {
				return nil, fmt.Errorf("parsing annotations at byte %d: odd trailing byte: %w", start, ErrSyntax)
			}
			// Some writers omit the end marker; accept a clean end of data.
			return out, nil
		}
		switch {
		case a == 0 && i == 0:
			return out, nil
		case a == codeSkip:
			d, err := ar.skip(start)
			if err != nil {
				return nil, err
			}
			t += d
		case a == codeNum, a == codeSub, a == codeChn, a == codeAux:
			if !haveAnnot {
				return nil, fmt.Errorf("parsing annotations at byte %d: modifier code %d before any annotation: %w", start, a, ErrSyntax)
			}
			last := &out[len(out)-1]
			switch a {
			case codeNum:
				num = signed10(i)
				last.Num = num
			case codeSub:
				last.Sub = signed10(i)
			case codeChn:
				chn = i
				last.Chan = chn
			case codeAux:
				aux, err := ar.aux(start, i)
				if err != nil {
					return nil, err
				}
				last.Aux = aux
			}
		case a > MaxCode:
			return nil, fmt.Errorf("parsing annotations at byte %d: reserved code %d: %w", start, a, ErrSyntax)
		default:
			if len(out) >= MaxAnnotations {
				return nil, fmt.Errorf("parsing annotations: more than %d: %w", MaxAnnotations, ErrLimit)
			}
			t += int64(i)
			out = append(out, Annotation{Sample: t, Code: a, Num: num, Chan: chn})
			haveAnnot = true
		}
	}
}

// annotationReader walks the words of an annotation file.
type annotationReader struct {
	data []byte
	pos  int
}

// word returns the code (high 6 bits) and field (low 10 bits) of the next word, or false at
// the end of data.
func (r *annotationReader) word() (code, field int, ok bool) {
	if r.pos+2 > len(r.data) {
		return 0, 0, false
	}
	w := binary.LittleEndian.Uint16(r.data[r.pos:])
	r.pos += 2
	return int(w >> 10), int(w & 0x3ff), true
}

// skip reads the 32-bit time difference after a SKIP word that began at byte start.
func (r *annotationReader) skip(start int) (int64, error) {
	if r.pos+4 > len(r.data) {
		return 0, fmt.Errorf("parsing annotations at byte %d: truncated skip: %w", start, ErrSyntax)
	}
	// The interval is a PDP-11 long: high word first, each word little-endian.
	hi := binary.LittleEndian.Uint16(r.data[r.pos:])
	lo := binary.LittleEndian.Uint16(r.data[r.pos+2:])
	r.pos += 4
	d := int64(int32(uint32(hi)<<16 | uint32(lo)))
	if d < 0 {
		// Annotations are stored in time order; a backward skip means corrupt data.
		return 0, fmt.Errorf("parsing annotations at byte %d: negative skip %d: %w", start, d, ErrSyntax)
	}
	return d, nil
}

// aux reads the n-byte string (padded to an even length) after an AUX word that began at
// byte start.
func (r *annotationReader) aux(start, n int) (string, error) {
	if r.pos+n > len(r.data) {
		return "", fmt.Errorf("parsing annotations at byte %d: aux of %d bytes past the end: %w", start, n, ErrSyntax)
	}
	b := r.data[r.pos : r.pos+n]
	for k, c := range b { // aux strings are NUL-terminated when shorter than their field
		if c == 0 {
			b = b[:k]
			break
		}
	}
	r.pos = min(r.pos+n+n%2, len(r.data))
	return string(b), nil
}

// signed10 interprets a 10-bit field as written by the WFDB library for NUM and SUB
// (values are stored as signed chars in the low bits).
func signed10(i int) int {
	if i >= 512 {
		return i - 1024
	}
	return i
}
