package ecg

import (
	"context"
	"path/filepath"
)

// BatchClassifier classifies many beats at once: the built-in model in-process (Local) or
// an external model server (KServe). Implementations are safe for concurrent use.
type BatchClassifier interface {
	// ClassifyBeats returns one prediction per beat, in order.
	ClassifyBeats(ctx context.Context, beats []LiveBeat) ([]Prediction, error)
	// Name identifies the model in predictions (ops.predictions.model).
	Name() string
}

// Local is a BatchClassifier running a Model in-process.
type Local struct {
	Model *Model
	Label string // model name reported with predictions
}

// NewLocal loads the model file at path, or the embedded default model when path is "".
func NewLocal(path string) (*Local, error) {
	if path == "" {
		m, err := DefaultModel()
		if err != nil {
			return nil, err
		}
		return &Local{Model: m, Label: "builtin"}, nil
	}
	m, err := LoadModel(path)
	if err != nil {
		return nil, err
	}
	return &Local{Model: m, Label: "file:" + filepath.Base(path)}, nil
}

// ClassifyBeats implements BatchClassifier.
func (l *Local) ClassifyBeats(_ context.Context, beats []LiveBeat) ([]Prediction, error) {
	out := make([]Prediction, len(beats))
	for i := range beats {
		out[i] = l.Model.ClassifyWindow(&beats[i].Window, beats[i].RR)
	}
	return out, nil
}

// Name implements BatchClassifier.
func (l *Local) Name() string { return l.Label }
