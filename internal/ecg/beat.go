package ecg

import (
	"fmt"
	"math"
	"strings"

	"github.com/pulselake/pulselake/internal/ecg/wfdb"
)

// Heartbeat window form of Kachuee, Fazeli & Sarrafzadeh, "ECG Heartbeat Classification: A Deep
// Transferable Representation" (2018): the signal resampled to 125 Hz, a window that starts at
// the R peak and lasts 1.2 times the local median RR interval, min-max normalized to 0..1 and
// zero-padded to 187 samples.
const (
	// WindowFs is the sampling rate of a beat window, Hz.
	WindowFs = 125
	// WindowLen is the number of samples in a beat window.
	WindowLen = 187
	// periodFactor is the window length in local median RR intervals.
	periodFactor = 1.2
)

// Class is an AAMI heartbeat class.
type Class int

// AAMI EC57 heartbeat classes, in the order used by models, confusion matrices and JSON output.
const (
	ClassN     Class = iota // normal and bundle-branch-block beats: N L R e j
	ClassS                  // supraventricular ectopic: A a J S
	ClassV                  // ventricular ectopic: V E
	ClassF                  // fusion of ventricular and normal: F
	ClassQ                  // paced and unclassifiable: / f Q
	NumClasses = 5
)

// classLetters holds the one-letter class names in index order.
const classLetters = "NSVFQ"

func className(c int) string { return classLetters[c : c+1] }

// Classes returns the class names in index order: N, S, V, F, Q.
func Classes() []string { return []string{"N", "S", "V", "F", "Q"} }

func (c Class) String() string {
	if c < 0 || int(c) >= NumClasses {
		return fmt.Sprintf("Class(%d)", int(c))
	}
	return className(int(c))
}

// ParseClass parses a class name (N, S, V, F or Q).
func ParseClass(s string) (Class, error) {
	if len(s) == 1 {
		if i := strings.IndexByte(classLetters, s[0]); i >= 0 {
			return Class(i), nil
		}
	}
	return 0, fmt.Errorf("parsing class %q: want one of N, S, V, F, Q", s)
}

// AAMIClass maps a MIT-BIH beat label to its AAMI class; ok is false for labels outside the
// mapping (non-beat annotations, flutter waves "!", "?").
func AAMIClass(label string) (c Class, ok bool) {
	switch label {
	case "N", "L", "R", "e", "j":
		return ClassN, true
	case "A", "a", "J", "S":
		return ClassS, true
	case "V", "E":
		return ClassV, true
	case "F":
		return ClassF, true
	case "/", "f", "Q":
		return ClassQ, true
	}
	return 0, false
}

// RRFeatures are the RR-interval features of one beat, in seconds (zero means unknown), and
// its morphology relative to the same patient's dominant beat (known only for beats cut from a
// raw signal: BeatsFromPeaks, BeatStream).
type RRFeatures struct {
	Pre     float64 `json:"pre"`              // from the previous R peak to this one
	Post    float64 `json:"post"`             // from this R peak to the next
	Local   float64 `json:"local"`            // mean of the last (up to) 10 RR intervals, including Pre
	Average float64 `json:"average"`          // mean of the last (up to) 300 RR intervals (about five minutes)
	Prev    float64 `json:"prev,omitempty"`   // the previous beat's Pre
	Median  float64 `json:"median,omitempty"` // median of the last (up to) 32 RR intervals, including Pre
	// Normal is the patient's normal rhythm before this beat: the median of the last (up to) 32
	// intervals that were neither premature nor pauses (see normalTracker), so that runs of
	// ectopic beats do not pull it along as they pull Local and Median.
	Normal float64 `json:"normal,omitempty"`
	// Spread is how irregular the patient's rhythm is: the median of |rr_i/rr_(i−1) − 1| over
	// the last (up to) 64 intervals before this beat (small in sinus rhythm and in a regular
	// run, large in atrial fibrillation).
	Spread float64 `json:"spread,omitempty"`

	Morph MorphFeatures `json:"-"`
}

// Beat is a heartbeat window with its RR features and, when known, its reference label.
type Beat struct {
	Samples [WindowLen]float32
	RR      RRFeatures
	Class   Class
	Label   string // MIT-BIH label, "" when unknown
	Record  string
	Sample  int64 // R-peak sample index in the source record
}

// CutWindow fills w with the heartbeat window of the R peak at index r of x (sampled at fs Hz)
// for a local median RR interval of period seconds. Samples past the end of x are zero.
func CutWindow(w *[WindowLen]float32, x []float64, fs float64, r int64, period float64) {
	n := int(math.Round(periodFactor * period * WindowFs))
	n = max(1, min(n, WindowLen))
	step := fs / WindowFs
	var vals [WindowLen]float64
	lo, hi := math.Inf(1), math.Inf(-1)
	got := 0
	for k := 0; k < n; k++ {
		t := float64(r) + float64(k)*step
		i := int(t)
		if i < 0 || i+1 >= len(x) {
			break
		}
		f := t - float64(i)
		v := x[i]*(1-f) + x[i+1]*f
		vals[k] = v
		lo, hi = math.Min(lo, v), math.Max(hi, v)
		got++
	}
	span := hi - lo
	for k := range w {
		w[k] = 0
		if k < got && span > 0 {
			w[k] = float32((vals[k] - lo) / span)
		}
	}
}

// rrTracker computes RR features from successive R peaks with bounded memory.
type rrTracker struct {
	hist   [300]float64
	n, pos int
	sum    float64
}

func (t *rrTracker) add(rr float64) {
	if t.n == len(t.hist) {
		t.sum -= t.hist[t.pos]
	} else {
		t.n++
	}
	t.hist[t.pos] = rr
	t.sum += rr
	t.pos = (t.pos + 1) % len(t.hist)
}

// last returns the mean of the last k intervals.
func (t *rrTracker) last(k int) float64 {
	k = min(k, t.n)
	if k == 0 {
		return 0
	}
	var s float64
	for i := 1; i <= k; i++ {
		s += t.hist[(t.pos-i+len(t.hist))%len(t.hist)]
	}
	return s / float64(k)
}

func (t *rrTracker) average() float64 {
	if t.n == 0 {
		return 0
	}
	return t.sum / float64(t.n)
}

// BeatsFromPeaks cuts heartbeat windows around R peaks (sorted sample indices into x, sampled
// at fs Hz). labels, when not nil, holds the MIT-BIH label of each peak; peaks whose label has
// no AAMI class still count for the RR intervals and the template but yield no beat. The last
// peak yields no beat because its post-RR interval is unknown.
func BeatsFromPeaks(x []float64, fs float64, peaks []int64, labels []string, record string) []Beat {
	var t beatTracker
	var seg [segLen]float64
	at := func(i int64) float64 { return x[i] }
	out := make([]Beat, 0, len(peaks))
	for i := 0; i+1 < len(peaks); i++ {
		var pre float64
		if i > 0 {
			pre = float64(peaks[i]-peaks[i-1]) / fs
		}
		post := float64(peaks[i+1]-peaks[i]) / fs
		if len(x) > 0 {
			cutSegment(&seg, at, 0, int64(len(x)), peaks[i], fs)
		}
		rr, period := t.next(pre, post, &seg)
		label := ""
		cls := ClassN
		if labels != nil {
			label = labels[i]
			c, ok := AAMIClass(label)
			if !ok {
				continue
			}
			cls = c
		}
		b := Beat{RR: rr, Class: cls, Label: label, Record: record, Sample: peaks[i]}
		CutWindow(&b.Samples, x, fs, peaks[i], period)
		out = append(out, b)
	}
	return out
}

// RecordBeats reads a WFDB record and returns its labelled beats, cut at the reference beat
// annotations on the first signal.
func RecordBeats(dir, name string) ([]Beat, error) {
	rec, err := wfdb.ReadRecord(dir, name, "atr")
	if err != nil {
		return nil, err
	}
	if len(rec.Signals) == 0 || rec.Annotations == nil {
		return nil, fmt.Errorf("reading beats of record %s: no signals or no annotations", name)
	}
	x := physical(rec, 0)
	var peaks []int64
	var labels []string
	for _, a := range rec.Annotations {
		if wfdb.IsBeat(a.Code) {
			peaks = append(peaks, a.Sample)
			labels = append(labels, a.Label())
		}
	}
	return BeatsFromPeaks(x, rec.Header.Fs, peaks, labels, name), nil
}

// LoadBeats reads the labelled beats of several records.
func LoadBeats(dir string, records []string) ([]Beat, error) {
	var all []Beat
	for _, r := range records {
		b, err := RecordBeats(dir, r)
		if err != nil {
			return nil, fmt.Errorf("loading beats: %w", err)
		}
		all = append(all, b...)
	}
	return all, nil
}

func physical(rec *wfdb.Record, sig int) []float64 {
	spec := rec.Header.Signals[sig]
	x := make([]float64, len(rec.Signals[sig]))
	for i, v := range rec.Signals[sig] {
		x[i] = spec.Physical(v)
	}
	return x
}
