package rules

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

// Rule is one alert rule (SPEC §7).
type Rule struct {
	Name string `yaml:"name"`
	// Kind of reading the rule looks at; absent_for rules may leave it empty (any kind).
	Kind string `yaml:"kind"`
	// When is the firing condition, an expr expression that yields a bool.
	When string `yaml:"when"`
	// ResolveWhen, if set, is the condition that resolves a firing alert (hysteresis): the
	// alert keeps firing until it holds, even when When no longer does.
	ResolveWhen string `yaml:"resolve_when"`
	// For is how long When must hold before the alert fires (0: at once).
	For yamlconf.Duration `yaml:"for"`
	// KeepFiringFor keeps an alert firing this long after its condition cleared.
	KeepFiringFor yamlconf.Duration `yaml:"keep_firing_for"`
	// AbsentFor makes a no-data rule: it fires for a device seen before that sent no reading
	// (of Kind, if set) for this long, and resolves on its next reading.
	AbsentFor yamlconf.Duration `yaml:"absent_for"`
	// Severity becomes the severity label (critical, warning, info).
	Severity string            `yaml:"severity"`
	Labels   map[string]string `yaml:"labels"`
	// Summary and Description are text/template templates over the reading's values and
	// fields ({{.systolic}}, {{.device}}) and the labels ({{.labels.severity}}).
	Summary     string `yaml:"summary"`
	Description string `yaml:"description"`
}

// File is a rule file: a list under `rules`.
type File struct {
	Rules []Rule `yaml:"rules"`
}

//go:embed default_rules.yaml
var defaultRules []byte

// DefaultRules returns the rules shipped with pulselake (default_rules.yaml).
func DefaultRules() []Rule {
	f, err := Parse("default_rules.yaml", defaultRules)
	if err != nil {
		panic("rules: default_rules.yaml: " + err.Error()) // covered by tests
	}
	return f.Rules
}

// DefaultRulesYAML returns the text of the shipped rules, for documentation and `rules test`.
func DefaultRulesYAML() []byte { return bytes.Clone(defaultRules) }

// Parse decodes a rule file strictly; its error lists every mistake (unknown keys, values of
// the wrong type, bad durations) with name:line and YAML path.
func Parse(name string, data []byte) (*File, error) {
	return yamlconf.Unmarshal[File](name, data)
}

// LoadFiles reads rule files (glob patterns allowed, relative to dir) and returns their rules
// in order. Errors name the file.
func LoadFiles(dir string, patterns []string) ([]Rule, error) {
	var out []Rule
	for _, p := range patterns {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("rule_files: pattern %q: %w", p, err)
		}
		if len(matches) == 0 && !strings.ContainsAny(p, "*?[") {
			matches = []string{p}
		}
		for _, m := range matches {
			data, err := os.ReadFile(m)
			if err != nil {
				return nil, fmt.Errorf("reading rule file: %w", err)
			}
			f, err := Parse(m, data)
			if err != nil {
				return nil, err
			}
			out = append(out, f.Rules...)
		}
	}
	return out, nil
}
