package config

import (
	"errors"
	"strings"
	"testing"
)

// Declared kinds may name a LOINC code and UCUM unit; mistakes are reported at the kind.
func TestKindFHIRCode(t *testing.T) {
	const weight = "kinds:\n  - name: body_weight\n    values: [{name: kg, unit: kg, min: 0.5, max: 700}]\n"
	tests := []struct {
		name, extra string
		path, msg   string // "" when valid
	}{
		{"valid", "    loinc: 29463-7\n    ucum: kg\n", "", ""},
		{"no ucum", "    loinc: 29463-7\n", "kinds[0].ucum", "UCUM"},
		{"ucum alone", "    ucum: kg\n", "kinds[0].ucum", "needs loinc"},
		{"not a loinc code", "    loinc: heart\n    ucum: kg\n", "kinds[0].loinc", "LOINC code"},
		{"a built-in code", "    loinc: 8867-4\n    ucum: kg\n", "kinds", "already maps kind heart_rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(write(t, weight+tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			if tt.path == "" {
				if err != nil || len(c.FHIRCodes()) != 1 || c.FHIRCodes()[0].LOINC != "29463-7" {
					t.Fatalf("valid code: %v, %v", err, c.FHIRCodes())
				}
				return
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("err = %v", err)
			}
			for _, p := range ps {
				if p.Path == tt.path && strings.Contains(p.Msg, tt.msg) {
					return
				}
			}
			t.Fatalf("want %s: …%s…, got %v", tt.path, tt.msg, ps)
		})
	}
	c, _ := Load(write(t, "kinds:\n  - name: two\n    loinc: 1234-5\n    ucum: kg\n    values: [{name: a}, {name: b}]\n"))
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "exactly one number value") {
		t.Fatalf("two values with a LOINC code: %v", err)
	}
}
