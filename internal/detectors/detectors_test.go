package detectors

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/anomaly"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/reading"
)

type anomalyCapture struct {
	rows        [][]any   // ops.anomalies
	events      []Anomaly // live feed
	transitions []alert.Transition
	notices     []notify.Alert
}

func newTestRunner(t *testing.T, specs []anomaly.DetectorSpec, now *time.Time) (*Runner, *anomalyCapture) {
	t.Helper()
	ds, errs := anomaly.CompileDetectors(specs, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c := &anomalyCapture{}
	r, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), Options{Detectors: ds, Now: func() time.Time { return *now }, Out: Outputs{
		Row: func(table string, cols []lake.Column, row []any) {
			if table != AnomaliesTable || len(cols) != len(row) {
				t.Errorf("row for %s: %d columns, %d values", table, len(cols), len(row))
			}
			c.rows = append(c.rows, row)
		},
		Event: func(e Anomaly) { c.events = append(c.events, e) },
		Alerts: alert.Outputs{
			Notify: func(_ context.Context, out []notify.Alert) error { c.notices = append(c.notices, out...); return nil },
			Record: func(_ context.Context, ts []alert.Transition) error {
				c.transitions = append(c.transitions, ts...)
				return nil
			},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, c
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func hr(subject, device string, at time.Time, bpm float64) *reading.Reading {
	return &reading.Reading{Subject: subject, Device: device, Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": bpm}}
}

// TestAnomalyRunnerAlertLifecycle: a timeshift detector (shift 2 min, threshold 0.3) flags a
// jump; repeated anomalies keep one firing alert, which resolves resolve_after after the last;
// old readings are recorded but raise no alert; a reading not after the baseline's last one is
// not scored.
func TestAnomalyRunnerAlertLifecycle(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r, c := newTestRunner(t, []anomaly.DetectorSpec{{Name: "hr-shift", Kind: "heart_rate", Value: "bpm", Method: "timeshift",
		Params: anomaly.Params{Set: &anomaly.TimeShiftParams{Shift: anomaly.Duration(2 * time.Minute), Step: anomaly.Duration(time.Minute)}}, Severity: "critical", Labels: map[string]string{"team": "cardio"}, ResolveAfter: anomaly.Duration(30 * time.Second)}}, &now)
	ctx := context.Background()
	t0 := now.Add(-10 * time.Minute)
	for i, v := range []float64{70, 70, 70, 70, 100, 100} { // minute 4: |100-70|/100 = 0.3, not > 0.3; minute 5 too
		r.Observe(ctx, hr("s1", "w1", t0.Add(time.Duration(i)*time.Minute), v))
	}
	if len(c.rows) != 0 {
		t.Fatalf("flagged %v", c.rows)
	}
	r.Observe(ctx, hr("s1", "w1", t0.Add(6*time.Minute), 200)) // vs 100 at minute 4: 0.5
	r.Observe(ctx, hr("s1", "w1", t0.Add(7*time.Minute), 210)) // vs 100 at minute 5: 0.52
	if len(c.rows) != 2 || len(c.events) != 2 || c.events[0].Values["bpm"] != 200 || c.events[0].Score != (0.5/0.3)/(1+0.5/0.3) ||
		c.rows[0][1] != "hr-shift" || c.rows[0][6] != 200.0 || c.rows[0][8] != c.events[0].Score || c.rows[0][9] != nil {
		t.Fatalf("rows %+v events %+v", c.rows, c.events)
	}
	if len(c.transitions) != 1 || c.transitions[0].From != alert.StateInactive || c.transitions[0].Alert.State != alert.StateFiring {
		t.Fatalf("transitions %+v", c.transitions)
	}
	n := c.notices[0]
	if n.Labels["alertname"] != "hr-shift" || n.Labels["subject"] != "s1" || n.Labels["device"] != "w1" || n.Labels["severity"] != "critical" ||
		n.Labels["team"] != "cardio" || n.Labels["detector"] != "timeshift" || !n.EndsAt.IsZero() || n.Values["bpm"] != 200 {
		t.Errorf("firing notice %+v", n)
	}
	// GET /v1/alerts lists the firing alert (with the latest values), and only as firing.
	if as := r.Alerts(""); len(as) != 1 || as[0].Rule != "hr-shift" || as[0].Subject != "s1" || as[0].State != alert.StateFiring || as[0].Values["bpm"] != 210 {
		t.Errorf("Alerts(\"\") = %+v", as)
	}
	if as := r.Alerts(alert.StateFiring); len(as) != 1 {
		t.Errorf("Alerts(firing) = %+v", as)
	}
	if as := r.Alerts(alert.StatePending); len(as) != 0 {
		t.Errorf("Alerts(pending) = %+v", as)
	}
	// Same time again: not scored.
	r.Observe(ctx, hr("s1", "w1", t0.Add(7*time.Minute), 500))
	if len(c.rows) != 2 || counterValue(r.mOrder.WithLabelValues("hr-shift")) != 1 {
		t.Errorf("out-of-order reading scored: %+v", c.rows)
	}
	now = now.Add(29 * time.Second)
	r.Tick(ctx)
	if len(c.transitions) != 1 {
		t.Fatal("resolved before resolve_after")
	}
	now = now.Add(time.Second)
	r.Tick(ctx)
	if last := c.notices[len(c.notices)-1]; len(c.transitions) != 2 || c.transitions[1].From != alert.StateFiring ||
		c.transitions[1].Alert.State != alert.StateResolved || !last.EndsAt.Equal(now) || !last.StartsAt.Equal(c.notices[0].StartsAt) {
		t.Fatalf("transitions %+v notices %+v", c.transitions, c.notices)
	}
	// Resolved alerts are listed as resolved (like the rules'), then forgotten.
	if as := r.Alerts(alert.StateResolved); len(as) != 1 || as[0].Source != alert.SourceDetector || !as[0].ResolvedAt.Equal(now) {
		t.Errorf("after resolution Alerts(resolved) = %+v", as)
	}
	if as := r.Alerts(alert.StateFiring); len(as) != 0 {
		t.Errorf("after resolution Alerts(firing) = %+v", as)
	}
	// A new anomaly after resolution starts a new alert.
	r.Observe(ctx, hr("s1", "w1", t0.Add(9*time.Minute), 500)) // vs 210 at minute 7: 0.58
	if len(c.transitions) != 3 || c.transitions[2].From != alert.StateInactive || c.transitions[2].Alert.State != alert.StateFiring ||
		!c.transitions[2].Alert.ActiveAt.Equal(now) || !c.transitions[2].Alert.ResolvedAt.IsZero() {
		t.Fatalf("re-firing: transitions %+v", c.transitions)
	}
	if as := r.Alerts(""); len(as) != 1 || as[0].State != alert.StateFiring {
		t.Errorf("after re-firing Alerts = %+v", as)
	}
	// It resolves (one notice, though a re-send is due too), and resolved alerts are
	// re-sent to the notifier every minute like firing ones.
	sent := len(c.notices)
	now = now.Add(time.Minute)
	r.Tick(ctx)
	if len(c.transitions) != 4 || len(c.notices) != sent+1 || !c.notices[sent].EndsAt.Equal(now) {
		t.Fatalf("second resolution: transitions %d notices %+v", len(c.transitions), c.notices[sent:])
	}
	now = now.Add(time.Minute)
	r.Tick(ctx)
	if len(c.notices) != sent+2 || c.notices[sent+1].Labels["alertname"] != "hr-shift" || !c.notices[sent+1].EndsAt.Equal(now.Add(-time.Minute)) {
		t.Errorf("re-sent notices %+v", c.notices[sent:])
	}
	// A reading more than an hour old is recorded but raises no alert.
	old := now.Add(-2 * time.Hour)
	r.Observe(ctx, hr("s2", "w2", old, 70))
	r.Observe(ctx, hr("s2", "w2", old.Add(2*time.Minute), 200))
	if len(c.rows) != 4 || len(c.transitions) != 4 {
		t.Errorf("old reading: rows %d transitions %d", len(c.rows), len(c.transitions))
	}
}

// TestAnomalyRunnerBaselines: baselines per subject (or device), at most max_subjects (least
// recently seen out), idle ones dropped; Isolation Forest baselines stop their refit goroutine.
func TestAnomalyRunnerBaselines(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r, _ := newTestRunner(t, []anomaly.DetectorSpec{
		{Name: "cv", Kind: "heart_rate", Value: "bpm", Method: "cv", MaxSubjects: 2, IdleAfter: anomaly.Duration(10 * time.Minute)},
		{Name: "if", Kind: "heart_rate", Value: "bpm", Method: "iforest", Baseline: "device", Params: anomaly.Params{Set: &anomaly.IForestParams{Window: "64", MinFit: new(32)}}},
	}, &now)
	ctx := context.Background()
	cvs, ifs := r.dets[0], r.dets[1]
	for i, s := range []string{"a", "b", "a", "c"} { // c evicts b, the least recently seen
		r.Observe(ctx, hr(s, "d"+s, now.Add(time.Duration(i)*time.Minute), 70))
		now = now.Add(time.Minute)
	}
	if cvs.lru.Len() != 2 || cvs.base["b"] != nil || cvs.base["a"] == nil || counterValue(r.mEvicted.WithLabelValues("cv")) != 1 {
		t.Errorf("cv baselines %v", cvs.base)
	}
	r.Observe(ctx, hr("a", "other", now.Add(time.Hour), 70))
	if ifs.lru.Len() != 4 || ifs.base["a\x00da"] == nil || ifs.base["a\x00other"] == nil {
		t.Errorf("iforest per-device baselines %d", ifs.lru.Len())
	}
	// Train one device's forest in the background and see it score.
	at := now.Add(2 * time.Hour)
	for i := range 200 {
		at = at.Add(time.Minute)
		r.Observe(ctx, hr("a", "da", at, 60+float64(i%10)))
	}
	b := ifs.base["a\x00da"].Value.(*baseline).det.(*anomaly.StreamIForest)
	deadline := time.Now().Add(10 * time.Second)
	for !b.Ready() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !b.Ready() {
		t.Fatal("forest not fitted")
	}
	// Idle: c and a were seen 1 and 0 minutes before the last cv reading; 11 minutes later both
	// are idle for the cv detector (idle_after 10m).
	now = now.Add(11 * time.Minute)
	r.Tick(ctx)
	if cvs.lru.Len() != 0 || ifs.lru.Len() != 4 {
		t.Errorf("after idle sweep: cv %d iforest %d", cvs.lru.Len(), ifs.lru.Len())
	}
}
