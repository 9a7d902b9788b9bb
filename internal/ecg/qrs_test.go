package ecg

import (
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
