package ingest

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/ecg/wfdb"
	"github.com/pulselake/pulselake/internal/reading"
)

// wfdbChunk is the length of one ecg reading cut from a WFDB record.
const wfdbChunk = 10 * time.Second

var deviceUnsafe = regexp.MustCompile(`[^A-Za-z0-9._:@+\-]+`)

// wfdbRecords turns the WFDB record whose header is path (name.hea, with its signal files
// beside it) into ecg readings: every signal, in consecutive 10 s readings of physical values
// in mV. Subject is subject, or the record name; device is "<record>-<signal description>"
// (e.g. 208-MLII). The first reading starts at the header's base date and time (UTC) or,
// when the header has no date (as in the MIT-BIH databases), at the header file's
// modification time. Each reading's id is "wfdb:<subject>:<record>:<signal>:<first sample>",
// so importing a record again stores nothing new. Annotation files are not imported.
func wfdbRecords(path, subject string, emit func([]byte, string) error) error {
	dir, name := filepath.Dir(path), strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	rec, err := wfdb.ReadRecord(dir, name, "")
	if err != nil {
		return err
	}
	h := rec.Header
	start, err := wfdbStart(h, path)
	if err != nil {
		return err
	}
	if subject == "" {
		subject = name
	}
	chunk := int(math.Round(h.Fs * wfdbChunk.Seconds()))
	chunk = max(1, min(chunk, reading.MaxSamples))
	for s, spec := range h.Signals {
		scale, err := toMillivolts(spec.Units)
		if err != nil {
			return fmt.Errorf("signal %d (%s): %w", s, spec.Description, err)
		}
		lead := strings.Trim(deviceUnsafe.ReplaceAllString(spec.Description, "_"), "_")
		if lead == "" {
			lead = "s" + strconv.Itoa(s)
		}
		device := name + "-" + lead
		sig := rec.Signals[s]
		for from := 0; from < len(sig); from += chunk {
			to := min(from+chunk, len(sig))
			samples := make([]float64, to-from)
			for i := range samples {
				samples[i] = spec.Physical(sig[from+i]) * scale
			}
			at := start.Add(time.Duration(math.Round(float64(from)/h.Fs*1e6)) * time.Microsecond)
			raw, err := json.Marshal(map[string]any{
				"id":      fmt.Sprintf("wfdb:%s:%s:%d:%d", subject, name, s, from),
				"subject": subject, "device": device, "kind": "ecg", "time": at.Format(time.RFC3339Nano),
				"values": map[string]any{"fs": h.Fs, "samples": samples},
			})
			if err != nil {
				return fmt.Errorf("signal %d sample %d: %w", s, from, err)
			}
			if err := emit(raw, fmt.Sprintf("%s:signal %d:sample %d", filepath.Base(path), s, from)); err != nil {
				return err
			}
		}
	}
	return nil
}

// wfdbStart is the time of a record's first sample.
func wfdbStart(h *wfdb.Header, path string) (time.Time, error) {
	if h.BaseDate == "" {
		st, err := os.Stat(path)
		if err != nil {
			return time.Time{}, err
		}
		return st.ModTime().UTC().Truncate(time.Second), nil
	}
	d, err := time.Parse("02/01/2006", h.BaseDate)
	if err != nil {
		return time.Time{}, fmt.Errorf("header base date %q: want dd/mm/yyyy", h.BaseDate)
	}
	if h.BaseTime == "" {
		return d, nil
	}
	parts := strings.Split(h.BaseTime, ":")
	if len(parts) > 3 {
		return time.Time{}, fmt.Errorf("header base time %q: want hh:mm:ss", h.BaseTime)
	}
	// WFDB writes [[hh:]mm:]ss[.sss]; read from the seconds backwards.
	var secs float64
	for i, unit := len(parts)-1, 1.0; i >= 0; i, unit = i-1, unit*60 {
		v, err := strconv.ParseFloat(parts[i], 64)
		if err != nil || !(v >= 0 && v < 24*3600) {
			return time.Time{}, fmt.Errorf("header base time %q: want hh:mm:ss", h.BaseTime)
		}
		secs += v * unit
	}
	if secs >= 24*3600 {
		return time.Time{}, fmt.Errorf("header base time %q: beyond one day", h.BaseTime)
	}
	return d.Add(time.Duration(secs * float64(time.Second))), nil
}

// toMillivolts is the factor from a signal's units to mV.
func toMillivolts(units string) (float64, error) {
	switch units {
	case "mV", "":
		return 1, nil
	case "uV", "μV", "µV":
		return 1e-3, nil
	case "V":
		return 1e3, nil
	}
	return 0, fmt.Errorf("units %q: only ECG signals in V, mV or uV can be imported as ecg readings", units)
}
