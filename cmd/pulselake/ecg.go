package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/ecg"
)

func newECGCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ecg",
		Short: "Heartbeat classification: train, evaluate and apply models on WFDB (MIT-BIH) records",
	}
	cmd.AddCommand(newECGTrainCmd(g), newECGEvalCmd(g), newECGClassifyCmd(g))
	return cmd
}

func newECGTrainCmd(g *globals) *cobra.Command {
	var (
		dir, list, out, peaks string
		opt                   ecg.TrainOptions
	)
	cmd := &cobra.Command{
		Use:   "train --records DIR [--list 101,106,...] [--seed N] --out FILE",
		Short: "Train a heartbeat classifier on the labelled beats of WFDB records",
		Long: `Train a heartbeat classifier on the labelled beats of WFDB records.

By default beats are cut where serve cuts them: at the R peaks the QRS detector finds, each
labelled with the reference annotation within 150 ms (ANSI/AAMI EC57); false detections and
missed beats are counted on stderr and not trained on. --peaks reference cuts them at the
annotated R peaks instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			treesAloneWithoutLinear(cmd, &opt)
			if dir == "" || out == "" {
				return usagef("ecg train needs --records DIR and --out FILE")
			}
			records, err := ecg.ParseRecordList(dir, list)
			if err != nil {
				return usagef("ecg train: %v", err)
			}
			at, err := ecg.ParsePeakSource(peaks)
			if err != nil {
				return usagef("ecg train: --peaks: %v", err)
			}
			start := time.Now()
			m, cnt, err := ecg.TrainRecords(cmd.Context(), dir, records, at, opt)
			if err != nil {
				return err
			}
			if at == ecg.PeaksDetected {
				fmt.Fprintf(g.stderr, "detected beats: %s\n", cnt)
			}
			if err := ecg.SaveModel(out, m); err != nil {
				return err
			}
			st, err := os.Stat(out)
			if err != nil {
				return fmt.Errorf("checking model file: %w", err)
			}
			fmt.Fprintf(g.stdout, "trained on %d beats of %d records in %s: %d trees, %s (%d bytes)\n",
				m.Meta.Beats, len(records), time.Since(start).Round(time.Millisecond), m.NumTrees(), out, st.Size())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "records", "", "directory of WFDB records with .atr reference annotations")
	f.StringVar(&list, "list", "", "comma-separated record names (default: every record in --records)")
	f.StringVar(&out, "out", "", "model file to write")
	addPeaksFlag(cmd, &peaks)
	addTrainFlags(cmd, &opt)
	return cmd
}

func addPeaksFlag(cmd *cobra.Command, peaks *string) {
	cmd.Flags().StringVar(peaks, "peaks", "detected", "where beats are cut: detected (the QRS detector's R peaks, as serve does) or reference (the annotated R peaks)")
}

func addTrainFlags(cmd *cobra.Command, opt *ecg.TrainOptions) {
	f := cmd.Flags()
	f.Uint64Var(&opt.Seed, "seed", 1, "random seed (training is deterministic for a seed)")
	f.IntVar(&opt.Rounds, "rounds", 120, "boosting rounds")
	f.IntVar(&opt.MaxDepth, "depth", 6, "maximum tree depth (at most 24)")
	f.IntVar(&opt.Workers, "workers", 2, "goroutines used for training")
	f.Float64Var(&opt.ClassWeight, "class-weight", ecg.DefaultClassWeight, "weigh beats by (count of N / count of their class)^W; 0 = equal weights, 1 = balanced")
	f.Float64Var(&opt.Linear, "linear", ecg.DefaultLinearShare, "also train a logistic regression on the patient-relative features and give it this share of the class scores, against the trees' (0 = trees alone)")
	f.Float64Var(&opt.LinearBase, "linear-base", ecg.DefaultLinearBase, "boost the trees from this share of the logistic regression's log-probabilities (0 = from the class priors; needs --linear above 0)")
	f.Float64Var(&opt.SGate, "s-gate", ecg.DefaultSGate, "supraventricular gate: call a beat S when the model calls it N but the logistic regression gives S at least this probability (0 = off, else 0.5 to below 1; needs --linear above 0)")
	f.BoolVar(&opt.SGateRuns, "s-gate-runs", true, "apply the supraventricular gate only to beats in a regular fast run or at its onset (false = to every beat the model calls N)")
	f.BoolVar(&opt.PatientOnly, "patient-only", false, "classify beats with RR intervals by patient-relative features only (no raw window samples)")
	f.IntVar(&opt.TuneFolds, "tune-folds", 0, "tune the decision rule by a leave-records-out cross-validation with this many folds over the training records (0 = off)")
}

// treesAloneWithoutLinear makes --linear 0 train the trees alone: without a linear model the
// trees cannot be boosted from one and there is no supraventricular gate, so --linear-base and
// --s-gate drop to 0 unless they were given.
func treesAloneWithoutLinear(cmd *cobra.Command, opt *ecg.TrainOptions) {
	if opt.Linear == 0 && !cmd.Flags().Changed("linear-base") {
		opt.LinearBase = 0
	}
	if opt.Linear == 0 && !cmd.Flags().Changed("s-gate") {
		opt.SGate = 0
	}
	if opt.SGate == 0 {
		opt.SGateRuns = false
	}
}

// loadECGModel loads the model file of --model, or the model embedded in the binary.
func loadECGModel(file string) (*ecg.Model, error) {
	if file != "" {
		return ecg.LoadModel(file)
	}
	return ecg.DefaultModel()
}

func newECGEvalCmd(g *globals) *cobra.Command {
	var (
		dir, list, modelFile, split string
		peaks                       string
		asJSON, withoutRR           bool
		testShare                   float64
		folds                       int
		opt                         ecg.TrainOptions
	)
	cmd := &cobra.Command{
		Use:   "eval --records DIR --list 101,106,... [--model FILE] [--json]",
		Short: "Evaluate a model on the reference beats of WFDB records (confusion matrix, sensitivity, PPV, F1)",
		Long: `Evaluate a model on the reference beats of WFDB records (confusion matrix, sensitivity, PPV, F1).

Without --model the default model embedded in the binary is evaluated. With --split the
command trains fresh models instead and evaluates them honestly:
  --split random   intra-patient: trains on a random share of the listed records' beats and
                   tests on the rest (--test-share, default 0.2; --seed)
  --split records  inter-patient: leave-records-out cross-validation (--folds, default 5;
                   records are assigned to folds round-robin in sorted order)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			treesAloneWithoutLinear(cmd, &opt)
			if dir == "" {
				return usagef("ecg eval needs --records DIR")
			}
			records, err := ecg.ParseRecordList(dir, list)
			if err != nil {
				return usagef("ecg eval: %v", err)
			}
			at, err := ecg.ParsePeakSource(peaks)
			if err != nil {
				return usagef("ecg eval: --peaks: %v", err)
			}
			var e ecg.Evaluation
			switch split {
			case "":
				if e, err = evalModel(g, dir, records, at, modelFile, withoutRR); err != nil {
					return err
				}
			case "random", "records":
				opt.RROnly = true // test beats always have RR features
				if modelFile != "" {
					return usagef("ecg eval: --model and --split exclude each other (--split trains its own models)")
				}
				beats, err := loadECGBeats(g, dir, records, at)
				if err != nil {
					return err
				}
				if withoutRR {
					dropRR(beats)                     // the model trained below is then a shape-only model
					opt.Linear, opt.LinearBase = 0, 0 // which the linear model, on patient-relative features, cannot help
					opt.SGate, opt.SGateRuns = 0, false
				}
				if e, err = evalTrained(cmd, g, beats, records, split, testShare, folds, opt); err != nil {
					return err
				}
			default:
				return usagef("ecg eval: --split %q, want random or records", split)
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				return enc.Encode(e)
			}
			return e.WriteTable(g.stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "records", "", "directory of WFDB records with .atr reference annotations")
	f.StringVar(&list, "list", "", "comma-separated record names (default: every record in --records)")
	f.StringVar(&modelFile, "model", "", "model file (default: the embedded model)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object (SPEC §9) instead of a table")
	f.StringVar(&split, "split", "", "train and test fresh models: random (intra-patient) or records (inter-patient)")
	addPeaksFlag(cmd, &peaks)
	f.Float64Var(&testShare, "test-share", 0.2, "share of beats held out by --split random")
	f.IntVar(&folds, "folds", 5, "folds of --split records")
	f.BoolVar(&withoutRR, "without-rr", false, "drop the beats' RR features, as for ecg_beat readings without them (evaluates the shape-only model)")
	addTrainFlags(cmd, &opt)
	return cmd
}

// evalModel evaluates one model (the file's, or the embedded one) on the records' beats,
// warning when the model was trained on some of them.
func evalModel(g *globals, dir string, records []string, at ecg.PeakSource, modelFile string, withoutRR bool) (ecg.Evaluation, error) {
	m, err := loadECGModel(modelFile)
	if err != nil {
		return ecg.Evaluation{}, err
	}
	if seen := ecg.TrainingOverlap(m, records); len(seen) > 0 {
		fmt.Fprintf(g.stderr, "warning: the model was trained on %d of the evaluated records (%s): these figures are not those of new patients; use --split records for an honest estimate\n",
			len(seen), strings.Join(seen, ","))
	}
	beats, err := loadECGBeats(g, dir, records, at)
	if err != nil {
		return ecg.Evaluation{}, err
	}
	if withoutRR {
		dropRR(beats)
	}
	return ecg.EvaluateBeats(m, beats).Evaluate(records), nil
}

// loadECGBeats loads the records' labelled beats cut at the given peaks and, for detected
// peaks, reports on stderr how they match the reference.
func loadECGBeats(g *globals, dir string, records []string, at ecg.PeakSource) ([]ecg.Beat, error) {
	beats, cnt, err := ecg.LoadBeatsAt(dir, records, at)
	if err != nil {
		return nil, err
	}
	if at == ecg.PeaksDetected {
		fmt.Fprintf(g.stderr, "detected beats: %s\n", cnt)
	}
	return beats, nil
}

// evalTrained trains fresh models on the beats and evaluates them on beats they did not
// see: a random share of them (split random) or each fold of records in turn (split records).
func evalTrained(cmd *cobra.Command, g *globals, beats []ecg.Beat, records []string, split string, testShare float64, folds int, opt ecg.TrainOptions) (ecg.Evaluation, error) {
	if split == "random" {
		if !(testShare > 0 && testShare < 1) {
			return ecg.Evaluation{}, usagef("ecg eval: --test-share must be between 0 and 1")
		}
		train, test := ecg.SplitRandom(beats, testShare, opt.Seed)
		m, err := ecg.Train(cmd.Context(), train, opt)
		if err != nil {
			return ecg.Evaluation{}, err
		}
		return ecg.EvaluateBeats(m, test).Evaluate(records), nil
	}
	var accs []float64
	c, err := ecg.CrossValidateRecords(cmd.Context(), beats, ecg.CVOptions{Folds: folds, Train: opt,
		Progress: func(fold int, recs []string, c ecg.Confusion) {
			f := c.Evaluate(recs)
			s, v := f.Classes["S"], f.Classes["V"]
			accs = append(accs, f.Accuracy)
			fmt.Fprintf(g.stderr, "fold %d %v: %d beats, accuracy %.4f, S Se %.3f PPV %.3f (%d), V F1 %.3f (%d)\n",
				fold, recs, f.Beats, f.Accuracy, s.Sensitivity, s.PPV, s.Support, v.F1, v.Support)
		}})
	if err != nil {
		return ecg.Evaluation{}, err
	}
	mean, sd := meanSD(accs)
	fmt.Fprintf(g.stderr, "per-fold accuracy: mean %.4f, standard deviation %.4f, range %.4f to %.4f\n", mean, sd, slices.Min(accs), slices.Max(accs))
	return c.Evaluate(records), nil
}

// meanSD returns the mean and the (population) standard deviation of v.
func meanSD(v []float64) (mean, sd float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(v)))
}

func dropRR(beats []ecg.Beat) {
	for i := range beats {
		beats[i].RR = ecg.RRFeatures{}
	}
}

func newECGClassifyCmd(g *globals) *cobra.Command {
	var modelFile string
	cmd := &cobra.Command{
		Use:   "classify [--model FILE] INPUT...",
		Short: "Classify heartbeats of WFDB records or beat files; prints one JSON object per beat",
		Long: `Classify heartbeats and print one JSON object per beat (NDJSON):
{"index":0,"sample":370,"time_s":1.03,"class":"N","probs":{"N":0.99,...}}

INPUT is one of:
  a WFDB record (path without extension, or its .hea file): R peaks are found on the first
      signal by the QRS detector and every detected beat is classified;
  a .csv file: one beat per line, 187 samples in 0..1 at 125 Hz, optionally followed by the
      RR features pre,post,local,average in seconds (191 columns); a header line is skipped;
  an NDJSON file: {"samples":[187 floats],"rr":{"pre":..,"post":..,"local":..,"average":..}}
      per line, or ecg_beat readings (values.samples, optional values.label).
Without --model the default model embedded in the binary is used.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := loadECGModel(modelFile)
			if err != nil {
				return err
			}
			for _, in := range args {
				if _, err := os.Stat(in); err != nil {
					if _, err2 := os.Stat(in + ".hea"); err2 != nil {
						return usagef("ecg classify: %s: no such file or WFDB record", in)
					}
				}
				if _, err := ecg.ClassifyFile(m, in, g.stdout); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&modelFile, "model", "", "model file (default: the embedded model)")
	return cmd
}
