package wfdb

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits applied by the parsers.
const (
	// MaxHeaderBytes bounds the size of a header file.
	MaxHeaderBytes = 1 << 20
	// MaxSignals bounds the number of signals in one record.
	MaxSignals = 64
	// MaxSamples bounds the number of samples per signal that ReadSignals decodes
	// (about 34 days at 360 Hz).
	MaxSamples = 1 << 30
	// MaxAnnotations bounds the number of annotations read from one file.
	MaxAnnotations = 1 << 24
	maxLineBytes   = 4096
)

// Header is a parsed single-segment WFDB header.
type Header struct {
	Name     string
	NumSig   int
	Fs       float64 // sampling frequency, samples per second per signal
	NumSamp  int64   // samples per signal; 0 when the header does not say
	BaseTime string  // as written, may be empty
	BaseDate string  // as written, may be empty
	Signals  []SignalSpec
	Comments []string // comment lines without the leading '#'
}

// SignalSpec describes one signal of a record.
type SignalSpec struct {
	FileName    string
	Format      int
	ByteOffset  int64
	Gain        float64 // ADC units per physical unit; 200 when the header gives none
	Baseline    int     // ADC value of 0 physical units
	Units       string  // "mV" when the header gives none
	ADCRes      int
	ADCZero     int
	InitValue   int
	Checksum    int // 16-bit sum of all samples, as a signed 16-bit value
	HasChecksum bool
	HasInit     bool
	BlockSize   int
	Description string
}

// DefaultGain is the gain WFDB assumes when a header gives none (adu per mV).
const DefaultGain = 200

// ParseHeader parses a header. Multi-segment headers are rejected with ErrUnsupported.
func ParseHeader(r io.Reader) (*Header, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxHeaderBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading header: %w", err)
	}
	if len(data) > MaxHeaderBytes {
		return nil, fmt.Errorf("reading header: larger than %d bytes: %w", MaxHeaderBytes, ErrLimit)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 256), maxLineBytes)
	h := &Header{}
	lineNo := 0
	gotRecord := false
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			h.Comments = append(h.Comments, strings.TrimSpace(line[1:]))
			continue
		}
		if !gotRecord {
			if err := h.parseRecordLine(line); err != nil {
				return nil, fmt.Errorf("parsing header line %d: %w", lineNo, err)
			}
			gotRecord = true
			continue
		}
		if len(h.Signals) == h.NumSig {
			// Extra non-comment lines after the signals are invalid in a single-segment header.
			return nil, fmt.Errorf("parsing header line %d: more signal lines than the %d declared: %w", lineNo, h.NumSig, ErrSyntax)
		}
		s, err := parseSignalLine(line)
		if err != nil {
			return nil, fmt.Errorf("parsing header line %d: %w", lineNo, err)
		}
		h.Signals = append(h.Signals, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading header line %d: %w: %w", lineNo+1, ErrSyntax, err)
	}
	if !gotRecord {
		return nil, fmt.Errorf("parsing header: no record line: %w", ErrSyntax)
	}
	if len(h.Signals) != h.NumSig {
		return nil, fmt.Errorf("parsing header: %d signal lines, record line declares %d: %w", len(h.Signals), h.NumSig, ErrSyntax)
	}
	return h, nil
}

func (h *Header) parseRecordLine(line string) error {
	f := strings.Fields(line)
	if len(f) < 2 {
		return fmt.Errorf("record line needs a name and a number of signals: %w", ErrSyntax)
	}
	if strings.Contains(f[0], "/") {
		return fmt.Errorf("multi-segment record %q: %w", f[0], ErrUnsupported)
	}
	h.Name = f[0]
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 0 {
		return fmt.Errorf("number of signals %q: %w", f[1], ErrSyntax)
	}
	if n > MaxSignals {
		return fmt.Errorf("%d signals, at most %d: %w", n, MaxSignals, ErrLimit)
	}
	h.NumSig = n
	h.Fs = 250 // WFDB default
	if len(f) > 2 {
		fs := f[2]
		if i := strings.IndexAny(fs, "/("); i >= 0 {
			fs = fs[:i] // counter frequency and base counter value are not used
		}
		v, err := strconv.ParseFloat(fs, 64)
		if err != nil || !(v > 0) || v > 1e7 {
			return fmt.Errorf("sampling frequency %q: %w", f[2], ErrSyntax)
		}
		h.Fs = v
	}
	if len(f) > 3 {
		v, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil || v < 0 {
			return fmt.Errorf("number of samples %q: %w", f[3], ErrSyntax)
		}
		h.NumSamp = v
	}
	if len(f) > 4 {
		h.BaseTime = f[4]
	}
	if len(f) > 5 {
		h.BaseDate = f[5]
	}
	return nil
}

func parseSignalLine(line string) (SignalSpec, error) {
	f := strings.Fields(line)
	s := SignalSpec{Gain: DefaultGain, Units: "mV"}
	if len(f) < 2 {
		return s, fmt.Errorf("signal line needs a file name and a format: %w", ErrSyntax)
	}
	s.FileName = f[0]
	format := f[1]
	if i := strings.IndexByte(format, '+'); i >= 0 {
		off, err := strconv.ParseInt(format[i+1:], 10, 64)
		if err != nil || off < 0 {
			return s, fmt.Errorf("byte offset in %q: %w", format, ErrSyntax)
		}
		s.ByteOffset = off
		format = format[:i]
	}
	if strings.ContainsAny(format, "x:") {
		return s, fmt.Errorf("samples per frame or skew in %q: %w", f[1], ErrUnsupported)
	}
	fm, err := strconv.Atoi(format)
	if err != nil {
		return s, fmt.Errorf("format %q: %w", f[1], ErrSyntax)
	}
	if fm != 212 && fm != 16 {
		return s, fmt.Errorf("signal format %d (only 212 and 16): %w", fm, ErrUnsupported)
	}
	s.Format = fm
	hasBaseline := false
	if len(f) > 2 {
		g := f[2]
		if i := strings.IndexByte(g, '/'); i >= 0 {
			s.Units = g[i+1:]
			g = g[:i]
		}
		if i := strings.IndexByte(g, '('); i >= 0 {
			if !strings.HasSuffix(g, ")") {
				return s, fmt.Errorf("baseline in %q: %w", f[2], ErrSyntax)
			}
			b, err := strconv.Atoi(g[i+1 : len(g)-1])
			if err != nil {
				return s, fmt.Errorf("baseline in %q: %w", f[2], ErrSyntax)
			}
			s.Baseline = b
			hasBaseline = true
			g = g[:i]
		}
		v, err := strconv.ParseFloat(g, 64)
		if err != nil || v < 0 || v > 1e12 {
			return s, fmt.Errorf("gain %q: %w", f[2], ErrSyntax)
		}
		if v > 0 {
			s.Gain = v
		}
	}
	ints := []*int{&s.ADCRes, &s.ADCZero, &s.InitValue, &s.Checksum, &s.BlockSize}
	names := []string{"adc resolution", "adc zero", "initial value", "checksum", "block size"}
	for k := range ints {
		if len(f) <= 3+k {
			break
		}
		v, err := strconv.Atoi(f[3+k])
		if err != nil || v > 1<<31-1 || v < -(1<<31) {
			return s, fmt.Errorf("%s %q: %w", names[k], f[3+k], ErrSyntax)
		}
		*ints[k] = v
		switch k {
		case 2:
			s.HasInit = true
		case 3:
			s.HasChecksum = true
		}
	}
	if !hasBaseline {
		s.Baseline = s.ADCZero // header(5): baseline defaults to the ADC zero
	}
	if len(f) > 8 {
		s.Description = strings.Join(f[8:], " ")
	}
	return s, nil
}
