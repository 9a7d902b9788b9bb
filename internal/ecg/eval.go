package ecg

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"text/tabwriter"
)

// ClassMetrics are the per-class figures of an evaluation.
type ClassMetrics struct {
	Sensitivity float64 `json:"sensitivity"`
	PPV         float64 `json:"ppv"`
	F1          float64 `json:"f1"`
	Support     int     `json:"support"`
}

// Evaluation is the result of classifying labelled beats, in the JSON shape of SPEC §9.
type Evaluation struct {
	Records   []string                    `json:"records"`
	Beats     int                         `json:"beats"`
	Accuracy  float64                     `json:"accuracy"`
	MacroF1   float64                     `json:"macro_f1"`
	Classes   map[string]ClassMetrics     `json:"classes"`
	Confusion [NumClasses][NumClasses]int `json:"confusion"` // rows: reference N,S,V,F,Q; columns: predicted
}

// Confusion accumulates a confusion matrix.
type Confusion [NumClasses][NumClasses]int

// Add counts one beat.
func (c *Confusion) Add(ref, pred Class) { c[ref][pred]++ }

// AddAll adds another matrix.
func (c *Confusion) AddAll(o Confusion) {
	for i := range c {
		for j := range c[i] {
			c[i][j] += o[i][j]
		}
	}
}

// Evaluate computes the metrics of a confusion matrix. Macro-F1 averages F1 over the classes
// that occur in the reference or the predictions (as scikit-learn's f1_score(average="macro")
// does); a class that occurs in neither is reported with zero figures and left out of the
// average. Sensitivity and PPV with a zero denominator are reported as 0.
func (c Confusion) Evaluate(records []string) Evaluation {
	e := Evaluation{Records: records, Classes: make(map[string]ClassMetrics, NumClasses), Confusion: c}
	if e.Records == nil {
		e.Records = []string{}
	}
	var correct, present int
	var f1sum float64
	for k := 0; k < NumClasses; k++ {
		var support, predicted int
		for j := 0; j < NumClasses; j++ {
			support += c[k][j]
			predicted += c[j][k]
		}
		tp := c[k][k]
		correct += tp
		e.Beats += support
		m := ClassMetrics{Support: support, Sensitivity: ratio(tp, support), PPV: ratio(tp, predicted)}
		if m.Sensitivity+m.PPV > 0 {
			m.F1 = 2 * m.Sensitivity * m.PPV / (m.Sensitivity + m.PPV)
		}
		if support > 0 || predicted > 0 {
			present++
			f1sum += m.F1
		}
		e.Classes[className(k)] = m
	}
	e.Accuracy = ratio(correct, e.Beats)
	if present > 0 {
		e.MacroF1 = f1sum / float64(present)
	}
	return e
}

// EvaluateBeats classifies beats with cl and returns the confusion matrix.
func EvaluateBeats(cl *Model, beats []Beat) Confusion {
	var c Confusion
	for i := range beats {
		p := cl.ClassifyWindow(&beats[i].Samples, beats[i].RR)
		c.Add(beats[i].Class, p.Class)
	}
	return c
}

// WriteTable writes e as a human-readable table: the confusion matrix and per-class figures.
func (e Evaluation) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "records: %s\tbeats: %d\taccuracy: %.4f\tmacro-F1: %.4f\t\n\n", strings.Join(e.Records, ","), e.Beats, e.Accuracy, e.MacroF1)
	fmt.Fprintf(tw, "ref\\pred\tN\tS\tV\tF\tQ\t\n")
	for k := 0; k < NumClasses; k++ {
		fmt.Fprintf(tw, "%s\t", className(k))
		for j := 0; j < NumClasses; j++ {
			fmt.Fprintf(tw, "%d\t", e.Confusion[k][j])
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "\nclass\tsensitivity\tppv\tf1\tsupport\t\n")
	for k := 0; k < NumClasses; k++ {
		m := e.Classes[className(k)]
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%.4f\t%d\t\n", className(k), m.Sensitivity, m.PPV, m.F1, m.Support)
	}
	return tw.Flush()
}

// SplitRandom shuffles beats with seed and returns the first 1-testShare for training and
// the rest for testing (an intra-patient split: beats of one record land on both sides).
func SplitRandom(beats []Beat, testShare float64, seed uint64) (train, test []Beat) {
	idx := make([]int, len(beats))
	for i := range idx {
		idx[i] = i
	}
	rng := rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d))
	rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	nTest := int(testShare * float64(len(beats)))
	for k, i := range idx {
		if k < nTest {
			test = append(test, beats[i])
		} else {
			train = append(train, beats[i])
		}
	}
	return train, test
}

// CVOptions configures leave-records-out cross-validation.
type CVOptions struct {
	Folds int // records are assigned to folds round-robin in sorted order; default 5
	Train TrainOptions
	// Progress, when not nil, is called after each fold.
	Progress func(fold int, testRecords []string, c Confusion)
}

// CrossValidateRecords trains on all records but one fold's and tests on that fold, for every
// fold (inter-patient: no record is on both sides), and returns the summed confusion matrix.
func CrossValidateRecords(ctx context.Context, beats []Beat, opt CVOptions) (Confusion, error) {
	var total Confusion
	if opt.Folds <= 1 {
		opt.Folds = 5
	}
	var recs []string
	for _, b := range beats {
		if !slices.Contains(recs, b.Record) {
			recs = append(recs, b.Record)
		}
	}
	slices.Sort(recs)
	if len(recs) < opt.Folds {
		return total, fmt.Errorf("cross-validating: %d records for %d folds", len(recs), opt.Folds)
	}
	fold := make(map[string]int, len(recs))
	for i, r := range recs {
		fold[r] = i % opt.Folds
	}
	for f := 0; f < opt.Folds; f++ {
		var train, test []Beat
		var testRecs []string
		for _, r := range recs {
			if fold[r] == f {
				testRecs = append(testRecs, r)
			}
		}
		for _, b := range beats {
			if fold[b.Record] == f {
				test = append(test, b)
			} else {
				train = append(train, b)
			}
		}
		m, err := Train(ctx, train, opt.Train)
		if err != nil {
			return total, fmt.Errorf("cross-validating fold %d: %w", f, err)
		}
		c := EvaluateBeats(m, test)
		total.AddAll(c)
		if opt.Progress != nil {
			opt.Progress(f, testRecs, c)
		}
	}
	return total, nil
}
