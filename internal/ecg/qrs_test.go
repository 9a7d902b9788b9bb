package ecg

import (
	"slices"
	"testing"

	"github.com/pulselake/pulselake/internal/ecg/wfdb"
)

func TestQRSAllDS1(t *testing.T) {
	dir := needData(t)
	names, err := wfdb.ListRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	per, gross, err := EvaluateQRS(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range per {
		t.Logf("%s TP %5d FN %4d FP %4d Se %.4f +P %.4f", r.Record, r.TP, r.FN, r.FP, r.Sensitivity(), r.PPV())
	}
	t.Logf("gross TP %d FN %d FP %d Se %.4f +P %.4f", gross.TP, gross.FN, gross.FP, gross.Sensitivity(), gross.PPV())
	if gross.Sensitivity() < 0.995 || gross.PPV() < 0.995 {
		t.Errorf("gross sensitivity %.4f, positive predictivity %.4f; want both >= 0.995", gross.Sensitivity(), gross.PPV())
	}
	for _, r := range per {
		if r.Record == "100" || r.Record == "101" || r.Record == "118" || r.Record == "230" {
			if r.Sensitivity() < 0.998 || r.PPV() < 0.997 {
				t.Errorf("record %s: Se %.4f +P %.4f on an easy record", r.Record, r.Sensitivity(), r.PPV())
			}
		}
	}
}

// TestQRSDelay measures how long after an R peak the detector reports it, on record 208
// (frequent PVCs), and checks the documented bound.
func TestQRSDelay(t *testing.T) {
	dir := needData(t)
	rec, err := wfdb.ReadRecord(dir, "208", "")
	if err != nil {
		t.Fatal(err)
	}
	x := physical(rec, 0)
	d := NewQRSDetector(360)
	var out []int64
	var delays []int64
	for i, v := range x {
		out = d.Push(v, out[:0])
		for _, r := range out {
			delays = append(delays, int64(i)-r)
		}
	}
	slices.Sort(delays)
	p := func(q float64) float64 { return float64(delays[int(q*float64(len(delays)-1))]) / 360 }
	t.Logf("report delay over %d beats: median %.3f s, p99 %.3f s, max %.3f s (bound %.3f s)", len(delays), p(0.5), p(0.99), p(1), float64(d.Delay())/360)
	if p(1) > float64(d.Delay())/360 {
		t.Errorf("max delay %.3f s above the documented bound %.3f s", p(1), float64(d.Delay())/360)
	}
}
