package ecg

import (
	"fmt"

	"github.com/pulselake/pulselake/internal/ecg/wfdb"
)

// QRSRecordResult is the detector's performance on one record.
type QRSRecordResult struct {
	Record string
	MatchResult
}

// EvaluateQRS runs the detector on the first signal of each record in dir and matches its
// detections against the reference beat annotations with a 150 ms window.
func EvaluateQRS(dir string, records []string) ([]QRSRecordResult, MatchResult, error) {
	var gross MatchResult
	out := make([]QRSRecordResult, 0, len(records))
	for _, name := range records {
		rec, err := wfdb.ReadRecord(dir, name, "atr")
		if err != nil {
			return nil, gross, fmt.Errorf("evaluating qrs detection: %w", err)
		}
		fs := rec.Header.Fs
		x := physical(rec, 0)
		det := DetectQRS(x, fs)
		var ref []int64
		for _, a := range rec.Annotations {
			if wfdb.IsBeat(a.Code) {
				ref = append(ref, a.Sample)
			}
		}
		m := MatchBeats(ref, det, int64(0.150*fs+0.5))
		out = append(out, QRSRecordResult{Record: name, MatchResult: m})
		gross.TP += m.TP
		gross.FN += m.FN
		gross.FP += m.FP
	}
	return out, gross, nil
}
