package rules

import (
	"strings"
	"testing"
)

func TestDefaultRulesTestFile(t *testing.T) {
	var out strings.Builder
	failures, err := RunTestFile("testdata/default_rules_test.yaml", nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	if failures != 0 {
		t.Fatalf("%d failing cases:\n%s", failures, out.String())
	}
}

func TestRuleTestFileReportsFailures(t *testing.T) {
	var out strings.Builder
	failures, err := RunTestFile("testdata/failing_test.yaml", nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	if failures != 1 || !strings.Contains(out.String(), "missing firing alert for p1/bp-9") ||
		!strings.Contains(out.String(), "unexpected firing alert crisis for p1/bp-1") {
		t.Fatalf("failures=%d\n%s", failures, out.String())
	}
}
