package yamlconf

import (
	"testing"
	"time"
)

func TestParseDurationDays(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"1.5d", 36 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{" 7d ", 7 * 24 * time.Hour, true},
		{"15m", 15 * time.Minute, true},
		{"d", 0, false},
		{"-1d", 0, false},
		{"1dx", 0, false},
		{"xd", 0, false},
		{"200000d", 0, false},
	} {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseDuration(%q) = %s, %v; want %s, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30d", "1.5d", "1d12h", "15m", "d", "-1d", "1e3d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseDuration(s); err == nil && d < 0 && len(s) > 0 && s[0] != '-' && s[0] != ' ' {
			t.Fatalf("parseDuration(%q) = %s without a minus sign", s, d)
		}
	})
}
