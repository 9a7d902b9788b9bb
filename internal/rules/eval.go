package rules

import (
	"fmt"
	"maps"
	"math"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/reading"
)

// The alerts of rules are alert.Alert; these names keep the package's callers short.
type (
	Alert      = alert.Alert
	Transition = alert.Transition
)

// States of an alert (see package alert).
const (
	StatePending  = alert.StatePending
	StateFiring   = alert.StateFiring
	StateResolved = alert.StateResolved
	StateInactive = alert.StateInactive
)

type alertKey = alert.Key

type devKey struct{ subject, device string }

type seriesKey struct{ subject, device, kind string }

// Seen is when a device last sent a reading (processing time), for absent_for rules.
type Seen struct {
	Subject string    `json:"subject"`
	Device  string    `json:"device"`
	Kind    string    `json:"kind"`
	At      time.Time `json:"at"`
}

// evaluator is the state machine without I/O; the Engine and `rules test` drive it.
type evaluator struct {
	set               *RuleSet
	alerts            map[alertKey]*Alert
	series            map[seriesKey]*series
	seen              map[devKey]*Seen
	dirty             map[alertKey]bool
	out               []Transition
	resolvedRetention time.Duration
	seenRetention     time.Duration
	evalErrors        func(rule string, err error)
}

func newEvaluator(set *RuleSet) *evaluator {
	return &evaluator{set: set, alerts: map[alertKey]*Alert{}, series: map[seriesKey]*series{}, seen: map[devKey]*Seen{},
		dirty: map[alertKey]bool{}, resolvedRetention: 15 * time.Minute, seenRetention: 7 * 24 * time.Hour}
}

// observe evaluates the rules of r's kind. When stateful is false (an old reading) only the
// windows learn from it.
func (e *evaluator) observe(r *reading.Reading, now time.Time, stateful bool) {
	var s *series
	if w := e.set.window[r.Kind]; w > 0 {
		k := seriesKey{r.Subject, r.Device, r.Kind}
		s = e.series[k]
		if s == nil {
			s = &series{}
			e.series[k] = s
		}
		s.add(r.Time, r.Values, w)
		s.now = r.Time
	}
	if !stateful {
		return
	}
	dk := devKey{r.Subject, r.Device}
	if sn := e.seen[dk]; sn != nil {
		sn.At, sn.Kind = now, r.Kind
	} else {
		e.seen[dk] = &Seen{Subject: r.Subject, Device: r.Device, Kind: r.Kind, At: now}
	}
	for _, c := range e.set.absent {
		if c.Kind != "" && c.Kind != r.Kind {
			continue
		}
		k := alertKey{Rule: c.Name, Subject: r.Subject, Device: r.Device}
		if a := e.alerts[k]; a != nil && a.State == StateFiring {
			a.Cond = false
			e.apply(k, a, a.Resolve(now))
		}
	}
	rules := e.set.byKind[r.Kind]
	if len(rules) == 0 {
		return
	}
	env := make(map[string]any, len(r.Values)+len(r.Text)+5)
	if kind, ok := e.kindFields(r.Kind); ok {
		for _, f := range kind {
			env[f] = math.NaN() // optional values a reading lacks compare false
		}
	}
	for k, v := range r.Values {
		env[k] = v
	}
	for k, v := range r.Text {
		env[k] = v
	}
	if r.Samples != nil {
		env["samples"] = r.Samples
	}
	env["subject"], env["device"], env["kind"], env["time"] = r.Subject, r.Device, r.Kind, r.Time
	env[seriesVar] = s
	for _, c := range rules {
		cond, err := run(c.when, env)
		if err != nil {
			e.evalError(c.Name, err)
			continue
		}
		res := !cond
		if c.resolve != nil {
			if res, err = run(c.resolve, env); err != nil {
				e.evalError(c.Name, err)
				continue
			}
		}
		e.step(c, r, now, cond, res)
	}
}

func (e *evaluator) kindFields(kind string) ([]string, bool) {
	f, ok := e.set.fields[kind]
	return f, ok
}

func (e *evaluator) evalError(rule string, err error) {
	if e.evalErrors != nil {
		e.evalErrors(rule, err)
	}
}

func run(p *vm.Program, env map[string]any) (bool, error) {
	out, err := expr.Run(p, env)
	if err != nil {
		return false, err
	}
	b, _ := out.(bool)
	return b, nil
}

// step advances one alert after an evaluation of its rule on reading r.
func (e *evaluator) step(c *compiled, r *reading.Reading, now time.Time, cond, res bool) {
	k := alertKey{Rule: c.Name, Subject: r.Subject, Device: r.Device}
	a := e.alerts[k]
	if a == nil || a.State == StateResolved {
		if !cond {
			return
		}
		a = &Alert{Rule: c.Name, Source: alert.SourceRule, Subject: r.Subject, Device: r.Device, Kind: r.Kind, Severity: c.Severity}
		a.Labels = labels(c, r.Subject, r.Device, r.Kind)
		e.alerts[k] = a
		e.update(c, a, r, now, cond)
		e.apply(k, a, a.Activate(now, c.timing()))
		return
	}
	if cond {
		e.update(c, a, r, now, cond)
	}
	e.apply(k, a, a.Eval(now, cond, res, c.timing()))
}

// apply records a change of the state machine: dirty alerts are saved, transitions emitted
// and a pending alert that went inactive forgotten.
func (e *evaluator) apply(k alertKey, a *Alert, ch alert.Change) {
	if ch.Dirty {
		e.dirty[k] = true
	}
	if !ch.Moved {
		return
	}
	if a.State == StateInactive {
		delete(e.alerts, k)
	}
	e.out = append(e.out, ch.Transition(a))
}

func (c *compiled) timing() alert.Timing {
	return alert.Timing{For: c.For.D(), KeepFiringFor: c.KeepFiringFor.D()}
}

func labels(c *compiled, subject, device, kind string) map[string]string {
	l := make(map[string]string, len(c.Labels)+5)
	maps.Copy(l, c.Labels)
	l["alertname"], l["subject"], l["device"] = c.Name, subject, device
	if kind != "" {
		l["kind"] = kind
	}
	if c.Severity != "" {
		l["severity"] = c.Severity
	}
	return l
}

// update records the reading that met the condition and renders the annotations.
func (e *evaluator) update(c *compiled, a *Alert, r *reading.Reading, now time.Time, cond bool) {
	a.Values, a.Text, a.ReadingTime, a.Cond, a.LastEval = r.Values, r.Text, r.Time, cond, now
	a.Annotations = render(c, a, r.Values, r.Text, r.Time)
}

func render(c *compiled, a *Alert, values map[string]float64, text map[string]string, t time.Time) map[string]string {
	if c.summary == nil && c.descr == nil {
		return nil
	}
	data := make(map[string]any, len(values)+len(text)+6)
	for k, v := range values {
		data[k] = v
	}
	for k, v := range text {
		data[k] = v
	}
	data["subject"], data["device"], data["kind"], data["rule"], data["labels"] = a.Subject, a.Device, a.Kind, a.Rule, a.Labels
	if !t.IsZero() {
		data["time"] = t.UTC().Format(time.RFC3339)
	}
	out := map[string]string{}
	for name, t := range map[string]*templateT{"summary": c.summary, "description": c.descr} {
		if t == nil {
			continue
		}
		var b strings.Builder
		if err := t.Execute(&b, data); err != nil {
			out[name] = fmt.Sprintf("(template error: %v)", err)
			continue
		}
		out[name] = b.String()
	}
	return out
}

// tick applies the passage of time: pending alerts whose condition held for `for` fire,
// keep_firing_for runs out, silent devices raise absent_for alerts, old resolved alerts go.
func (e *evaluator) tick(now time.Time) {
	rules := make(map[string]*compiled, len(e.set.rules))
	for _, c := range e.set.rules {
		rules[c.Name] = c
	}
	for k, a := range e.alerts {
		c := rules[k.Rule]
		if c == nil {
			// The rule was removed by a reload: resolve its alerts, then forget them.
			if a.State == StateFiring {
				e.apply(k, a, a.Resolve(now))
			} else if a.State == StatePending || a.Expired(now, e.resolvedRetention) {
				delete(e.alerts, k)
				e.dirty[k] = true
			}
			continue
		}
		if a.Expired(now, e.resolvedRetention) {
			delete(e.alerts, k)
			e.dirty[k] = true
			continue
		}
		e.apply(k, a, a.Tick(now, c.timing()))
	}
	for dk, sn := range e.seen {
		silent := now.Sub(sn.At)
		if silent > e.seenRetention {
			delete(e.seen, dk)
			continue
		}
		for _, c := range e.set.absent {
			if (c.Kind != "" && c.Kind != sn.Kind) || silent < c.AbsentFor.D() {
				continue
			}
			k := alertKey{Rule: c.Name, Subject: dk.subject, Device: dk.device}
			if a := e.alerts[k]; a != nil && a.State == StateFiring {
				continue
			}
			// Fires at once; it became active when the device had been silent for absent_for.
			a := &Alert{Rule: c.Name, Source: alert.SourceRule, Subject: dk.subject, Device: dk.device, Kind: sn.Kind, Severity: c.Severity}
			a.Labels = labels(c, dk.subject, dk.device, sn.Kind)
			a.Annotations = render(c, a, nil, nil, time.Time{})
			e.alerts[k] = a
			ch := a.Activate(now, alert.Timing{})
			a.ActiveAt = sn.At.Add(c.AbsentFor.D())
			e.apply(k, a, ch)
		}
	}
}

// takeTransitions returns and clears the transitions since the last call.
func (e *evaluator) takeTransitions() []Transition {
	out := e.out
	e.out = nil
	return out
}

// active returns copies of the alerts in the given state ("" for all).
func (e *evaluator) list(state string) []Alert {
	out := make([]Alert, 0, len(e.alerts))
	for _, a := range e.alerts {
		if state == "" || a.State == state {
			out = append(out, *a)
		}
	}
	return out
}
