package anomaly

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

// DetectorSpec is one streaming detector of the configuration file's `detectors:` list: a
// method run on one value (or, for iforest, several values) of one kind of reading, with a
// separate detector state (its baseline) for every subject, or every subject and device.
type DetectorSpec struct {
	// Name identifies the detector: the alertname of its alerts and the detector column of
	// ops.anomalies (default "<method>-<kind>-<value>").
	Name   string   `yaml:"name"`
	Kind   string   `yaml:"kind"`
	Value  string   `yaml:"value"`  // the value of the kind to watch
	Values []string `yaml:"values"` // iforest only: several values, one feature each (instead of value)
	Method string   `yaml:"method"` // online, iforest, holt-winters, cv or timeshift
	// Params are the method's parameters, with the names and syntax of `pulselake detect
	// --set` (e.g. contamination: 0.08, seasonality: 1d, window: 1h, shift: 7d) plus step
	// (the series' period, default 1m) and, for iforest, window (training points, default
	// 4096), refit_every (default window/4) and min_fit (default min(256, window)); decoded
	// into the method's parameter struct (see Params).
	Params Params `yaml:"params"`
	// Threshold on the 0..1 score above which a point is an anomaly (0 < threshold < 1).
	// Unset: the method's own rule (iforest: decision_function < 0; holt-winters: outside the
	// confidence bands; cv and timeshift: above their threshold parameter), which all score
	// above 0.5.
	Threshold *float64 `yaml:"threshold"`
	// Baseline is whose history a detector learns from: subject (default: all devices of a
	// subject together) or device (each subject's device separately).
	Baseline string `yaml:"baseline"`
	// Severity and Labels are put on the alerts (severity default warning).
	Severity string            `yaml:"severity"`
	Labels   map[string]string `yaml:"labels"`
	// ResolveAfter: an alert resolves once its series had no anomaly for this long (default 5m).
	ResolveAfter Duration `yaml:"resolve_after"`
	// MaxSubjects bounds the number of baselines kept (default: as many as fit in
	// DefaultBaselineBudget by BaselineBytes, at most 10000); IdleAfter drops a baseline that saw
	// no reading for this long (default 24h). When full, the baseline idle longest is dropped.
	MaxSubjects int      `yaml:"max_subjects"`
	IdleAfter   Duration `yaml:"idle_after"`
}

// Detector is a validated DetectorSpec: it makes the streaming detector of one baseline.
type Detector struct {
	Name         string
	Kind         string
	Values       []string
	Method       string
	PerDevice    bool
	Severity     string
	Labels       map[string]string
	ResolveAfter time.Duration
	MaxSubjects  int
	IdleAfter    time.Duration
	// Threshold is the configured score threshold, or NaN for the method's own rule.
	Threshold float64
	// Step is the period of the series (holt-winters, cv and timeshift count gaps with it).
	Step time.Duration
	cfg  DetectConfig
}

// DefaultBaselineBudget is the memory the baselines of one detector may take when
// max_subjects is not configured.
const DefaultBaselineBudget = 256 << 20

var nameRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.:-]{0,127}$`)

// CompileDetectors validates specs; field(kind, value) reports whether kind has a numeric
// value of that name. Each problem is at the YAML path of the offending key
// ("detectors[2].params.contamination"); the caller locates them in its file.
func CompileDetectors(specs []DetectorSpec, field func(kind, value string) error) ([]*Detector, yamlconf.Problems) {
	var out []*Detector
	var all yamlconf.Problems
	names := map[string]int{}
	for i, s := range specs {
		p := fmt.Sprintf("detectors[%d]", i)
		d, ps := compileDetector(s, field)
		for _, pr := range ps {
			pr.Path = p + "." + pr.Path
			all = append(all, pr)
		}
		if d == nil {
			continue
		}
		if j, dup := names[d.Name]; dup {
			all.Add(p+".name", "%q is also the name of detectors[%d]; names must be unique", d.Name, j)
			continue
		}
		names[d.Name] = i
		out = append(out, d)
	}
	return out, all
}

// compileDetector checks one spec and builds its detector, in steps: what it watches, its
// method and parameters, how it alerts, and how many baselines it keeps. Problems are at
// paths inside the spec ("params.window"); the detector is nil when there is any.
func compileDetector(s DetectorSpec, field func(kind, value string) error) (*Detector, yamlconf.Problems) {
	var ps yamlconf.Problems
	d := &Detector{Name: s.Name, Kind: s.Kind, Method: s.Method, Severity: s.Severity, Labels: s.Labels,
		ResolveAfter: 5 * time.Minute, IdleAfter: 24 * time.Hour, Threshold: math.NaN(), Step: time.Minute}
	d.compileValues(s, field, &ps)
	if _, ok := newParams(s.Method); !ok {
		ps.Add("method", "want one of %s; got %q", strings.Join(Methods(), ", "), s.Method)
		return nil, ps
	}
	if d.Name == "" && len(d.Values) > 0 {
		d.Name = s.Method + "-" + s.Kind + "-" + d.Values[0]
	}
	if !nameRe.MatchString(d.Name) {
		ps.Add("name", "%q: want a letter then up to 127 letters, digits or _ . : -", d.Name)
	}
	d.compileParams(s, &ps)
	d.compileAlerts(s, &ps)
	d.compileLimits(s, &ps)
	if len(ps) > 0 {
		return nil, ps
	}
	return d, nil
}

// compileValues checks the kind and the value (or values) watched.
func (d *Detector) compileValues(s DetectorSpec, field func(kind, value string) error, ps *yamlconf.Problems) {
	if s.Kind == "" {
		ps.Add("kind", "missing: name the kind of reading to watch (e.g. heart_rate)")
	}
	switch {
	case s.Value != "" && len(s.Values) > 0:
		ps.Add("values", "give value or values, not both")
	case s.Value != "":
		d.Values = []string{s.Value}
	case len(s.Values) > 0:
		d.Values = slices.Clone(s.Values)
		if len(s.Values) > 1 && s.Method != "iforest" {
			ps.Add("values", "only iforest takes several values; %s watches one", s.Method)
		}
	default:
		ps.Add("value", "missing: name the value of the kind to watch (e.g. bpm)")
	}
	if s.Kind == "" || field == nil {
		return
	}
	for j, v := range d.Values {
		if err := field(s.Kind, v); err != nil {
			key := "value"
			if len(s.Values) > 0 {
				key = fmt.Sprintf("values[%d]", j)
			}
			ps.Add(key, "%v", err)
		}
	}
}

// compileParams turns the method's parameters into its settings and checks them together,
// building one detector for what depends on the step (a season of 2+ points).
func (d *Detector) compileParams(s DetectorSpec, ps *yamlconf.Problems) {
	mp := s.Params.Set
	if mp == nil {
		mp, _ = newParams(s.Method) // none given: the method's defaults
	}
	n := len(*ps)
	cfg := mp.detectConfig(func(key, format string, args ...any) { ps.Add("params."+key, format, args...) })
	d.cfg = cfg
	if cfg.Step > 0 {
		d.Step = cfg.Step
	}
	if len(*ps) > n {
		return
	}
	if err := cfg.check(); err != nil {
		ps.Add("params", "%v", err)
		return
	}
	if det, err := d.New(); err != nil {
		ps.Add("params", "%v", err)
	} else if c, ok := det.(io.Closer); ok {
		c.Close()
	}
}

// compileAlerts checks what the detector's alerts carry and when they resolve.
func (d *Detector) compileAlerts(s DetectorSpec, ps *yamlconf.Problems) {
	if s.Threshold != nil {
		if t := *s.Threshold; !(t > 0 && t < 1) {
			ps.Add("threshold", "want a score threshold between 0 and 1, got %g", t)
		}
		d.Threshold = *s.Threshold
	}
	switch s.Baseline {
	case "", "subject":
	case "device":
		d.PerDevice = true
	default:
		ps.Add("baseline", "want subject or device, got %q", s.Baseline)
	}
	if d.Severity == "" {
		d.Severity = "warning"
	}
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		if !nameRe.MatchString(k) {
			ps.Add("labels", "label name %q: want a letter then letters, digits or _ . : -", k)
		}
		switch k {
		case "alertname", "subject", "device", "kind", "severity", "detector":
			ps.Add("labels", "%q is set by the detector; choose another label name", k)
		}
	}
	d.ResolveAfter = s.ResolveAfter.Or(d.ResolveAfter)
}

// compileLimits checks the bounds of the detector's baselines.
func (d *Detector) compileLimits(s DetectorSpec, ps *yamlconf.Problems) {
	d.IdleAfter = s.IdleAfter.Or(d.IdleAfter)
	switch {
	case s.MaxSubjects < 0 || s.MaxSubjects > 10_000_000:
		ps.Add("max_subjects", "want 1..10000000 (0 for the default 10000), got %d", s.MaxSubjects)
	case s.MaxSubjects > 0:
		d.MaxSubjects = s.MaxSubjects
	default:
		d.MaxSubjects = int(min(10000, max(1, DefaultBaselineBudget/d.BaselineBytes())))
	}
}

// windowPoints converts a window given as a point count or a duration into points of step.
func windowPoints(w string, step time.Duration) (int, error) {
	if n, err := strconv.Atoi(w); err == nil {
		return n, nil
	}
	d, err := ParseDuration(w)
	if err != nil {
		return 0, err
	}
	n := int(d / step)
	if n < 1 {
		return 0, fmt.Errorf("window %s is shorter than the step %s", w, step)
	}
	return n, nil
}

// New returns a fresh streaming detector for one baseline. An iforest detector owns a refit
// goroutine: close it (io.Closer) when the baseline is dropped.
func (d *Detector) New() (Streaming, error) {
	c := d.cfg
	switch d.Method {
	case "online":
		return NewOnline(OnlineOptions{Step: c.Step}), nil // no step given: inferred
	case "iforest":
		o := StreamIForestOptions{Forest: c.IForest, RefitEvery: c.RefitEvery, MinFit: c.MinFit}
		if c.Window != "" {
			n, err := windowPoints(c.Window, d.Step)
			if err != nil {
				return nil, err
			}
			o.Window = n
		}
		return NewStreamIForest(len(d.Values), o)
	case "holt-winters":
		if c.Seasonality < 2*d.Step {
			return nil, fmt.Errorf("%w: seasonality %s must be at least two steps of %s", ErrInvalidParam, c.Seasonality, d.Step)
		}
		hw, err := NewStreamHoltWinters(c.Seasonality, d.Step, c.HoltWinters)
		if err != nil {
			return nil, err
		}
		return &bootstrapped{Streaming: hw, span: c.Seasonality}, nil
	case "cv":
		n, err := windowPoints(c.Window, d.Step)
		if err != nil {
			return nil, err
		}
		return NewStreamCV(d.Step, CVOptions{Window: n, WindowTolerance: c.WindowTolerance, Threshold: c.Threshold})
	case "timeshift":
		return NewStreamTimeShift(c.Shift, d.Step, c.Threshold)
	}
	return nil, errors.New("unknown method " + d.Method)
}

// BaselineBytes estimates the memory of one baseline's detector state: for iforest two
// training windows (the rolling one and the one the scoring forest was fitted on) plus two forests (the one scoring and the one being refitted, 2·max_samples-1
// nodes of 24 bytes per tree); for holt-winters two season-long rings; for cv the window ring;
// for timeshift one bucket (16 bytes) per step of the shift.
func (d *Detector) BaselineBytes() int64 {
	const overhead = 512 // the baseline's own bookkeeping
	c := d.cfg
	switch d.Method {
	case "iforest":
		window := int64(4096)
		if n, err := windowPoints(c.Window, d.Step); c.Window != "" && err == nil {
			window = int64(n)
		}
		ms := min(int64(256), window)
		switch {
		case c.IForest.MaxSamples > 0:
			ms = min(int64(c.IForest.MaxSamples), window)
		case c.IForest.MaxSamplesFraction > 0:
			ms = max(1, int64(c.IForest.MaxSamplesFraction*float64(window)))
		}
		trees := int64(c.IForest.NEstimators)
		if trees == 0 {
			trees = 100
		}
		return overhead + 2*window*int64(len(d.Values))*8 + 2*trees*(2*ms-1)*24
	case "holt-winters":
		return overhead + 2*8*int64(c.Seasonality/d.Step)
	case "cv":
		n, _ := windowPoints(c.Window, d.Step)
		return overhead + 8*int64(n)
	case "timeshift":
		return overhead + 16*(int64(c.Shift/d.Step)+1)
	case "online":
		return overhead + OnlineStateBytes
	}
	return overhead
}

// bootstrapped feeds the first span of a series (from its first observation) to a detector
// without reporting scores: Holt-Winters' first season has no deviation behind it, so nearly
// every point would lie outside the bands. It is Graphite's bootstrapInterval (one season here)
// for a live series.
type bootstrapped struct {
	Streaming
	span  time.Duration
	first time.Time
}

func (b *bootstrapped) Observe(t time.Time, v []float64) (float64, bool) {
	if b.first.IsZero() {
		b.first = t
	}
	score, flag := b.Streaming.Observe(t, v)
	if t.Sub(b.first) < b.span {
		return 0, false
	}
	return score, flag
}

// Flag decides whether an observation is an anomaly: its score against the configured
// threshold, or the method's own rule.
func (d *Detector) Flag(score float64, methodFlag bool) bool {
	if math.IsNaN(d.Threshold) {
		return methodFlag
	}
	return score >= d.Threshold
}
