package ecg

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/pulselake/pulselake/internal/ecg/wfdb"
)

// ParseRecordList splits a comma-separated record list ("101,106"); an empty list means every
// record in dir.
func ParseRecordList(dir, list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return wfdb.ListRecords(dir)
	}
	var out []string
	for _, r := range strings.Split(list, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if strings.ContainsAny(r, `/\`) {
			return nil, fmt.Errorf("record name %q: a name, not a path", r)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty record list %q", list)
	}
	return out, nil
}

// TrainRecords trains a model on every labelled beat of the records, cut at the given peaks,
// and records them in the model's metadata.
func TrainRecords(ctx context.Context, dir string, records []string, at PeakSource, opt TrainOptions) (*Model, DetectionCounts, error) {
	beats, cnt, err := LoadBeatsAt(dir, records, at)
	if err != nil {
		return nil, cnt, err
	}
	m, err := Train(ctx, beats, opt)
	if err != nil {
		return nil, cnt, err
	}
	m.Meta.Records = records
	m.Meta.Features = FeatureNames()
	if m.Meta.Extra == nil {
		m.Meta.Extra = map[string]string{}
	}
	m.Meta.Extra["peaks"] = at.String()
	return m, cnt, nil
}

// EvaluateRecords classifies every labelled beat of the records, cut at the given peaks, with m.
func EvaluateRecords(m *Model, dir string, records []string, at PeakSource) (Evaluation, DetectionCounts, error) {
	beats, cnt, err := LoadBeatsAt(dir, records, at)
	if err != nil {
		return Evaluation{}, cnt, err
	}
	return EvaluateBeats(m, beats).Evaluate(records), cnt, nil
}

// TrainingOverlap returns the records, in the order given, that m was trained on (as listed in
// its metadata): evaluating m on them does not measure how it does on new patients.
func TrainingOverlap(m *Model, records []string) []string {
	var out []string
	for _, r := range records {
		if slices.Contains(m.Meta.Records, r) {
			out = append(out, r)
		}
	}
	return out
}
