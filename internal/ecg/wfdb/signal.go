package wfdb

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Samples holds decoded signals: Data[i] is signal i, in ADC units.
type Samples struct {
	Data [][]int
}

// Checksum returns the WFDB checksum of s: the sum of all samples as a signed 16-bit value.
func Checksum(s []int) int {
	var sum uint16
	for _, v := range s {
		sum += uint16(v)
	}
	return int(int16(sum))
}

// DecodeSignals decodes the interleaved samples of nsig signals stored in one signal file
// of the given format (212 or 16). Frames are decoded up to maxFrames (0 = until the data end);
// a trailing partial frame is dropped, as the WFDB library does.
func DecodeSignals(data []byte, format, nsig int, maxFrames int64) ([][]int, error) {
	if nsig <= 0 || nsig > MaxSignals {
		return nil, fmt.Errorf("decoding signals: %d signals: %w", nsig, ErrSyntax)
	}
	var nvals int64
	switch format {
	case 212:
		nvals = int64(len(data)) / 3 * 2
		if len(data)%3 == 2 {
			nvals++
		}
	case 16:
		nvals = int64(len(data)) / 2
	default:
		return nil, fmt.Errorf("decoding signals: format %d: %w", format, ErrUnsupported)
	}
	frames := nvals / int64(nsig)
	if maxFrames > 0 && frames > maxFrames {
		frames = maxFrames
	}
	if frames > MaxSamples {
		return nil, fmt.Errorf("decoding signals: %d samples per signal, at most %d: %w", frames, MaxSamples, ErrLimit)
	}
	out := make([][]int, nsig)
	for i := range out {
		out[i] = make([]int, frames)
	}
	total := frames * int64(nsig)
	switch format {
	case 212:
		for k := int64(0); k < total; k++ {
			b := k / 2 * 3
			var v int
			if k%2 == 0 {
				v = int(data[b]) | int(data[b+1]&0x0f)<<8
			} else {
				v = int(data[b+2]) | int(data[b+1]&0xf0)<<4
			}
			if v >= 1<<11 {
				v -= 1 << 12
			}
			out[k%int64(nsig)][k/int64(nsig)] = v
		}
	case 16:
		for k := int64(0); k < total; k++ {
			v := int(int16(binary.LittleEndian.Uint16(data[2*k:])))
			out[k%int64(nsig)][k/int64(nsig)] = v
		}
	}
	return out, nil
}

// ReadSignals reads and decodes the signal files of h. open returns the contents of a
// signal file named in the header. Every signal is checked against the header's initial
// value and checksum when the header gives them and the whole record was read.
func ReadSignals(h *Header, open func(name string) (io.ReadCloser, error)) (*Samples, error) {
	res := &Samples{Data: make([][]int, h.NumSig)}
	for i := 0; i < h.NumSig; {
		// Signals sharing a file are consecutive and interleaved frame by frame.
		j := i + 1
		for j < h.NumSig && h.Signals[j].FileName == h.Signals[i].FileName {
			j++
		}
		spec := h.Signals[i]
		for k := i + 1; k < j; k++ {
			if h.Signals[k].Format != spec.Format || h.Signals[k].ByteOffset != spec.ByteOffset {
				return nil, fmt.Errorf("reading %s: signals in one file with different formats or offsets: %w", spec.FileName, ErrUnsupported)
			}
		}
		data, err := readFile(open, spec.FileName)
		if err != nil {
			return nil, err
		}
		if spec.ByteOffset > int64(len(data)) {
			return nil, fmt.Errorf("reading %s: byte offset %d beyond the file end: %w", spec.FileName, spec.ByteOffset, ErrSyntax)
		}
		sigs, err := DecodeSignals(data[spec.ByteOffset:], spec.Format, j-i, h.NumSamp)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", spec.FileName, err)
		}
		if h.NumSamp > 0 && int64(len(sigs[0])) < h.NumSamp {
			return nil, fmt.Errorf("reading %s: %d samples per signal, header says %d: %w", spec.FileName, len(sigs[0]), h.NumSamp, ErrSyntax)
		}
		for k := i; k < j; k++ {
			s := sigs[k-i]
			spec := h.Signals[k]
			if spec.HasInit && len(s) > 0 && s[0] != spec.InitValue {
				return nil, fmt.Errorf("reading %s signal %d: first sample %d, header says %d: %w", spec.FileName, k, s[0], spec.InitValue, ErrSyntax)
			}
			if spec.HasChecksum && h.NumSamp > 0 {
				if c := Checksum(s); c != spec.Checksum {
					return nil, fmt.Errorf("reading %s signal %d: checksum %d, header says %d: %w", spec.FileName, k, c, spec.Checksum, ErrSyntax)
				}
			}
			res.Data[k] = s
		}
		i = j
	}
	return res, nil
}

func readFile(open func(string) (io.ReadCloser, error), name string) ([]byte, error) {
	rc, err := open(name)
	if err != nil {
		return nil, fmt.Errorf("opening signal file %s: %w", name, err)
	}
	defer rc.Close()
	limit := int64(MaxSamples) * 4
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading signal file %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("reading signal file %s: larger than %d bytes: %w", name, limit, ErrLimit)
	}
	return data, nil
}

// Physical converts ADC units to physical units (usually mV) with the signal's gain and baseline.
func (s SignalSpec) Physical(adc int) float64 {
	return float64(adc-s.Baseline) / s.Gain
}
