package reading

import (
	"testing"
	"time"
)

// TestIdentityStable: identities never change between versions, or a reading sent again
// after an upgrade would be stored twice in the stream.
func TestIdentityStable(t *testing.T) {
	at := time.Date(2026, 3, 14, 10, 12, 33, 250000000, time.UTC)
	long := string(make([]byte, 300)) // past the stack buffer
	for _, tc := range []struct {
		name string
		r    Reading
		want string
	}{
		{"key", Reading{Subject: "alice", Device: "watch-1", Kind: "heart_rate", Time: at}, "9ca6d6bcbbc7aa473cb3ce5ad984d95f"},
		{"client id", Reading{ID: "client-key-7", Subject: "alice", Device: "watch-1", Kind: "heart_rate", Time: at}, "6a3195da18edba00e68d62ec4352b5d7"},
	} {
		if got := tc.r.Identity().String(); got != tc.want {
			t.Errorf("%s: identity %s, want %s", tc.name, got, tc.want)
		}
	}
	a, b := Reading{ID: long + "a"}, Reading{ID: long + "b"}
	if a.Identity() == b.Identity() {
		t.Error("long ids differing at the end have one identity")
	}
}

// TestAppendTime: the digit-by-digit writer of reading times writes what AppendFormat
// writes with the same layout.
func TestAppendTime(t *testing.T) {
	base := time.Date(2026, 3, 14, 10, 12, 33, 0, time.UTC)
	times := []time.Time{
		base,
		base.Add(250 * time.Millisecond),
		base.Add(123456 * time.Microsecond),
		base.Add(100 * time.Microsecond),
		base.Add(999 * time.Nanosecond), // below a microsecond: not written
		base.Add(time.Microsecond),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		base.In(time.FixedZone("", -4*3600)),
	}
	for i := range 2000 {
		times = append(times, base.Add(time.Duration(i)*7919*time.Microsecond*1013))
	}
	for _, at := range times {
		if got, want := string(appendTime(nil, at)), at.Format(timeLayout); got != want {
			t.Errorf("appendTime(%v) = %s, want %s", at, got, want)
		}
	}
}
