package ecg

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pulselake/pulselake/internal/ecg/wfdb"
)

// ClassifiedBeat is one line of `pulselake ecg classify` output (NDJSON).
type ClassifiedBeat struct {
	Index  int                `json:"index"`            // beat number in the input, from 0
	Sample *int64             `json:"sample,omitempty"` // R-peak sample, for WFDB records
	TimeS  *float64           `json:"time_s,omitempty"` // R-peak time in seconds, for WFDB records
	Class  string             `json:"class"`
	Probs  map[string]float64 `json:"probs"`
	Ref    string             `json:"ref,omitempty"` // reference AAMI class when the input has one
}

func classified(i int, p Prediction) ClassifiedBeat {
	probs := make(map[string]float64, NumClasses)
	for c, v := range p.Probs {
		probs[className(c)] = float64(int(v*1e4+0.5)) / 1e4
	}
	return ClassifiedBeat{Index: i, Class: p.Class.String(), Probs: probs}
}

// ClassifyFile classifies the beats in path and writes one JSON object per beat to w:
//
//   - a WFDB record, named by its path without extension or by its .hea file: the first
//     signal is run through the QRS detector and every detected beat is classified;
//   - a .csv file: one beat per line, 187 window samples in 0..1, optionally followed by the
//     RR features pre, post, local and average in seconds (191 columns); a non-numeric first
//     line is taken as a header;
//   - anything else is read as NDJSON: one object per line, either {"samples":[187 floats],
//     "rr":{"pre":s,"post":s,"local":s,"average":s}} or an ecg_beat reading whose "values"
//     holds "samples" (and optionally "label"); the optional label becomes "ref".
//
// Beats without RR features are classified from their shape alone, which is less accurate.
func ClassifyFile(cl Classifier, path string, w io.Writer) (int, error) {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	n := 0
	emit := func(b ClassifiedBeat) error {
		n++
		return enc.Encode(b)
	}
	var err error
	switch base := strings.TrimSuffix(path, ".hea"); {
	case fileExists(base + ".hea"):
		err = classifyRecord(cl, base, emit)
	case strings.EqualFold(filepath.Ext(path), ".csv"):
		err = classifyCSV(cl, path, emit)
	default:
		err = classifyNDJSON(cl, path, emit)
	}
	if err != nil {
		return n, fmt.Errorf("classifying %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("writing predictions: %w", err)
	}
	return n, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func classifyRecord(cl Classifier, base string, emit func(ClassifiedBeat) error) error {
	rec, err := wfdb.ReadRecord(filepath.Dir(base), filepath.Base(base), "")
	if err != nil {
		return err
	}
	if len(rec.Signals) == 0 {
		return errors.New("record has no signals")
	}
	fs := rec.Header.Fs
	bs := NewBeatStream(fs)
	spec := rec.Header.Signals[0]
	var out []StreamBeat
	win := make([]float64, WindowLen)
	i := 0
	for _, v := range rec.Signals[0] {
		out = bs.Push(spec.Physical(v), out[:0])
		for _, b := range out {
			for k := range win {
				win[k] = float64(b.Samples[k])
			}
			c := classified(i, cl.Classify(win, b.RR))
			s, t := b.Sample, math.Round(float64(b.Sample)/fs*1000)/1000
			c.Sample, c.TimeS = &s, &t
			if err := emit(c); err != nil {
				return err
			}
			i++
		}
	}
	return nil
}

func classifyCSV(cl Classifier, path string, emit func(ClassifiedBeat) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	win := make([]float64, WindowLen)
	for line, i := 1, 0; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		vals := make([]float64, len(rec))
		bad := false
		for k, s := range rec {
			v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil {
				bad = true
				break
			}
			vals[k] = v
		}
		if bad {
			if line == 1 {
				continue // header
			}
			return fmt.Errorf("line %d: non-numeric value", line)
		}
		if len(rec) != WindowLen && len(rec) != WindowLen+4 {
			return fmt.Errorf("line %d: %d columns, want %d samples or %d with RR features", line, len(rec), WindowLen, WindowLen+4)
		}
		copy(win, vals[:WindowLen])
		if err := checkWindow(win); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		var rr RRFeatures
		if len(vals) > WindowLen {
			rr = RRFeatures{Pre: vals[WindowLen], Post: vals[WindowLen+1], Local: vals[WindowLen+2], Average: vals[WindowLen+3]}
		}
		if err := emit(classified(i, cl.Classify(win, rr))); err != nil {
			return err
		}
		i++
	}
}

func checkWindow(w []float64) error {
	for k, v := range w {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("sample %d is %v, outside 0..1", k, v)
		}
	}
	return nil
}

type ndjsonBeat struct {
	Samples []float64   `json:"samples"`
	RR      *RRFeatures `json:"rr"`
	Label   string      `json:"label"`
	Values  *struct {
		Samples []float64 `json:"samples"`
		Label   string    `json:"label"`
	} `json:"values"`
}

func classifyNDJSON(cl Classifier, path string, emit func(ClassifiedBeat) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	i := 0
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var in ndjsonBeat
		if err := json.Unmarshal(b, &in); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		samples, label := in.Samples, in.Label
		if in.Values != nil {
			samples, label = in.Values.Samples, in.Values.Label
		}
		if len(samples) != WindowLen {
			return fmt.Errorf("line %d: %d samples, want %d", line, len(samples), WindowLen)
		}
		if err := checkWindow(samples); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		var rr RRFeatures
		if in.RR != nil {
			rr = *in.RR
		}
		c := classified(i, cl.Classify(samples, rr))
		if label != "" {
			if cls, ok := AAMIClass(label); ok {
				c.Ref = cls.String()
			} else if _, err := ParseClass(label); err == nil {
				c.Ref = label
			}
		}
		if err := emit(c); err != nil {
			return err
		}
		i++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading: %w", err)
	}
	return nil
}
