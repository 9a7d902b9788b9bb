package lake

import (
	"math"
	"testing"
)

// TestFlushBudget: the writer holds flush_bytes of envelopes unless the Go memory limit is
// too low for that many, and never less than minFlushBytes.
func TestFlushBudget(t *testing.T) {
	for _, tc := range []struct {
		name              string
		flushBytes, limit int64
		want              int64
	}{
		{"the default, at the default limit", DefaultFlushBytes, 768 << 20, 8 << 20},
		{"no limit", 64 << 20, math.MaxInt64, 64 << 20},
		{"the default limit allows 64 MiB", 64 << 20, 768 << 20, 64 << 20},
		{"low limit", 64 << 20, 192 << 20, 16 << 20},
		{"very low limit", 64 << 20, 16 << 20, minFlushBytes},
		{"flush_bytes below the budget", 8 << 20, 1 << 30, 8 << 20},
		{"flush_bytes below the floor", 1 << 20, 64 << 20, 1 << 20},
	} {
		if got := flushBudget(tc.flushBytes, tc.limit); got != tc.want {
			t.Errorf("%s: flushBudget(%d, %d) = %d, want %d", tc.name, tc.flushBytes, tc.limit, got, tc.want)
		}
	}
}
