package applehealth

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// An electrocardiogram file of the export (electrocardiograms/ecg_2026-03-14.csv):
//
//	Name,Jane Appleseed
//	Date of Birth,"Jan 1, 1980"
//	Recorded Date,2026-03-14 06:12:33 -0400
//	Classification,Sinus Rhythm
//	Device,"Watch6,1"
//	Sample Rate,512 hertz
//	Lead,Lead I
//	Unit,µV
//
//	-28.614
//	-29.102
//	...
//
// Header lines are key,value; the keys are localised, so the values are recognised by their
// form: the sample rate ("512 hertz", "512 Hz", "512,000 Hz"), the recording date (the
// export's date format), the unit (µV or mV) and the Watch hardware ("Watch6,1"). In locales
// with a decimal comma the samples read "-28,614" (sometimes quoted). The patient's name and
// birth date are not read.

var errNotECG = errors.New("not an Apple Health electrocardiogram file")

var (
	rateRe     = regexp.MustCompile(`(?i)^\s*([0-9]+(?:[.,][0-9]+)?)\s*(hertz|hz)\s*$`)
	hardwareRe = regexp.MustCompile(`^Watch[0-9]+,[0-9]+$`)
)

// Limits of one electrocardiogram file: Apple records 30 s at 512 Hz (15,360 samples).
const (
	maxECGFile    = 16 << 20
	maxECGHeader  = 64
	maxECGSamples = 1 << 20
	// microvoltsPerMillivolt: the export's samples are in µV; readings carry mV.
	microvoltsPerMillivolt = 1000
	// ecgChunk is the most samples in one reading (reading.MaxSamples); longer recordings
	// become consecutive readings.
	ecgChunk = 1 << 16
)

// ReadECG reads one electrocardiogram CSV file and emits its readings (one per 65,536
// samples). It returns errNotECG for a CSV file of another kind.
func ReadECG(r io.Reader, name string, o Options, emit Emit) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	h, err := readECGHeader(sc)
	if err != nil {
		return 0, err
	}
	samples, err := readECGSamples(sc, name, h)
	if err != nil {
		return 0, err
	}
	device := "Apple-Watch"
	if h.hardware != "" {
		device += "." + sanitize(h.hardware)
	}
	n := 0
	for off := 0; off < len(samples) || off == 0; off += ecgChunk {
		part := samples[off:min(off+ecgChunk, len(samples))]
		t := h.recorded.Add(time.Duration(float64(off) / h.fs * float64(time.Second)))
		if err := emit(ecgReading(o.Subject, device, t, h.fs, part), name); err != nil {
			return n, err
		}
		n++
		if len(samples) == 0 {
			break
		}
	}
	return n, nil
}

// ecgHeader is what the header of an electrocardiogram file says about its samples.
type ecgHeader struct {
	fs        float64   // sampling rate, Hz
	recorded  time.Time // time of the first sample
	unitScale float64   // multiplier from the file's unit to mV
	hardware  string    // the watch model, when given
	lines     int       // lines read, the blank separator included
}

// readECGHeader reads the key,value lines up to the first blank line. A file without a
// sampling rate and a recording time is not an electrocardiogram (errNotECG).
func readECGHeader(sc *bufio.Scanner) (ecgHeader, error) {
	h := ecgHeader{unitScale: 1.0 / microvoltsPerMillivolt}
	hasTime := false
	for sc.Scan() {
		h.lines++
		text := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff"))
		if text == "" {
			break
		}
		if h.lines > maxECGHeader {
			return h, errNotECG
		}
		_, v, ok := strings.Cut(text, ",")
		if !ok {
			return h, errNotECG
		}
		v = unquote(strings.TrimSpace(v))
		switch {
		case rateRe.MatchString(v):
			m := rateRe.FindStringSubmatch(v)
			h.fs, _ = strconv.ParseFloat(strings.ReplaceAll(m[1], ",", "."), 64)
		case v == "mV":
			h.unitScale = 1
		case v == "µV" || v == "μV" || v == "uV":
			h.unitScale = 1.0 / microvoltsPerMillivolt
		case hardwareRe.MatchString(v):
			h.hardware = v
		default:
			if t, ok := parseTime(v); ok && !hasTime {
				h.recorded, hasTime = t, true
			}
		}
	}
	if h.fs == 0 || !hasTime {
		return h, errNotECG
	}
	return h, nil
}

// readECGSamples reads the sample lines after the header, one value a line (a decimal comma
// is accepted), converted to mV.
func readECGSamples(sc *bufio.Scanner, name string, h ecgHeader) ([]float64, error) {
	var samples []float64
	line := h.lines
	for sc.Scan() {
		line++
		text := unquote(strings.TrimSpace(sc.Text()))
		if text == "" {
			continue
		}
		if !strings.Contains(text, ".") {
			text = strings.Replace(text, ",", ".", 1) // decimal comma
		}
		v, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("reading %s line %d: %q is not a sample value", name, line, sc.Text())
		}
		// NaN and Inf parse, and a huge value overflows the float32 the samples are written
		// as: none of them is a voltage, and JSON cannot carry them.
		if mv := float32(v * h.unitScale); math.IsNaN(float64(mv)) || math.IsInf(float64(mv), 0) {
			return nil, fmt.Errorf("reading %s line %d: %q is not a finite sample value", name, line, sc.Text())
		}
		if len(samples) == maxECGSamples {
			return nil, fmt.Errorf("reading %s: more than %d samples; not an Apple Watch recording", name, maxECGSamples)
		}
		samples = append(samples, v*h.unitScale)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return samples, nil
}

// ecgReading encodes one ecg reading of part, the samples starting at t.
func ecgReading(subject, device string, t time.Time, fs float64, part []float64) []byte {
	b := make([]byte, 0, 64+len(part)*10)
	b = append(b, `{"id":"`...)
	b = append(b, idOf(subject, "ecg", device, t, t, strconv.Itoa(len(part)))...)
	b = append(b, `","subject":`...)
	b = appendJSONString(b, subject)
	b = append(b, `,"device":"`...)
	b = append(b, device...)
	b = append(b, `","kind":"ecg","time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","values":{"fs":`...)
	b = appendNum(b, fs)
	b = append(b, `,"samples":[`...)
	for i, v := range part {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(float32(v)), 'f', -1, 32)
	}
	return append(b, "]}}"...)
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return s
}
