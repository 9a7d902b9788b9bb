// Package alert is the one alert model of pulselake: the Alert of a rule or an anomaly
// detector, its state machine (inactive → pending → firing → resolved, with `for` and
// `keep_firing_for`, as in Prometheus), the Transition recorded at every change of state,
// and the conversion to a notification. Rules (internal/rules) and the streaming anomaly
// detectors both keep their alerts in this shape, so GET /v1/alerts, the dashboard's alert
// events, ops.alerts rows and receiver payloads look the same for both.
//
// The package does no I/O and holds no locks: its owners (the rule engine, the detector
// runner) serialise access to their alerts.
package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"

	"github.com/pulselake/pulselake/internal/notify"
)

// States of an alert.
const (
	StatePending  = "pending"
	StateFiring   = "firing"
	StateResolved = "resolved"
	// StateInactive appears only in transitions: an alert that did not exist, or a pending
	// alert whose condition cleared.
	StateInactive = "inactive"
)

// Sources of alerts (Alert.Source).
const (
	SourceRule     = "rule"
	SourceDetector = "detector"
)

// Alert is the state of one alert, identified by (Rule, Subject, Device); Rule names the
// rule or the detector.
type Alert struct {
	Rule        string             `json:"rule"`
	Source      string             `json:"source"` // SourceRule or SourceDetector
	Subject     string             `json:"subject"`
	Device      string             `json:"device"`
	Kind        string             `json:"kind,omitempty"` // of the readings
	State       string             `json:"state"`
	Severity    string             `json:"severity,omitempty"`
	Labels      map[string]string  `json:"labels"`
	Annotations map[string]string  `json:"annotations,omitempty"` // summary, description
	Values      map[string]float64 `json:"values,omitempty"`      // of the last reading that met the condition
	Text        map[string]string  `json:"text,omitempty"`
	ReadingTime time.Time          `json:"reading_time,omitzero"`
	ActiveAt    time.Time          `json:"active_at"`            // became pending (or firing)
	FiredAt     time.Time          `json:"fired_at,omitzero"`    // became firing
	ResolvedAt  time.Time          `json:"resolved_at,omitzero"` // became resolved
	KeepSince   time.Time          `json:"keep_since,omitzero"`  // resolve condition first held while firing
	LastEval    time.Time          `json:"last_eval,omitzero"`   // last evaluation
	Cond        bool               `json:"cond"`                 // the condition at the last evaluation
}

// Key identifies an alert.
type Key struct{ Rule, Subject, Device string }

// Key returns the alert's identity.
func (a *Alert) Key() Key { return Key{a.Rule, a.Subject, a.Device} }

// ID is a stable name of the key usable as a NATS KV key ("a." and 32 hex digits).
func (k Key) ID() string {
	h := sha256.Sum256([]byte(k.Rule + "\x00" + k.Subject + "\x00" + k.Device))
	return "a." + hex.EncodeToString(h[:16])
}

// Transition is a change of an alert's state: From is the state before, Alert a copy after.
type Transition struct {
	From  string `json:"from"`
	Alert Alert  `json:"alert"`
}

// Timing is how long a condition must hold before its alert fires (For) and how long a
// firing alert stays firing after its resolve condition first held (KeepFiringFor).
type Timing struct {
	For           time.Duration
	KeepFiringFor time.Duration
}

// Change is what one step of the state machine did to an alert.
type Change struct {
	// Moved: the state changed; From is the state before and a Transition is due.
	Moved bool
	From  string
	// Dirty: a persisted field changed (the state or KeepSince); owners that keep alert state
	// durable write the alert again.
	Dirty bool
}

// Transition returns the transition of c on a (valid when c.Moved).
func (c Change) Transition(a *Alert) Transition { return Transition{From: c.From, Alert: *a} }

// Activate starts the alert whose condition just became true: a new alert or a resolved one
// (which starts over). It becomes pending, or firing at once when t.For is zero.
func (a *Alert) Activate(now time.Time, t Timing) Change {
	a.State, a.ActiveAt, a.FiredAt, a.ResolvedAt, a.KeepSince = StatePending, now, time.Time{}, time.Time{}, time.Time{}
	a.Cond, a.LastEval = true, now
	if t.For <= 0 {
		a.Fire(now)
	}
	return Change{Moved: true, From: StateInactive, Dirty: true}
}

// Eval applies one evaluation to a pending or firing alert: cond is its condition, res its
// resolve condition (!cond unless the rule has a separate one: between the two a firing
// alert keeps firing, hysteresis). A pending alert whose condition cleared becomes
// StateInactive: its owner forgets it.
func (a *Alert) Eval(now time.Time, cond, res bool, t Timing) Change {
	a.Cond, a.LastEval = cond, now
	switch a.State {
	case StatePending:
		if !cond {
			a.State = StateInactive
			return Change{Moved: true, From: StatePending, Dirty: true}
		}
		if now.Sub(a.ActiveAt) >= t.For {
			a.Fire(now)
			return Change{Moved: true, From: StatePending, Dirty: true}
		}
	case StateFiring:
		if !cond && res {
			if t.KeepFiringFor <= 0 {
				return a.Resolve(now)
			}
			c := Change{}
			if a.KeepSince.IsZero() {
				a.KeepSince, c.Dirty = now, true
			}
			if now.Sub(a.KeepSince) >= t.KeepFiringFor {
				return a.Resolve(now)
			}
			return c
		}
		if !a.KeepSince.IsZero() { // the condition holds again, or is between the thresholds
			a.KeepSince = time.Time{}
			return Change{Dirty: true}
		}
	}
	return Change{}
}

// Tick applies the passage of time: a pending alert whose condition held at its last
// evaluation fires once For has passed since ActiveAt; a firing alert resolves once
// KeepFiringFor has passed since its resolve condition first held.
func (a *Alert) Tick(now time.Time, t Timing) Change {
	switch a.State {
	case StatePending:
		if a.Cond && now.Sub(a.ActiveAt) >= t.For {
			a.Fire(now)
			return Change{Moved: true, From: StatePending, Dirty: true}
		}
	case StateFiring:
		if !a.KeepSince.IsZero() && now.Sub(a.KeepSince) >= t.KeepFiringFor {
			return a.Resolve(now)
		}
	}
	return Change{}
}

// Fire makes the alert firing at now (for alerts that skip pending, like absent_for).
func (a *Alert) Fire(now time.Time) {
	a.State, a.FiredAt, a.KeepSince = StateFiring, now, time.Time{}
}

// Resolve makes a firing alert resolved at now.
func (a *Alert) Resolve(now time.Time) Change {
	from := a.State
	a.State, a.ResolvedAt, a.KeepSince = StateResolved, now, time.Time{}
	return Change{Moved: true, From: from, Dirty: true}
}

// Expired reports whether a resolved alert was resolved longer than retention ago, so its
// owner stops listing it.
func (a *Alert) Expired(now time.Time, retention time.Duration) bool {
	return a.State == StateResolved && now.Sub(a.ResolvedAt) > retention
}

// ToNotify converts the alert for the notification pipeline: it starts when it fired (when
// it became active for an alert restored without FiredAt) and ends when it resolved.
func (a *Alert) ToNotify() notify.Alert {
	n := notify.Alert{Labels: a.Labels, Annotations: a.Annotations, Values: a.Values, StartsAt: a.FiredAt}
	if n.StartsAt.IsZero() {
		n.StartsAt = a.ActiveAt
	}
	if a.State == StateResolved {
		n.EndsAt = a.ResolvedAt
	}
	return n
}

// Notifications are the notifications of the firing and resolved alerts among ts (pending
// and inactive ones are not told to receivers).
func Notifications(ts []Transition) []notify.Alert {
	var out []notify.Alert
	for i := range ts {
		if s := ts[i].Alert.State; s == StateFiring || s == StateResolved {
			out = append(out, ts[i].Alert.ToNotify())
		}
	}
	return out
}

// SortNewest sorts alerts newest first (by ActiveAt), as GET /v1/alerts lists them.
func SortNewest(as []Alert) {
	slices.SortStableFunc(as, func(x, y Alert) int { return y.ActiveAt.Compare(x.ActiveAt) })
}

// ValidState reports whether s is a state GET /v1/alerts filters by ("" for all).
func ValidState(s string) bool {
	return s == "" || s == StatePending || s == StateFiring || s == StateResolved
}
