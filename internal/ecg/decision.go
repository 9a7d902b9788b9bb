package ecg

import (
	"context"
	"fmt"
	"slices"
)

// The decision rule: a beat's class is the arg max of its class scores plus per-class offsets
// (equivalently, of its probabilities reweighted by exp(offset): a shift of the class priors).
// Trained on a few patients, a model is overconfident in N for new patients, whose ectopic
// beats look less like the training patients' than their own do; the offsets of S and V are
// tuned, by cross-validation over the training records only, to maximise the mean F1 of N, S
// and V over the out-of-fold predictions. F and Q keep offset 0: they are too rare and too
// concentrated in a few patients to tune on (in DS1, 373 of the 415 F beats are in record 208).

// Offset grid searched by tuneOffsets, in score (log-probability) units.
const (
	offsetMin, offsetMax, offsetStep = -4.0, 6.0, 0.25
	offsetPasses                     = 3
)

// recordFolds assigns the sorted distinct records of beats to k folds round-robin and returns
// the fold of each record and the records in order.
func recordFolds(beats []Beat, k int) (map[string]int, []string) {
	var recs []string
	seen := map[string]bool{}
	for i := range beats {
		if !seen[beats[i].Record] {
			seen[beats[i].Record] = true
			recs = append(recs, beats[i].Record)
		}
	}
	slices.Sort(recs)
	fold := make(map[string]int, len(recs))
	for i, r := range recs {
		fold[r] = i % k
	}
	return fold, recs
}

// outOfFoldScores trains an RR ensemble (and, with opt.Linear, the linear model) per fold of
// the beats' records on the other folds and returns every beat's class scores (without offsets;
// with the linear model, the combined scores of linearModel.combine) from the model that did not
// see its record.
func outOfFoldScores(ctx context.Context, beats []Beat, opt TrainOptions, folds int) ([][NumClasses]float64, error) {
	fold, recs := recordFolds(beats, folds)
	if len(recs) < folds {
		return nil, fmt.Errorf("tuning the decision rule: %d training records for %d folds (lower --tune-folds)", len(recs), folds)
	}
	scores := make([][NumClasses]float64, len(beats))
	var f [NumFeatures]float32
	for k := 0; k < folds; k++ {
		var train []Beat
		for i := range beats {
			if fold[beats[i].Record] != k {
				train = append(train, beats[i])
			}
		}
		var lin *linearModel
		if opt.Linear > 0 {
			var err error
			if lin, err = trainLinearOn(train, opt); err != nil {
				return nil, fmt.Errorf("tuning the decision rule, fold %d: %w", k, err)
			}
		}
		e, err := trainEnsembleFrom(ctx, train, opt, allFeatures, lin)
		if err != nil {
			return nil, fmt.Errorf("tuning the decision rule, fold %d: %w", k, err)
		}
		for i := range beats {
			if fold[beats[i].Record] == k {
				Features(f[:], &beats[i].Samples, beats[i].RR)
				scores[i] = e.scores(&f)
				if lin != nil {
					scores[i] = lin.combine(&scores[i], lin.logProbs(f[:]))
				}
			}
		}
	}
	return scores, nil
}

// tunedClasses are the classes whose offsets tuneOffsets sets; it scores the F1 of
// scoredClasses.
var (
	tunedClasses  = []Class{ClassS, ClassV}
	scoredClasses = []Class{ClassN, ClassS, ClassV}
)

// tuneOffsets returns the offsets of tunedClasses (the others 0) that maximise the mean F1 of
// scoredClasses for arg max(score + offset) over the labelled scores, by coordinate ascent
// over a grid; ties keep the offset closest to 0.
func tuneOffsets(scores [][NumClasses]float64, y []Class) [NumClasses]float32 {
	var off [NumClasses]float64
	eval := func() float64 {
		var c Confusion
		for i := range scores {
			c.Add(y[i], argmaxOffset(&scores[i], &off))
		}
		e := c.Evaluate(nil)
		var sum float64
		for _, k := range scoredClasses {
			sum += e.Classes[k.String()].F1
		}
		return sum / float64(len(scoredClasses))
	}
	best := eval()
	for pass := 0; pass < offsetPasses; pass++ {
		improved := false
		for _, c := range tunedClasses {
			keep := off[c]
			for v := offsetMin; v <= offsetMax+1e-9; v += offsetStep {
				off[c] = v
				got := eval()
				if got > best+1e-12 || (got >= best-1e-12 && abs(v) < abs(keep)) {
					if got > best+1e-12 {
						improved = true
					}
					best, keep = max(best, got), v
				}
			}
			off[c] = keep
		}
		if !improved {
			break
		}
	}
	var out [NumClasses]float32
	for c := range off {
		out[c] = float32(off[c])
	}
	return out
}

func argmaxOffset(s *[NumClasses]float64, off *[NumClasses]float64) Class {
	best := 0
	for c := 1; c < NumClasses; c++ {
		if s[c]+off[c] > s[best]+off[best] {
			best = c
		}
	}
	return Class(best)
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
