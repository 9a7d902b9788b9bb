package detectors

import (
	"context"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/anomaly"
)

// The streaming detectors forget the subject's alerts and baselines, and keep the others'.
func TestAnomalyRunnerEraseSubject(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r, c := newTestRunner(t, []anomaly.DetectorSpec{{Name: "hr-shift", Kind: "heart_rate", Value: "bpm", Method: "timeshift",
		Params: anomaly.Params{Set: &anomaly.TimeShiftParams{Shift: anomaly.Duration(2 * time.Minute), Step: anomaly.Duration(time.Minute)}}, Baseline: "device"}}, &now)
	ctx := context.Background()
	t0 := now.Add(-10 * time.Minute)
	for _, subj := range []string{"a", "b"} {
		for i, v := range []float64{70, 70, 70, 200} {
			r.Observe(ctx, hr(subj, "w1", t0.Add(time.Duration(i)*time.Minute), v))
		}
	}
	r.Observe(ctx, hr("a", "w2", t0, 70))
	if len(r.Alerts("")) != 2 || len(c.transitions) != 2 {
		t.Fatalf("fixture: alerts %+v", r.Alerts(""))
	}
	before, after, labels, err := r.EraseSubject(ctx, "a", false)
	if err != nil || before != 3 || after != 0 || len(labels) != 1 || labels[0]["subject"] != "a" { // 1 alert, 2 baselines
		t.Fatalf("erase: %d %d %v %v", before, after, labels, err)
	}
	if as := r.Alerts(""); len(as) != 1 || as[0].Subject != "b" {
		t.Errorf("alerts after erase: %+v", as)
	}
	if n := r.dets[0].lru.Len(); n != 1 {
		t.Errorf("%d baselines left, want b's", n)
	}
	now = now.Add(time.Hour)
	r.Tick(ctx)
	for _, tr := range c.transitions[2:] {
		if tr.Alert.Subject == "a" {
			t.Errorf("a resolved notice about the erased subject: %+v", tr)
		}
	}
}
