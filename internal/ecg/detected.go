package ecg

import (
	"fmt"
	"math"

	"github.com/pulselake/pulselake/internal/ecg/wfdb"
)

// MatchWindow is the tolerance within which a detected R peak is paired with a reference beat
// annotation: 150 ms, the matching window of ANSI/AAMI EC57 for QRS detection.
const MatchWindow = 0.150

// PeakSource says where beats of a labelled record are cut.
type PeakSource int

const (
	// PeaksDetected cuts beats where serve cuts them: at the R peaks the QRS detector finds,
	// with the windows and features of BeatStream, labelled by the reference annotation each
	// detection is matched to (within MatchWindow).
	PeaksDetected PeakSource = iota
	// PeaksReference cuts beats at the annotated R peaks.
	PeaksReference
)

// ParsePeakSource parses "detected" or "reference".
func ParsePeakSource(s string) (PeakSource, error) {
	switch s {
	case "detected":
		return PeaksDetected, nil
	case "reference":
		return PeaksReference, nil
	}
	return 0, fmt.Errorf("peak source %q, want detected or reference", s)
}

// String is the name ParsePeakSource reads.
func (p PeakSource) String() string {
	if p == PeaksReference {
		return "reference"
	}
	return "detected"
}

// DetectionCounts describes how the beats cut at detected R peaks relate to the reference.
type DetectionCounts struct {
	Beats     int `json:"beats"`     // detections matched to a classifiable reference beat (the labelled beats)
	Other     int `json:"other"`     // detections matched to a reference beat without an AAMI class (such as flutter waves)
	FalseQRS  int `json:"false_qrs"` // detections matched to no reference beat: not trained or evaluated on
	Missed    int `json:"missed"`    // classifiable reference beats no detection was matched to
	Reference int `json:"reference"` // classifiable reference beats
}

// Add adds o to c.
func (c *DetectionCounts) Add(o DetectionCounts) {
	c.Beats += o.Beats
	c.Other += o.Other
	c.FalseQRS += o.FalseQRS
	c.Missed += o.Missed
	c.Reference += o.Reference
}

// String summarises the counts for a log line.
func (c DetectionCounts) String() string {
	return fmt.Sprintf("%d of %d reference beats matched by a detected beat, %d missed, %d false detections, %d detections of unclassified beats",
		c.Beats, c.Reference, c.Missed, c.FalseQRS, c.Other)
}

// RecordDetectedBeats reads a WFDB record and cuts its beats as serve does: the first signal
// is pushed through a BeatStream, and each beat it emits is labelled with the reference beat
// annotation matched to it (each annotation to at most one beat, the nearest within
// MatchWindow). Beats matched to no annotation (false detections) or to one without an AAMI
// class are dropped, and counted, as are the classifiable annotations no beat was matched to.
func RecordDetectedBeats(dir, name string) ([]Beat, DetectionCounts, error) {
	var cnt DetectionCounts
	rec, err := wfdb.ReadRecord(dir, name, "atr")
	if err != nil {
		return nil, cnt, err
	}
	if len(rec.Signals) == 0 || rec.Annotations == nil {
		return nil, cnt, fmt.Errorf("reading beats of record %s: no signals or no annotations", name)
	}
	fs := rec.Header.Fs
	s := NewBeatStream(fs)
	var got []StreamBeat
	for _, v := range physical(rec, 0) {
		got = s.Push(v, got)
	}
	var ref []int64
	var labels []string
	for _, a := range rec.Annotations {
		if wfdb.IsBeat(a.Code) {
			ref = append(ref, a.Sample)
			labels = append(labels, a.Label())
		}
	}
	det := make([]int64, len(got))
	for i := range got {
		det[i] = got[i].Sample
	}
	refDet := matchPeaks(ref, det, int64(math.Round(MatchWindow*fs)))
	detRef := make([]int, len(det))
	for i := range detRef {
		detRef[i] = -1
	}
	for r, d := range refDet {
		_, ok := AAMIClass(labels[r])
		if ok {
			cnt.Reference++
		}
		if d >= 0 {
			detRef[d] = r
		} else if ok {
			cnt.Missed++
		}
	}
	out := make([]Beat, 0, len(got))
	for i := range got {
		r := detRef[i]
		if r < 0 {
			cnt.FalseQRS++
			continue
		}
		c, ok := AAMIClass(labels[r])
		if !ok {
			cnt.Other++
			continue
		}
		cnt.Beats++
		out = append(out, Beat{Samples: got[i].Samples, RR: got[i].RR, Class: c, Label: labels[r], Record: name, Sample: got[i].Sample})
	}
	return out, cnt, nil
}

// LoadBeatsAt reads the labelled beats of several records, cut at the given peaks. The counts
// are zero for PeaksReference.
func LoadBeatsAt(dir string, records []string, at PeakSource) ([]Beat, DetectionCounts, error) {
	var total DetectionCounts
	if at == PeaksReference {
		b, err := LoadBeats(dir, records)
		return b, total, err
	}
	var all []Beat
	for _, r := range records {
		b, c, err := RecordDetectedBeats(dir, r)
		if err != nil {
			return nil, total, fmt.Errorf("loading beats: %w", err)
		}
		all = append(all, b...)
		total.Add(c)
	}
	return all, total, nil
}
