package ghfake

import (
	"strings"
	"testing"
	"time"
)

func TestParseFilter(t *testing.T) {
	const f = "heart_rate.sample_time.physical_time"
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		filter  string
		onlyGE  bool
		lo, hi  time.Time
		wantErr bool
	}{
		{"", false, time.Time{}, time.Time{}, false},
		{f + ` >= "2026-11-01T00:00:00Z"`, false, t0, time.Time{}, false},
		{f + ` >= "2026-11-01T00:00:00Z" AND ` + f + ` < "2026-11-02T00:00:00Z"`, false, t0, t0.AddDate(0, 0, 1), false},
		{f + ` < "2026-11-02T00:00:00Z"`, true, time.Time{}, time.Time{}, true},
		{"steps.interval.start_time >= \"2026-11-01T00:00:00Z\"", false, time.Time{}, time.Time{}, true},
		{f + ` > "2026-11-01T00:00:00Z"`, false, time.Time{}, time.Time{}, true},
		{f + ` >= "2026-11-01"`, false, time.Time{}, time.Time{}, true},
		{f + ` >= "2026-11-01T00:00:00Z" OR ` + f + ` < "2026-11-02T00:00:00Z"`, false, time.Time{}, time.Time{}, true},
	} {
		lo, hi, err := parseFilter(tc.filter, f, tc.onlyGE)
		if (err != nil) != tc.wantErr || (err == nil && (!lo.Equal(tc.lo) || !hi.Equal(tc.hi))) {
			t.Errorf("parseFilter(%q) = %s, %s, %v", tc.filter, lo, hi, err)
		}
	}
}

// FuzzParseFilter: the fake's filter parser never panics, and the bounds it reads are the
// bounds of the canonical filter written from them.
func FuzzParseFilter(f *testing.F) {
	f.Add(`heart_rate.sample_time.physical_time >= "2026-11-01T00:00:00Z" AND heart_rate.sample_time.physical_time < "2026-11-02T00:00:00Z"`)
	f.Add(`heart_rate.sample_time.physical_time >= "2026-11-01T00:00:00.5+01:00"`)
	const field = "heart_rate.sample_time.physical_time"
	f.Fuzz(func(t *testing.T, filter string) {
		lo, hi, err := parseFilter(filter, field, false)
		if err != nil {
			return
		}
		var parts []string
		if !lo.IsZero() {
			parts = append(parts, field+` >= "`+lo.Format(time.RFC3339Nano)+`"`)
		}
		if !hi.IsZero() {
			parts = append(parts, field+` < "`+hi.Format(time.RFC3339Nano)+`"`)
		}
		lo2, hi2, err := parseFilter(strings.Join(parts, " AND "), field, false)
		if err != nil || !lo2.Equal(lo) || !hi2.Equal(hi) {
			t.Fatalf("%q read as [%s, %s); its canonical form reads as [%s, %s), %v", filter, lo, hi, lo2, hi2, err)
		}
	})
}
