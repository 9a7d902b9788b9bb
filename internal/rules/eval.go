package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/reading"
)

// States of an alert.
const (
	StatePending  = "pending"
	StateFiring   = "firing"
	StateResolved = "resolved"
	// StateInactive appears only in transitions: a pending alert whose condition cleared.
	StateInactive = "inactive"
)

// Alert is the state of one alert, identified by (Rule, Subject, Device).
type Alert struct {
	Rule        string             `json:"rule"`
	Subject     string             `json:"subject"`
	Device      string             `json:"device"`
	Kind        string             `json:"kind,omitempty"`
	State       string             `json:"state"`
	Severity    string             `json:"severity,omitempty"`
	Labels      map[string]string  `json:"labels"`
	Annotations map[string]string  `json:"annotations,omitempty"`
	Values      map[string]float64 `json:"values,omitempty"` // of the last reading that met the condition
	Text        map[string]string  `json:"text,omitempty"`
	ReadingTime time.Time          `json:"reading_time,omitzero"`
	ActiveAt    time.Time          `json:"active_at"`            // became pending (or firing)
	FiredAt     time.Time          `json:"fired_at,omitzero"`    // became firing
	ResolvedAt  time.Time          `json:"resolved_at,omitzero"` // became resolved
	KeepSince   time.Time          `json:"keep_since,omitzero"`  // resolve condition first held while firing
	LastEval    time.Time          `json:"last_eval,omitzero"`   // last evaluation
	Cond        bool               `json:"cond"`                 // the condition at the last evaluation
}

// Transition is a change of an alert's state.
type Transition struct {
	From  string `json:"from"`
	Alert Alert  `json:"alert"`
}

type alertKey struct{ rule, subject, device string }

func (k alertKey) id() string {
	h := sha256.Sum256([]byte(k.rule + "\x00" + k.subject + "\x00" + k.device))
	return "a." + hex.EncodeToString(h[:16])
}

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
		k := alertKey{c.Name, r.Subject, r.Device}
		if a := e.alerts[k]; a != nil && a.State == StateFiring {
			a.Cond = false
			e.resolve(k, a, now)
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
	k := alertKey{c.Name, r.Subject, r.Device}
	a := e.alerts[k]
	if a == nil || a.State == StateResolved {
		if !cond {
			return
		}
		a = &Alert{Rule: c.Name, Subject: r.Subject, Device: r.Device, Kind: r.Kind, State: StatePending, Severity: c.Severity, ActiveAt: now}
		a.Labels = labels(c, r.Subject, r.Device, r.Kind)
		e.alerts[k] = a
		e.update(c, a, r, now, cond)
		e.dirty[k] = true
		if c.For.D() == 0 {
			e.fire(k, a, now, StateInactive)
		} else {
			e.emit(StateInactive, a)
		}
		return
	}
	if cond {
		e.update(c, a, r, now, cond)
	}
	a.Cond, a.LastEval = cond, now
	switch a.State {
	case StatePending:
		if !cond {
			delete(e.alerts, k)
			e.dirty[k] = true
			a.State = StateInactive
			e.emit(StatePending, a)
			return
		}
		if now.Sub(a.ActiveAt) >= c.For.D() {
			e.fire(k, a, now, StatePending)
		}
	case StateFiring:
		switch {
		case cond:
			if !a.KeepSince.IsZero() {
				a.KeepSince = time.Time{}
				e.dirty[k] = true
			}
		case res:
			if c.KeepFiringFor.D() == 0 {
				e.resolve(k, a, now)
				return
			}
			if a.KeepSince.IsZero() {
				a.KeepSince = now
				e.dirty[k] = true
			}
			if now.Sub(a.KeepSince) >= c.KeepFiringFor.D() {
				e.resolve(k, a, now)
			}
		default: // between the thresholds: keep firing (hysteresis)
			if !a.KeepSince.IsZero() {
				a.KeepSince = time.Time{}
				e.dirty[k] = true
			}
		}
	}
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

func (e *evaluator) fire(k alertKey, a *Alert, now time.Time, from string) {
	a.State, a.FiredAt, a.KeepSince = StateFiring, now, time.Time{}
	e.dirty[k] = true
	e.emit(from, a)
}

func (e *evaluator) resolve(k alertKey, a *Alert, now time.Time) {
	a.State, a.ResolvedAt, a.KeepSince = StateResolved, now, time.Time{}
	e.dirty[k] = true
	e.emit(StateFiring, a)
}

func (e *evaluator) emit(from string, a *Alert) {
	cp := *a
	e.out = append(e.out, Transition{From: from, Alert: cp})
}

// tick applies the passage of time: pending alerts whose condition held for `for` fire,
// keep_firing_for runs out, silent devices raise absent_for alerts, old resolved alerts go.
func (e *evaluator) tick(now time.Time) {
	rules := make(map[string]*compiled, len(e.set.rules))
	for _, c := range e.set.rules {
		rules[c.Name] = c
	}
	for k, a := range e.alerts {
		c := rules[k.rule]
		if c == nil {
			// The rule was removed by a reload: resolve its alerts, then forget them.
			if a.State == StateFiring {
				e.resolve(k, a, now)
			} else if a.State == StatePending || now.Sub(a.ResolvedAt) > e.resolvedRetention {
				delete(e.alerts, k)
				e.dirty[k] = true
			}
			continue
		}
		switch a.State {
		case StatePending:
			if a.Cond && now.Sub(a.ActiveAt) >= c.For.D() {
				e.fire(k, a, now, StatePending)
			}
		case StateFiring:
			if !a.KeepSince.IsZero() && now.Sub(a.KeepSince) >= c.KeepFiringFor.D() {
				e.resolve(k, a, now)
			}
		case StateResolved:
			if now.Sub(a.ResolvedAt) > e.resolvedRetention {
				delete(e.alerts, k)
				e.dirty[k] = true
			}
		}
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
			k := alertKey{c.Name, dk.subject, dk.device}
			if a := e.alerts[k]; a != nil && a.State == StateFiring {
				continue
			}
			a := &Alert{Rule: c.Name, Subject: dk.subject, Device: dk.device, Kind: sn.Kind, State: StatePending,
				Severity: c.Severity, ActiveAt: sn.At.Add(c.AbsentFor.D()), Cond: true, LastEval: now}
			a.Labels = labels(c, dk.subject, dk.device, sn.Kind)
			a.Annotations = render(c, a, nil, nil, time.Time{})
			e.alerts[k] = a
			e.fire(k, a, now, StateInactive)
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

// toNotify converts an alert for the notification pipeline.
func toNotify(a *Alert) notify.Alert {
	n := notify.Alert{Labels: a.Labels, Annotations: a.Annotations, Values: a.Values, StartsAt: a.FiredAt}
	if n.StartsAt.IsZero() {
		n.StartsAt = a.ActiveAt
	}
	if a.State == StateResolved {
		n.EndsAt = a.ResolvedAt
	}
	return n
}
