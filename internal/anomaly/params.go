package anomaly

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

// Params are a detector's `params:` in the configuration file, decoded into the parameter
// struct of its method (OnlineParams, IForestParams, HoltWintersParams, CVParams or
// TimeShiftParams) once the method is known. Set is nil when none are given (the method's
// defaults).
type Params struct {
	Set  MethodParams
	node ast.Node // the mapping as written, decoded by DetectorSpec.UnmarshalYAML
}

// UnmarshalYAML keeps the mapping; the detector decodes it once it knows the method.
func (p *Params) UnmarshalYAML(n ast.Node) error {
	p.node = n
	return nil
}

// MethodParams is the parameter struct of one detector method.
type MethodParams interface {
	// detectConfig returns the method's settings, its defaults filling in what is unset, and
	// calls bad for each value out of range, with the value's key.
	detectConfig(bad func(key, format string, args ...any)) DetectConfig
}

// newParams returns the empty parameter struct of a method; false for an unknown method.
// A method registers its parameters by adding its case here (its struct implements
// MethodParams), beside its cases in Methods, Detector.New and Detector.BaselineBytes.
func newParams(method string) (MethodParams, bool) {
	switch method {
	case "online":
		return &OnlineParams{}, true
	case "iforest":
		return &IForestParams{}, true
	case "holt-winters":
		return &HoltWintersParams{}, true
	case "cv":
		return &CVParams{}, true
	case "timeshift":
		return &TimeShiftParams{}, true
	}
	return nil, false
}

// UnmarshalYAML decodes a detector strictly, then its params into its method's struct. A
// mistake is returned with the position of the value, so that yamlconf.Decode reports it
// with file:line and goes on to find the others. Params of an unknown method are left
// undecoded: CompileDetectors reports the method.
func (s *DetectorSpec) UnmarshalYAML(n ast.Node) error {
	type plain DetectorSpec // without this method
	if err := yaml.NodeToValue(n, (*plain)(s), yaml.Strict()); err != nil {
		return err
	}
	p, ok := newParams(s.Method)
	if s.Params.node == nil || !ok {
		return nil
	}
	if m, ok := s.Params.node.(*ast.MappingNode); ok {
		if err := checkKeys(m, s.Method, p); err != nil {
			return err
		}
	}
	if err := yaml.NodeToValue(s.Params.node, p, yaml.Strict()); err != nil {
		return err
	}
	s.Params.Set = p
	return nil
}

// checkKeys returns an error at the first key that is not a parameter of the method, saying
// which ones it takes.
func checkKeys(m *ast.MappingNode, method string, p MethodParams) error {
	var keys []string
	t := reflect.TypeOf(p).Elem()
	for i := range t.NumField() {
		keys = append(keys, strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0])
	}
	for _, mv := range m.Values {
		if k := mv.Key.String(); !slices.Contains(keys, k) {
			return &yamlconf.ValueError{Token: mv.Key.GetToken(),
				Msg: fmt.Sprintf("%q is not a parameter of %s (it takes %s)", k, method, strings.Join(keys, ", "))}
		}
	}
	return nil
}

// OnlineParams are the parameters of an online detector: it infers what it needs, so only
// the step of the series may be given (default: inferred from the readings).
type OnlineParams struct {
	Step Duration `yaml:"step"`
}

func (p *OnlineParams) detectConfig(func(key, format string, args ...any)) DetectConfig {
	return DetectConfig{Method: "online", Step: p.Step.D()}
}

// IForestParams are the parameters of an iforest detector: scikit-learn's IsolationForest
// (the names and meanings of `pulselake detect --set`) and the streaming window.
type IForestParams struct {
	Step          Duration        `yaml:"step"` // period of the series (default 1m)
	NEstimators   *int            `yaml:"n_estimators"`
	MaxSamples    CountOrFraction `yaml:"max_samples"`   // a count, a fraction or auto
	Contamination Fraction        `yaml:"contamination"` // a fraction in (0, 0.5] or auto
	MaxFeatures   CountOrFraction `yaml:"max_features"`
	Bootstrap     bool            `yaml:"bootstrap"`
	Seed          *uint64         `yaml:"seed"`
	RandomState   *uint64         `yaml:"random_state"` // scikit-learn's name of seed
	NJobs         int             `yaml:"n_jobs"`       // -1: every CPU
	// Window is the rolling training window: points, or a duration of steps (default 4096).
	Window     Window `yaml:"window"`
	RefitEvery *int   `yaml:"refit_every"` // default window/4
	MinFit     *int   `yaml:"min_fit"`     // default min(256, window)
}

func (p *IForestParams) detectConfig(bad func(key, format string, args ...any)) DetectConfig {
	c := DetectConfig{Method: "iforest", Step: p.Step.D(), Window: string(p.Window)}
	c.IForest.NEstimators = positive(bad, "n_estimators", p.NEstimators)
	c.IForest.MaxSamples, c.IForest.MaxSamplesFraction = p.MaxSamples.Count, p.MaxSamples.Fraction
	c.IForest.MaxFeatures, c.IForest.MaxFeaturesFraction = p.MaxFeatures.Count, p.MaxFeatures.Fraction
	if p.MaxFeatures.Auto {
		bad("max_features", "want a count or a fraction in (0, 1], got auto")
	}
	c.IForest.Contamination = float64(p.Contamination)
	c.IForest.Bootstrap = p.Bootstrap
	for _, seed := range []*uint64{p.Seed, p.RandomState} {
		if seed != nil {
			c.IForest.Seed = *seed
		}
	}
	c.IForest.Workers = max(0, p.NJobs)
	c.RefitEvery = positive(bad, "refit_every", p.RefitEvery)
	c.MinFit = positive(bad, "min_fit", p.MinFit)
	return c
}

// HoltWintersParams are the parameters of a holt-winters detector (Graphite's
// holtWintersConfidenceBands).
type HoltWintersParams struct {
	Step        Duration `yaml:"step"`        // period of the series (default 1m)
	Seasonality Duration `yaml:"seasonality"` // default 1d
	Delta       *float64 `yaml:"delta"`       // width of the bands in deviations (default 3)
	Alpha       *float64 `yaml:"alpha"`
	Beta        *float64 `yaml:"beta"`
	Gamma       *float64 `yaml:"gamma"`
}

func (p *HoltWintersParams) detectConfig(bad func(key, format string, args ...any)) DetectConfig {
	c := DetectConfig{Method: "holt-winters", Step: p.Step.D(), Seasonality: p.Seasonality.Or(24 * time.Hour)}
	c.HoltWinters.Delta = positive(bad, "delta", p.Delta)
	c.HoltWinters.Alpha = positive(bad, "alpha", p.Alpha)
	c.HoltWinters.Beta = positive(bad, "beta", p.Beta)
	c.HoltWinters.Gamma = positive(bad, "gamma", p.Gamma)
	return c
}

// CVParams are the parameters of a cv detector (coefficient of variation over a window).
type CVParams struct {
	Step            Duration `yaml:"step"`             // period of the series (default 1m)
	Window          Window   `yaml:"window"`           // points or a duration (default 1h)
	WindowTolerance *float64 `yaml:"window_tolerance"` // share of the window that must be present
	Threshold       *float64 `yaml:"threshold"`        // default DefaultCVThreshold
}

func (p *CVParams) detectConfig(bad func(key, format string, args ...any)) DetectConfig {
	c := DetectConfig{Method: "cv", Step: p.Step.D(), Window: string(p.Window), Threshold: DefaultCVThreshold}
	if c.Window == "" {
		c.Window = "1h"
	}
	if p.WindowTolerance != nil {
		c.WindowTolerance = *p.WindowTolerance
		if c.WindowTolerance == 0 {
			c.WindowTolerance = math.SmallestNonzeroFloat64 // any non-missing point will do
		}
	}
	if p.Threshold != nil {
		c.Threshold = positive(bad, "threshold", p.Threshold)
	}
	return c
}

// TimeShiftParams are the parameters of a timeshift detector (the value against the same
// time one shift earlier).
type TimeShiftParams struct {
	Step      Duration `yaml:"step"`      // period of the series (default 1m)
	Shift     Duration `yaml:"shift"`     // default 7d
	Threshold *float64 `yaml:"threshold"` // default DefaultTimeShiftThreshold
	Tolerance Duration `yaml:"tolerance"` // how far the shifted point may be (default step/2)
}

func (p *TimeShiftParams) detectConfig(bad func(key, format string, args ...any)) DetectConfig {
	c := DetectConfig{Method: "timeshift", Step: p.Step.D(), Shift: p.Shift.Or(7 * 24 * time.Hour),
		Tolerance: p.Tolerance.D(), Threshold: DefaultTimeShiftThreshold}
	if p.Threshold != nil {
		c.Threshold = positive(bad, "threshold", p.Threshold)
	}
	return c
}

// positive returns *v, 0 when unset, and reports a value that is not positive.
func positive[T int | float64](bad func(key, format string, args ...any), key string, v *T) T {
	if v == nil {
		return 0
	}
	if !(*v > 0) || math.IsInf(float64(*v), 0) {
		bad(key, "want a positive number, got %v", *v)
		return 0
	}
	return *v
}

// Duration is a detector duration: Graphite style ("30s", "5min", "1d", "2w") or Go style
// ("1h30m"), positive (ParseDuration).
type Duration time.Duration

// UnmarshalYAML parses the duration; its error carries the value's position.
func (d *Duration) UnmarshalYAML(n ast.Node) error {
	v, err := ParseDuration(scalar(n))
	if err != nil {
		return &yamlconf.ValueError{Token: n.GetToken(), Msg: err.Error()}
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration (0 when unset).
func (d Duration) D() time.Duration { return time.Duration(d) }

// Or returns the duration, or def when unset.
func (d Duration) Or(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Window is a window given as a positive number of points ("4096") or a duration ("1h").
type Window string

// UnmarshalYAML checks the window; its error carries the value's position.
func (w *Window) UnmarshalYAML(n ast.Node) error {
	s := scalar(n)
	if k, err := strconv.Atoi(s); err == nil {
		if k < 1 {
			return &yamlconf.ValueError{Token: n.GetToken(), Msg: fmt.Sprintf("want a positive number of points or a duration, got %d", k)}
		}
	} else if _, err := ParseDuration(s); err != nil {
		return &yamlconf.ValueError{Token: n.GetToken(), Msg: "want a number of points or a duration: " + err.Error()}
	}
	*w = Window(s)
	return nil
}

// Fraction is scikit-learn's contamination: "auto" (0) or a fraction in (0, 0.5].
type Fraction float64

// UnmarshalYAML parses the fraction; its error carries the value's position.
func (f *Fraction) UnmarshalYAML(n ast.Node) error {
	s := scalar(n)
	if s == "auto" {
		*f = 0
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0 && v <= 0.5) {
		return &yamlconf.ValueError{Token: n.GetToken(), Msg: fmt.Sprintf("want 'auto' or a fraction in (0, 0.5], got %s", s)}
	}
	*f = Fraction(v)
	return nil
}

// CountOrFraction is scikit-learn's int-or-float parameter: 256 is a count, 0.5 or 1.0 a
// fraction in (0, 1]; "auto" leaves both 0.
type CountOrFraction struct {
	Count    int
	Fraction float64
	Auto     bool
}

// UnmarshalYAML parses the value; its error carries the value's position.
func (c *CountOrFraction) UnmarshalYAML(n ast.Node) error {
	s := scalar(n)
	if s == "auto" {
		*c = CountOrFraction{Auto: true}
		return nil
	}
	count, frac, err := countOrFraction(s)
	if err != nil {
		return &yamlconf.ValueError{Token: n.GetToken(), Msg: fmt.Sprintf("%v, got %s", err, s)}
	}
	*c = CountOrFraction{Count: count, Fraction: frac}
	return nil
}

// scalar is the text of a scalar node ("" for a mapping or a list, which no parameter takes).
func scalar(n ast.Node) string {
	if _, ok := n.(ast.ScalarNode); !ok {
		return ""
	}
	if s, ok := n.(*ast.StringNode); ok {
		return strings.TrimSpace(s.Value)
	}
	return strings.TrimSpace(n.GetToken().Value)
}
