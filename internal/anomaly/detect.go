package anomaly

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Methods returns the names of the detect methods.
func Methods() []string { return []string{"online", "iforest", "holt-winters", "cv", "timeshift"} }

// Default thresholds of the cv and timeshift methods: where their score crosses 0.5 and a point
// is flagged. They are starting points for heart rate, not clinical limits.
const (
	DefaultCVThreshold        = 0.15
	DefaultTimeShiftThreshold = 0.3
)

// LargeFlaggedShare is the share of flagged rows above which `detect` adds a hint to its
// summary. Isolation Forest keeps scikit-learn's default, contamination 'auto' (the offset
// fixed at -0.5: flag where the anomaly score exceeds 0.5), so that its output matches
// scikit-learn's for the same parameters; on one column of integer readings such as heart rate
// most scores sit just above 0.5 and 'auto' flags a large part of the rows (1,195 of the first
// 2,000 rows of the Fitbit heart-rate set). The hint says how to flag a chosen share instead.
const LargeFlaggedShare = 0.25

// DetectConfig is a parsed `pulselake detect` invocation. Build it with ParseDetectConfig.
type DetectConfig struct {
	Method string

	// Input columns (any method).
	TimeColumn string
	Columns    []string
	Step       time.Duration // 0: the most common gap between consecutive rows

	IForest IForestOptions

	Seasonality time.Duration // holt-winters, default 1d
	HoltWinters HoltWintersOptions

	Window          string // cv: a point count or a duration; default 1h
	WindowTolerance float64
	Threshold       float64 // cv and timeshift

	Shift     time.Duration // timeshift, default 7d
	Tolerance time.Duration // timeshift: how far the shifted point may be; default step/2

	// Streaming Isolation Forest only (detectors in the configuration file): Window (a point
	// count) is the rolling training window, refitted every RefitEvery points once MinFit
	// points were seen.
	RefitEvery, MinFit int
}

// methodParams lists the --set keys a method accepts besides commonParams.
func methodParams(method string) ([]string, bool) {
	switch method {
	case "online":
		return nil, true // it infers what it needs
	case "iforest":
		return []string{"n_estimators", "max_samples", "contamination", "max_features", "bootstrap", "seed", "random_state", "n_jobs"}, true
	case "holt-winters":
		return []string{"seasonality", "delta", "alpha", "beta", "gamma"}, true
	case "cv":
		return []string{"window", "window_tolerance", "threshold"}, true
	case "timeshift":
		return []string{"shift", "threshold", "tolerance"}, true
	}
	return nil, false
}

// commonParams are the --set keys every method accepts.
func commonParams() []string { return []string{"columns", "time_column", "step"} }

// ParseDetectConfig checks method and the k=v settings. Every error wraps ErrInvalidParam.
func ParseDetectConfig(method string, sets []string) (DetectConfig, error) {
	cfg, errs := parseParams(method, sets, commonParams(), func(kv string) string { return "--set " + kv })
	if len(errs) > 0 {
		return cfg, fmt.Errorf("%w: %w", ErrInvalidParam, errors.Join(errs...))
	}
	return cfg, cfg.check()
}

// parseParams applies method's defaults and the k=v settings; extra names further keys the
// method accepts. Errors start with label(the setting).
func parseParams(method string, sets, extra []string, label func(kv string) string) (DetectConfig, []error) {
	cfg := DetectConfig{Method: method}
	allowed, ok := methodParams(method)
	if !ok {
		return cfg, []error{fmt.Errorf("%w: unknown method %q; use one of %s", ErrInvalidParam, method, strings.Join(Methods(), ", "))}
	}
	switch method {
	case "holt-winters":
		cfg.Seasonality = 24 * time.Hour
	case "cv":
		cfg.Window = "1h"
		cfg.Threshold = DefaultCVThreshold
	case "timeshift":
		cfg.Shift = 7 * 24 * time.Hour
		cfg.Threshold = DefaultTimeShiftThreshold
	}
	var errs []error
	seen := map[string]bool{}
	for _, kv := range sets {
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			errs = append(errs, fmt.Errorf("%s: want key=value", label(kv)))
			continue
		}
		if seen[k] {
			errs = append(errs, fmt.Errorf("%s given twice", label(k)))
			continue
		}
		seen[k] = true
		if !slices.Contains(allowed, k) && !slices.Contains(extra, k) {
			errs = append(errs, fmt.Errorf("%s: not a parameter of %s (it takes %s)", label(k), method, strings.Join(append(slices.Clone(allowed), extra...), ", ")))
			continue
		}
		if err := cfg.set(k, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", label(kv), err))
		}
	}
	return cfg, errs
}

// check validates the option structs, so mistakes are usage errors before any input is read.
func (cfg *DetectConfig) check() error {
	switch cfg.Method {
	case "iforest":
		if _, err := NewIsolationForest(cfg.IForest); err != nil {
			return err
		}
	case "holt-winters":
		o := cfg.HoltWinters
		o.SeasonLength = 2 // the real one needs the step; checked in RunDetect
		if _, err := o.withDefaults(); err != nil {
			return err
		}
	case "cv":
		o := CVOptions{Window: 1, WindowTolerance: cfg.WindowTolerance, Threshold: cfg.Threshold}
		if _, err := o.withDefaults(); err != nil {
			return err
		}
	case "timeshift":
		if !(cfg.Threshold > 0) || math.IsInf(cfg.Threshold, 0) {
			return fmt.Errorf("%w: threshold must be positive, got %g", ErrInvalidParam, cfg.Threshold)
		}
	}
	return nil
}

func (c *DetectConfig) set(k, v string) error {
	var err error
	switch k {
	case "columns":
		c.Columns = nil
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.Columns = append(c.Columns, s)
			}
		}
		if len(c.Columns) == 0 {
			return errors.New("name at least one column")
		}
	case "time_column":
		c.TimeColumn = v
	case "step":
		c.Step, err = ParseDuration(v)
	case "n_estimators":
		c.IForest.NEstimators, err = positiveInt(v)
	case "max_samples":
		if v != "auto" {
			c.IForest.MaxSamples, c.IForest.MaxSamplesFraction, err = countOrFraction(v)
		}
	case "max_features":
		c.IForest.MaxFeatures, c.IForest.MaxFeaturesFraction, err = countOrFraction(v)
	case "contamination":
		c.IForest.Contamination = 0 // auto
		if v != "auto" {
			c.IForest.Contamination, err = strconv.ParseFloat(v, 64)
			if err == nil && !(c.IForest.Contamination > 0 && c.IForest.Contamination <= 0.5) {
				err = errors.New("want 'auto' or a fraction in (0, 0.5]")
			}
		}
	case "bootstrap":
		c.IForest.Bootstrap, err = strconv.ParseBool(v)
	case "seed", "random_state":
		c.IForest.Seed, err = strconv.ParseUint(v, 10, 64)
	case "n_jobs":
		var n int
		n, err = strconv.Atoi(v)
		if n < 0 {
			n = 0 // -1: every CPU
		}
		c.IForest.Workers = n
	case "seasonality":
		c.Seasonality, err = ParseDuration(v)
	case "delta":
		c.HoltWinters.Delta, err = positiveFloat(v)
	case "alpha":
		c.HoltWinters.Alpha, err = positiveFloat(v)
	case "beta":
		c.HoltWinters.Beta, err = positiveFloat(v)
	case "gamma":
		c.HoltWinters.Gamma, err = positiveFloat(v)
	case "window":
		if n, e1 := strconv.Atoi(v); e1 != nil {
			_, err = ParseDuration(v)
		} else if n < 1 {
			err = errors.New("want a positive number of points or a duration")
		}
		c.Window = v
	case "window_tolerance":
		c.WindowTolerance, err = strconv.ParseFloat(v, 64)
		if err == nil && c.WindowTolerance == 0 {
			c.WindowTolerance = math.SmallestNonzeroFloat64 // any non-missing point will do
		}
	case "threshold":
		c.Threshold, err = positiveFloat(v)
	case "shift":
		c.Shift, err = ParseDuration(v)
	case "tolerance":
		c.Tolerance, err = ParseDuration(v)
	case "refit_every":
		c.RefitEvery, err = positiveInt(v)
	case "min_fit":
		c.MinFit, err = positiveInt(v)
	}
	return err
}

func positiveInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive integer")
	}
	return n, nil
}

func positiveFloat(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) {
		return 0, errors.New("want a positive number")
	}
	return f, nil
}

// countOrFraction parses scikit-learn's int-or-float parameters: "256" is a count, "0.5" or
// "1.0" a fraction.
func countOrFraction(v string) (int, float64, error) {
	if !strings.ContainsAny(v, ".eE") {
		n, err := positiveInt(v)
		return n, 0, err
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0 && f <= 1) {
		return 0, 0, errors.New("want a positive integer or a fraction in (0, 1]")
	}
	return 0, f, nil
}

// ParseDuration parses Graphite-style offsets ("30s", "5min", "1h", "1d", "7d", "2w") and
// Go durations ("1h30m"). A bare "m" means minutes.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	if i > 0 && i < len(s) {
		n, err := strconv.ParseFloat(s[:i], 64)
		unit := strings.ToLower(s[i:])
		var u time.Duration
		switch unit {
		case "s", "sec", "secs", "second", "seconds":
			u = time.Second
		case "m", "min", "mins", "minute", "minutes":
			u = time.Minute
		case "h", "hour", "hours":
			u = time.Hour
		case "d", "day", "days":
			u = 24 * time.Hour
		case "w", "week", "weeks":
			u = 7 * 24 * time.Hour
		}
		if err == nil && u > 0 {
			d := time.Duration(n * float64(u))
			if d <= 0 {
				return 0, fmt.Errorf("duration %q must be positive", s)
			}
			return d, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (e.g. 30s, 5min, 1h, 1d, 7d)", s)
	}
	return d, nil
}

// InferStep returns the most common positive gap between consecutive times (Unix ns), or 0.
func InferStep(times []int64) time.Duration {
	counts := map[int64]int{}
	var best int64
	for i := 1; i < len(times); i++ {
		g := times[i] - times[i-1]
		if g <= 0 {
			continue
		}
		counts[g]++
		if c, b := counts[g], counts[best]; c > b || (c == b && g < best) {
			best = g
		}
	}
	return time.Duration(best)
}

// RunDetect reads a CSV from r, runs the configured method and writes the result CSV to w.
// Input problems are *ParseError; parameter problems that depend on the data (a season shorter
// than 2 points) wrap ErrInvalidParam.
func RunDetect(cfg DetectConfig, r io.Reader, w io.Writer) error {
	return RunDetectWarn(cfg, r, w, nil)
}

// RunDetectWarn is RunDetect with a note on warn (when not nil) for rows out of time order,
// which are sorted, and repeated timestamps, which are merged (see Detect), saying how many
// rows that concerned.
func RunDetectWarn(cfg DetectConfig, r io.Reader, w, warn io.Writer) error {
	_, err := RunDetectSummary(cfg, r, w, warn)
	return err
}

// Summary counts what a detect run scored and flagged.
type Summary struct {
	Rows, Flagged int
}

// String is the summary line `pulselake detect` prints: rows, flagged rows and their share.
func (s Summary) String() string {
	share := 0.0
	if s.Rows > 0 {
		share = 100 * float64(s.Flagged) / float64(s.Rows)
	}
	return fmt.Sprintf("%d points, %d flagged (%.1f %%)", s.Rows, s.Flagged, share)
}

// Large reports whether more than LargeFlaggedShare of the rows were flagged.
func (s Summary) Large() bool {
	return s.Rows > 0 && float64(s.Flagged) > LargeFlaggedShare*float64(s.Rows)
}

// RunDetectSummary is RunDetectWarn returning how many rows were scored and flagged.
func RunDetectSummary(cfg DetectConfig, r io.Reader, w, warn io.Writer) (Summary, error) {
	t, err := ReadCSV(r, ReadOptions{TimeColumn: cfg.TimeColumn, Columns: cfg.Columns, RequireValues: cfg.Method == "iforest"})
	if err != nil {
		return Summary{}, err
	}
	if n := t.SortByTime(); n > 0 && warn != nil {
		fmt.Fprintf(warn, "warning: %d of %d rows have a timestamp earlier than a row above them; rows are sorted by time (stable) and written in that order\n", n, t.Rows())
	}
	if n := t.RepeatedRows(); n > 0 && warn != nil && cfg.Method != "iforest" {
		fmt.Fprintf(warn, "warning: %d rows repeat the timestamp of the row before; each timestamp is scored once, on the mean of its rows' values, and its rows share the result\n", n)
	}
	cols, err := Detect(cfg, t)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Rows: t.Rows()}
	for _, c := range cols {
		if c.Name == "anomaly" {
			for _, v := range c.Values {
				if v != 0 {
					sum.Flagged++
				}
			}
		}
	}
	return sum, WriteCSV(w, t, cols)
}

// Detect runs the configured method over t and returns the columns to append: score, anomaly,
// then the method's own. It first sorts t by time (stable) if its rows are out of order. The
// time-series methods then see one point per distinct timestamp: rows with the same timestamp
// are merged into one point whose values are the means of their present values (missing when
// none is), and every one of those rows gets that point's result. Isolation Forest scores every
// row as it is (order and repeats do not matter to it).
func Detect(cfg DetectConfig, t *Table) ([]OutColumn, error) {
	t.SortByTime()
	if cfg.Method == "iforest" {
		return detectPoints(cfg, t)
	}
	m, group := t.mergeRepeated()
	cols, err := detectPoints(cfg, m)
	if err != nil || group == nil {
		return cols, err
	}
	for c := range cols {
		if cols[c].Values != nil {
			v := make([]float64, len(group))
			for i, g := range group {
				v[i] = cols[c].Values[g]
			}
			cols[c].Values = v
		}
		if cols[c].Text != nil {
			v := make([]string, len(group))
			for i, g := range group {
				v[i] = cols[c].Text[g]
			}
			cols[c].Text = v
		}
	}
	return cols, nil
}

// detectPoints runs the method over a time-ordered table with distinct timestamps (any table
// for iforest).
func detectPoints(cfg DetectConfig, t *Table) ([]OutColumn, error) {
	n := t.Rows()
	score := make([]float64, n)
	flag := make([]float64, n)
	out := []OutColumn{{Name: "score", Values: score}, {Name: "anomaly", Values: flag, Int: true}}
	if cfg.Method != "iforest" && t.Dim() != 1 {
		return nil, fmt.Errorf("%w: %s works on one value column, the input has %d (%s); choose one with --set columns=NAME",
			ErrInvalidParam, cfg.Method, t.Dim(), strings.Join(t.ValueNames, ","))
	}
	step := cfg.Step
	if step == 0 && cfg.Method != "iforest" && cfg.Method != "online" {
		step = InferStep(t.Times)
		if step == 0 {
			step = time.Second // one row or constant timestamps: any step will do
		}
	}
	var extra []OutColumn
	var err error
	switch cfg.Method {
	case "online":
		extra = detectOnline(t, step, score, flag)
	case "iforest":
		extra, err = detectIForest(cfg, t, score, flag)
	case "holt-winters":
		extra, err = detectHoltWinters(cfg, t, step, score, flag)
	case "cv":
		extra, err = detectCV(cfg, t, step, score, flag)
	case "timeshift":
		extra = detectTimeShift(cfg, t, step, score, flag)
	}
	if err != nil {
		return nil, err
	}
	return append(out, extra...), nil
}

// The detectXxx functions below run one method over t, fill score and flag (one entry per row)
// and return the method's own columns.

func detectOnline(t *Table, step time.Duration, score, flag []float64) []OutColumn {
	n := t.Rows()
	expected := make([]float64, n)
	scale := make([]float64, n)
	pval := make([]float64, n)
	component := make([]string, n)
	d := NewOnline(OnlineOptions{Step: step})
	for i, x := range t.Values {
		r := d.Step(t.Times[i], x)
		score[i], expected[i], scale[i], pval[i] = r.Score, r.Expected, r.Scale, r.P
		if r.Anomaly {
			flag[i] = 1
		}
		component[i] = r.Component.String()
	}
	return []OutColumn{
		{Name: "expected", Values: expected},
		{Name: "scale", Values: scale},
		{Name: "p", Values: pval},
		{Name: "component", Text: component}}
}

func detectIForest(cfg DetectConfig, t *Table, score, flag []float64) ([]OutColumn, error) {
	n := t.Rows()
	if n == 0 {
		return nil, nil
	}
	f, err := NewIsolationForest(cfg.IForest)
	if err != nil {
		return nil, err
	}
	s, err := f.FitScoreSamples(t.Values, t.Dim(), nil)
	if err != nil {
		return nil, fmt.Errorf("fitting isolation forest: %w", err)
	}
	dec := make([]float64, n)
	for i, v := range s {
		dec[i] = v - f.Offset()
		score[i] = -v
		if dec[i] < 0 {
			flag[i] = 1
		}
	}
	return []OutColumn{{Name: "decision", Values: dec}}, nil
}

func detectHoltWinters(cfg DetectConfig, t *Table, step time.Duration, score, flag []float64) ([]OutColumn, error) {
	o := cfg.HoltWinters
	o.SeasonLength = int(cfg.Seasonality / step)
	var res HoltWintersResult
	if err := HoltWintersAnalysis(t.Values, o, &res); err != nil {
		return nil, fmt.Errorf("seasonality %v with step %v: %w", cfg.Seasonality, step, err)
	}
	delta := o.Delta
	if delta == 0 {
		delta = HoltWintersDelta
	}
	for i, v := range t.Values {
		score[i] = HoltWintersScore(v, res.Forecast[i], res.Deviation[i], delta)
		if res.Aberration[i] != 0 {
			flag[i] = 1
		}
	}
	return []OutColumn{
		{Name: "forecast", Values: res.Forecast},
		{Name: "lower", Values: res.Lower},
		{Name: "upper", Values: res.Upper},
		{Name: "aberration", Values: res.Aberration}}, nil
}

func detectCV(cfg DetectConfig, t *Table, step time.Duration, score, flag []float64) ([]OutColumn, error) {
	window, err := strconv.Atoi(cfg.Window)
	if err != nil {
		d, _ := ParseDuration(cfg.Window)
		window = max(1, int(math.Round(float64(d)/float64(step))))
	}
	cv, err := CoefficientOfVariation(t.Values, CVOptions{Window: window, WindowTolerance: cfg.WindowTolerance, Threshold: cfg.Threshold}, nil)
	if err != nil {
		return nil, err
	}
	for i, c := range cv {
		score[i] = CVScore(c, cfg.Threshold)
		if math.Abs(c) > cfg.Threshold {
			flag[i] = 1
		}
	}
	return []OutColumn{{Name: "cv", Values: cv}}, nil
}

func detectTimeShift(cfg DetectConfig, t *Table, step time.Duration, score, flag []float64) []OutColumn {
	n := t.Rows()
	tol := cfg.Tolerance
	if tol == 0 {
		tol = step / 2
	}
	idx := ShiftIndex(t.Times, int64(cfg.Shift), int64(tol), nil)
	shifted := make([]float64, n)
	change := make([]float64, n)
	for i, j := range idx {
		shifted[i] = math.NaN()
		if j >= 0 {
			shifted[i] = t.Values[j]
		}
		change[i] = TimeShiftChange(t.Values[i], shifted[i])
		score[i] = TimeShiftScore(change[i], cfg.Threshold)
		if change[i] > cfg.Threshold {
			flag[i] = 1
		}
	}
	return []OutColumn{{Name: "shifted", Values: shifted}, {Name: "change", Values: change}}
}
