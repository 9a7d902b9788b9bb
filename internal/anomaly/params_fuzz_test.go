package anomaly

import (
	"io"
	"testing"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

// FuzzDetectorParams decodes arbitrary detectors: YAML as the configuration file does: it
// never panics, every problem has a path, and a detector it accepts can be built.
func FuzzDetectorParams(f *testing.F) {
	for _, seed := range []string{
		"detectors:\n  - {kind: heart_rate, value: bpm, method: holt-winters, params: {seasonality: 10m, step: 1m}}\n",
		"detectors:\n  - {kind: activity, values: [hr, steps], method: iforest, params: {contamination: 0.05, window: 1000, step: 10s, max_samples: auto}}\n",
		"detectors:\n  - {kind: heart_rate, value: bpm, method: timeshift, params: {shift: 1d, step: 5min, tolerance: 30s}}\n",
		"detectors:\n  - {kind: heart_rate, value: bpm, method: cv, params: {window: 30, window_tolerance: 0, threshold: 0.2}}\n",
		"detectors:\n  - {kind: heart_rate, value: bpm, method: iforest, params: {max_features: 0.5, n_jobs: -1, seed: 3, refit_every: 8, min_fit: 4}}\n",
		"detectors:\n  - {kind: heart_rate, value: bpm, method: cv, params: {window: [1, 2], threshold: many}, resolve_after: soon}\n",
		"detectors:\n  - {kind: heart_rate, value: bpm, method: online, params: {step: 5s}, idle_after: 1d}\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		fl, err := yamlconf.Parse("d.yaml", []byte(text))
		if err != nil {
			return
		}
		type file struct {
			Detectors []DetectorSpec `yaml:"detectors"`
		}
		v, ps := yamlconf.Decode("d.yaml", fl, func() *file { return &file{} })
		ds, cps := CompileDetectors(v.Detectors, fieldCheck)
		for _, p := range cps {
			if p.Path == "" {
				t.Errorf("problem without a path: %s", p)
			}
		}
		if len(ps) > 0 || len(cps) > 0 {
			return
		}
		for _, d := range ds {
			if d.BaselineBytes() > 1<<30 {
				continue // a huge window is accepted but too big to build here
			}
			det, err := d.New()
			if err != nil {
				t.Fatalf("accepted detector %s does not build: %v", d.Name, err)
			}
			if c, ok := det.(io.Closer); ok {
				c.Close()
			}
		}
	})
}
