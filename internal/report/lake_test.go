package report

import (
	"testing"
	"time"
)

func TestHeartRateSQL(t *testing.T) {
	lo := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	hi := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		subject string
		lo, hi  time.Time
		want    string
	}{
		{"patient-17", time.Time{}, time.Time{}, "SELECT time, bpm FROM trusted.heart_rate WHERE subject = 'patient-17' ORDER BY time"},
		{"o'brien", lo, time.Time{}, "SELECT time, bpm FROM trusted.heart_rate WHERE subject = 'o''brien' AND time >= TIMESTAMP '2026-11-01 00:00:00' ORDER BY time"},
		{"p", lo, hi, "SELECT time, bpm FROM trusted.heart_rate WHERE subject = 'p' AND time >= TIMESTAMP '2026-11-01 00:00:00' AND time < TIMESTAMP '2026-12-01 00:00:00' ORDER BY time"},
	}
	for _, tt := range tests {
		if got := heartRateSQL(tt.subject, tt.lo, tt.hi); got != tt.want {
			t.Errorf("heartRateSQL(%q):\n got %s\nwant %s", tt.subject, got, tt.want)
		}
	}
}
