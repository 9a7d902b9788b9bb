package stedi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func readLines[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestGenerateShapeAndDeterminism(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	ca, err := Generate(a, Options{Customers: 500, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := Generate(b, Options{Customers: 500, Seed: 7})
	if ca != cb {
		t.Fatalf("counts differ: %+v %+v", ca, cb)
	}
	for _, f := range []string{CustomerFile, StepTrainerFile, AccelerometerFile} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if !bytes.Equal(x, y) {
			t.Fatalf("%s differs between runs with the same seed", f)
		}
	}
	cust := readLines[Customer](t, filepath.Join(a, CustomerFile))
	steps := readLines[StepTrainer](t, filepath.Join(a, StepTrainerFile))
	acc := readLines[Accelerometer](t, filepath.Join(a, AccelerometerFile))
	if len(cust) != ca.Customers || len(steps) != ca.StepTrainer || len(acc) != ca.Accelerometer {
		t.Fatalf("line counts %d %d %d vs %+v", len(cust), len(steps), len(acc), ca)
	}
	emails, serials, consented := map[string]bool{}, map[string]int{}, 0
	for _, c := range cust {
		if emails[c.Email] {
			continue
		}
		emails[c.Email] = true
		serials[c.SerialNumber]++
		if c.ShareWithResearchAsOfDate != nil {
			consented++
		}
	}
	if len(emails) != 500 || len(cust) == 500 {
		t.Fatalf("%d distinct customers in %d lines; want 500 with some repeated", len(emails), len(cust))
	}
	if consented < 200 || consented > 300 {
		t.Fatalf("%d of 500 consented; want about half", consented)
	}
	if len(serials) > 60 {
		t.Fatalf("%d serial numbers for 500 customers; want the fulfilment defect (few shared serials)", len(serials))
	}
	stepAt := map[int64]bool{}
	for _, s := range steps {
		if stepAt[s.SensorReadingTime] {
			t.Fatal("two step-trainer readings at one time")
		}
		stepAt[s.SensorReadingTime] = true
	}
	for _, r := range acc {
		if !stepAt[r.Timestamp] || !emails[r.User] {
			t.Fatalf("accelerometer reading %+v has no step-trainer reading or customer", r)
		}
	}
}
