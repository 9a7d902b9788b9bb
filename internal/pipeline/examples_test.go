package pipeline

import (
	"strings"
	"testing"
)

// TestExamplesLoad checks the shipped example folders parse and order as documented.
func TestExamplesLoad(t *testing.T) {
	p, err := LoadDir("../../examples/stedi/pipeline")
	if err != nil {
		t.Fatal(err)
	}
	want := "trusted.customer_trusted trusted.accelerometer_trusted curated.customer_curated trusted.step_trainer_trusted curated.machine_learning_curated"
	if got := strings.Join(p.Order, " "); got != want {
		t.Fatalf("stedi order:\n got %s\nwant %s", got, want)
	}
	if got := strings.Join(p.Models["trusted.step_trainer_trusted"].Reads, " "); got != "curated.customer_curated landing.step_trainer" {
		t.Fatalf("step_trainer_trusted reads %s", got)
	}
	if _, err := LoadDir("../../examples/daily-health/pipeline"); err != nil {
		t.Fatal(err)
	}
}
