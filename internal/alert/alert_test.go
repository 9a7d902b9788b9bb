package alert

import (
	"encoding/json"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// op is one step of the state machine: an evaluation (cond, res), a tick, or a restore (the
// alert goes through JSON, as the rule engine keeps it in a KV bucket).
type op struct {
	sec      int
	kind     string // "eval", "tick", "restore"
	cond     bool
	res      bool
	want     string // state after
	moved    bool
	from     string // when moved
	dirty    bool
	keepSet  bool // KeepSince set after
	firedSec int  // FiredAt after (-1: zero)
}

// run drives an alert as its owners do: a condition that becomes true on an absent, inactive
// or resolved alert activates it.
func run(t *testing.T, tm Timing, ops []op) {
	t.Helper()
	var a *Alert
	for i, o := range ops {
		now := at(o.sec)
		var ch Change
		switch o.kind {
		case "eval":
			if a == nil || a.State == StateResolved || a.State == StateInactive {
				if !o.cond {
					if o.want != "" && (a == nil || a.State != o.want) {
						t.Fatalf("step %d: no alert, want %s", i, o.want)
					}
					continue
				}
				a = &Alert{Rule: "r", Subject: "s", Device: "d"}
				ch = a.Activate(now, tm)
			} else {
				ch = a.Eval(now, o.cond, o.res, tm)
			}
		case "tick":
			ch = a.Tick(now, tm)
		case "restore":
			b, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			a = &Alert{}
			if err := json.Unmarshal(b, a); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if a.State != o.want || ch.Moved != o.moved || (o.moved && ch.From != o.from) || ch.Dirty != o.dirty {
			t.Fatalf("step %d (%+v): state %s change %+v", i, o, a.State, ch)
		}
		if !a.KeepSince.IsZero() != o.keepSet {
			t.Fatalf("step %d: KeepSince %v, want set %v", i, a.KeepSince, o.keepSet)
		}
		if o.firedSec >= 0 && !a.FiredAt.Equal(at(o.firedSec)) || o.firedSec < 0 && !a.FiredAt.IsZero() {
			t.Fatalf("step %d: FiredAt %v, want second %d", i, a.FiredAt, o.firedSec)
		}
		if ch.Moved {
			if tr := ch.Transition(a); tr.From != o.from || tr.Alert.State != o.want {
				t.Fatalf("step %d: transition %+v", i, tr)
			}
		}
	}
}

func TestStateMachine(t *testing.T) {
	tests := []struct {
		name string
		tm   Timing
		ops  []op
	}{
		{"for 0 fires at once, resolves when the condition clears", Timing{}, []op{
			{sec: 0, kind: "eval", cond: true, want: StateFiring, moved: true, from: StateInactive, dirty: true, firedSec: 0},
			{sec: 5, kind: "eval", cond: true, want: StateFiring, firedSec: 0},
			{sec: 6, kind: "tick", want: StateFiring, firedSec: 0},
			{sec: 10, kind: "eval", cond: false, res: true, want: StateResolved, moved: true, from: StateFiring, dirty: true, firedSec: 0},
		}},
		{"pending until for has passed (by evaluation)", Timing{For: 60 * time.Second}, []op{
			{sec: 0, kind: "eval", cond: true, want: StatePending, moved: true, from: StateInactive, dirty: true, firedSec: -1},
			{sec: 59, kind: "eval", cond: true, want: StatePending, firedSec: -1},
			{sec: 60, kind: "eval", cond: true, want: StateFiring, moved: true, from: StatePending, dirty: true, firedSec: 60},
		}},
		{"pending fires at the tick once for has passed", Timing{For: 60 * time.Second}, []op{
			{sec: 0, kind: "eval", cond: true, want: StatePending, moved: true, from: StateInactive, dirty: true, firedSec: -1},
			{sec: 59, kind: "tick", want: StatePending, firedSec: -1},
			{sec: 60, kind: "tick", want: StateFiring, moved: true, from: StatePending, dirty: true, firedSec: 60},
		}},
		{"pending whose condition cleared goes inactive; it starts over", Timing{For: 60 * time.Second}, []op{
			{sec: 0, kind: "eval", cond: true, want: StatePending, moved: true, from: StateInactive, dirty: true, firedSec: -1},
			{sec: 30, kind: "eval", cond: false, res: true, want: StateInactive, moved: true, from: StatePending, dirty: true, firedSec: -1},
			{sec: 40, kind: "eval", cond: true, want: StatePending, moved: true, from: StateInactive, dirty: true, firedSec: -1},
			{sec: 99, kind: "tick", want: StatePending, firedSec: -1},
			{sec: 100, kind: "tick", want: StateFiring, moved: true, from: StatePending, dirty: true, firedSec: 100},
		}},
		{"keep_firing_for: resolves after it ran from the first resolve", Timing{KeepFiringFor: 30 * time.Second}, []op{
			{sec: 0, kind: "eval", cond: true, want: StateFiring, moved: true, from: StateInactive, dirty: true, firedSec: 0},
			{sec: 10, kind: "eval", cond: false, res: true, want: StateFiring, dirty: true, keepSet: true, firedSec: 0},
			{sec: 20, kind: "eval", cond: false, res: true, want: StateFiring, keepSet: true, firedSec: 0},
			{sec: 39, kind: "tick", want: StateFiring, keepSet: true, firedSec: 0},
			{sec: 40, kind: "tick", want: StateResolved, moved: true, from: StateFiring, dirty: true, firedSec: 0},
		}},
		{"keep_firing_for: resolves at an evaluation too", Timing{KeepFiringFor: 30 * time.Second}, []op{
			{sec: 0, kind: "eval", cond: true, want: StateFiring, moved: true, from: StateInactive, dirty: true, firedSec: 0},
			{sec: 10, kind: "eval", cond: false, res: true, want: StateFiring, dirty: true, keepSet: true, firedSec: 0},
			{sec: 40, kind: "eval", cond: false, res: true, want: StateResolved, moved: true, from: StateFiring, dirty: true, firedSec: 0},
		}},
		{"keep_firing_for: the condition again restarts it", Timing{KeepFiringFor: 30 * time.Second}, []op{
			{sec: 0, kind: "eval", cond: true, want: StateFiring, moved: true, from: StateInactive, dirty: true, firedSec: 0},
			{sec: 10, kind: "eval", cond: false, res: true, want: StateFiring, dirty: true, keepSet: true, firedSec: 0},
			{sec: 20, kind: "eval", cond: true, want: StateFiring, dirty: true, firedSec: 0},
			{sec: 45, kind: "tick", want: StateFiring, firedSec: 0},
			{sec: 50, kind: "eval", cond: false, res: true, want: StateFiring, dirty: true, keepSet: true, firedSec: 0},
			{sec: 80, kind: "tick", want: StateResolved, moved: true, from: StateFiring, dirty: true, firedSec: 0},
		}},
		{"hysteresis: between the thresholds a firing alert keeps firing", Timing{}, []op{
			{sec: 0, kind: "eval", cond: true, want: StateFiring, moved: true, from: StateInactive, dirty: true, firedSec: 0},
			{sec: 10, kind: "eval", cond: false, res: false, want: StateFiring, firedSec: 0},
			{sec: 20, kind: "tick", want: StateFiring, firedSec: 0},
			{sec: 30, kind: "eval", cond: false, res: true, want: StateResolved, moved: true, from: StateFiring, dirty: true, firedSec: 0},
		}},
		{"hysteresis clears a running keep_firing_for", Timing{KeepFiringFor: 30 * time.Second}, []op{
			{sec: 0, kind: "eval", cond: true, want: StateFiring, moved: true, from: StateInactive, dirty: true, firedSec: 0},
			{sec: 10, kind: "eval", cond: false, res: true, want: StateFiring, dirty: true, keepSet: true, firedSec: 0},
			{sec: 20, kind: "eval", cond: false, res: false, want: StateFiring, dirty: true, firedSec: 0},
			{sec: 50, kind: "tick", want: StateFiring, firedSec: 0},
		}},
		{"resolved, then firing again: a new alert", Timing{For: 10 * time.Second}, []op{
			{sec: 0, kind: "eval", cond: true, want: StatePending, moved: true, from: StateInactive, dirty: true, firedSec: -1},
			{sec: 10, kind: "tick", want: StateFiring, moved: true, from: StatePending, dirty: true, firedSec: 10},
			{sec: 20, kind: "eval", cond: false, res: true, want: StateResolved, moved: true, from: StateFiring, dirty: true, firedSec: 10},
			{sec: 21, kind: "tick", want: StateResolved, firedSec: 10},
			{sec: 30, kind: "eval", cond: true, want: StatePending, moved: true, from: StateInactive, dirty: true, firedSec: -1},
			{sec: 40, kind: "eval", cond: true, want: StateFiring, moved: true, from: StatePending, dirty: true, firedSec: 40},
		}},
		{"restored pending alert keeps its ActiveAt", Timing{For: 60 * time.Second}, []op{
			{sec: 0, kind: "eval", cond: true, want: StatePending, moved: true, from: StateInactive, dirty: true, firedSec: -1},
			{sec: 30, kind: "restore"},
			{sec: 59, kind: "tick", want: StatePending, firedSec: -1},
			{sec: 60, kind: "tick", want: StateFiring, moved: true, from: StatePending, dirty: true, firedSec: 60},
		}},
		{"restored firing alert keeps its keep_firing_for start", Timing{KeepFiringFor: 30 * time.Second}, []op{
			{sec: 0, kind: "eval", cond: true, want: StateFiring, moved: true, from: StateInactive, dirty: true, firedSec: 0},
			{sec: 10, kind: "eval", cond: false, res: true, want: StateFiring, dirty: true, keepSet: true, firedSec: 0},
			{sec: 15, kind: "restore"},
			{sec: 39, kind: "tick", want: StateFiring, keepSet: true, firedSec: 0},
			{sec: 40, kind: "tick", want: StateResolved, moved: true, from: StateFiring, dirty: true, firedSec: 0},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { run(t, tc.tm, tc.ops) })
	}
}

func TestResolveAndExpired(t *testing.T) {
	a := &Alert{}
	a.Activate(at(0), Timing{})
	ch := a.Resolve(at(10))
	if !ch.Moved || ch.From != StateFiring || !ch.Dirty || a.State != StateResolved || !a.ResolvedAt.Equal(at(10)) {
		t.Fatalf("Resolve: %+v %+v", ch, a)
	}
	for _, tc := range []struct {
		sec  int
		want bool
	}{{10, false}, {70, false}, {71, true}} {
		if got := a.Expired(at(tc.sec), time.Minute); got != tc.want {
			t.Errorf("Expired at %ds = %v", tc.sec, got)
		}
	}
	a.Activate(at(80), Timing{For: time.Minute})
	if a.Expired(at(1000), time.Minute) || !a.ResolvedAt.IsZero() {
		t.Errorf("re-activated alert: %+v", a)
	}
}

func TestToNotify(t *testing.T) {
	labels := map[string]string{"alertname": "r"}
	tests := []struct {
		name     string
		a        Alert
		starts   time.Time
		ends     time.Time
		notified bool
	}{
		{"firing starts when it fired", Alert{State: StateFiring, Labels: labels, ActiveAt: at(0), FiredAt: at(60)}, at(60), time.Time{}, true},
		{"resolved ends when it resolved", Alert{State: StateResolved, Labels: labels, ActiveAt: at(0), FiredAt: at(60), ResolvedAt: at(90)}, at(60), at(90), true},
		{"no FiredAt (restored): starts when it became active", Alert{State: StateFiring, Labels: labels, ActiveAt: at(5)}, at(5), time.Time{}, true},
		{"pending is not notified", Alert{State: StatePending, Labels: labels, ActiveAt: at(0)}, at(0), time.Time{}, false},
		{"inactive is not notified", Alert{State: StateInactive, Labels: labels, ActiveAt: at(0)}, at(0), time.Time{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.a.Values = map[string]float64{"bpm": 150}
			tc.a.Annotations = map[string]string{"summary": "high"}
			n := tc.a.ToNotify()
			if !n.StartsAt.Equal(tc.starts) || !n.EndsAt.Equal(tc.ends) || n.Labels["alertname"] != "r" || n.Values["bpm"] != 150 || n.Annotations["summary"] != "high" {
				t.Errorf("ToNotify = %+v", n)
			}
			got := Notifications([]Transition{{From: StateInactive, Alert: tc.a}})
			if (len(got) == 1) != tc.notified {
				t.Errorf("Notifications = %+v, want notified %v", got, tc.notified)
			}
		})
	}
}

func TestKeyID(t *testing.T) {
	a := Alert{Rule: "r", Subject: "s", Device: "d"}
	id := a.Key().ID()
	if len(id) != 34 || id[:2] != "a." {
		t.Errorf("ID = %q", id)
	}
	for _, k := range []Key{{"r", "s", "e"}, {"r", "sd", ""}, {"rs", "", "d"}} {
		if k.ID() == id {
			t.Errorf("%+v has the ID of %+v", k, a.Key())
		}
	}
}

func TestSortNewest(t *testing.T) {
	as := []Alert{{Rule: "a", ActiveAt: at(1)}, {Rule: "b", ActiveAt: at(3)}, {Rule: "c", ActiveAt: at(2)}}
	SortNewest(as)
	if as[0].Rule != "b" || as[1].Rule != "c" || as[2].Rule != "a" {
		t.Errorf("SortNewest = %v %v %v", as[0].Rule, as[1].Rule, as[2].Rule)
	}
}
