package ingest

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

func id(n int) reading.ID {
	var x reading.ID
	x[0], x[1], x[2] = byte(n), byte(n>>8), byte(n>>16)
	return x
}

func TestWindowDuplicates(t *testing.T) {
	w := newWindow(time.Minute, 1000)
	c, dup := w.claim([]reading.ID{id(1), id(2), id(1)})
	if dup[0] || dup[1] || !dup[2] {
		t.Fatalf("first claim dup = %v, want only the repeat within the batch", dup)
	}
	w.settle(c, true)
	c, dup = w.claim([]reading.ID{id(2), id(3)})
	if !dup[0] || dup[1] {
		t.Fatalf("second claim dup = %v", dup)
	}
	w.settle(c, false) // id 3 failed to store: a retry must be accepted
	_, dup = w.claim([]reading.ID{id(3)})
	if dup[0] {
		t.Fatal("a reading whose store failed was reported as duplicate")
	}
}

// TestWindowSharedPrefix: two identities that share their first 8 bytes are never taken
// for each other: the later one replaces the earlier in the window (which then forgets the
// earlier early) and each is a duplicate only of itself.
func TestWindowSharedPrefix(t *testing.T) {
	w := newWindow(time.Minute, 1000)
	a, b := id(7), id(7)
	b[15] = 1
	c, dup := w.claim([]reading.ID{a, b})
	if dup[0] || dup[1] {
		t.Fatalf("claim of two identities sharing 8 bytes: dup = %v, want neither", dup)
	}
	w.settle(c, true)
	c, dup = w.claim([]reading.ID{a, b})
	if dup[0] || !dup[1] {
		t.Fatalf("again: dup = %v, want the later one held and the earlier forgotten", dup)
	}
	w.settle(c, true)
}

func TestWindowWaitsForPendingOutcome(t *testing.T) {
	w := newWindow(time.Minute, 1000)
	first, _ := w.claim([]reading.ID{id(9)})
	var got []bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, got = w.claim([]reading.ID{id(9)})
	}()
	w.settle(first, false) // the first attempt failed; the concurrent one must now own it
	wg.Wait()
	if got[0] {
		t.Fatal("concurrent claim answered duplicate for a reading that was never stored")
	}
}

func TestWindowBoundedMemory(t *testing.T) {
	w := newWindow(time.Minute, 100)
	for i := 0; i < 1000; i++ {
		c, _ := w.claim([]reading.ID{id(i)})
		w.settle(c, true)
	}
	if n := w.size(); n > 100 {
		t.Fatalf("window holds %d identities, want at most 100", n)
	}
	// Recent ones are still known.
	if _, dup := w.claim([]reading.ID{id(999)}); !dup[0] {
		t.Error("most recent identity forgotten")
	}
}

func TestWindowDisabled(t *testing.T) {
	w := newWindow(0, 0)
	c, _ := w.claim([]reading.ID{id(1)})
	w.settle(c, true)
	if _, dup := w.claim([]reading.ID{id(1)}); dup[0] {
		t.Error("disabled window reported a duplicate")
	}
}

// TestWindowExpiresAndRemembers: identities older than the window are forgotten, and past
// many buckets' turnover by count the most recent ones are the ones kept.
func TestWindowExpiresAndRemembers(t *testing.T) {
	w := newWindow(time.Minute, 1_000_000)
	now := time.Now()
	w.rememberAll([]reading.ID{id(1), id(2), id(3)}, now.Add(-5*time.Minute))
	w.rememberAll([]reading.ID{id(100)}, now)
	if n := w.size(); n != 1 {
		t.Fatalf("after the window passed: %d identities, want 1", n)
	}
	if _, dup := w.claim([]reading.ID{id(1), id(100)}); dup[0] || !dup[1] {
		t.Fatalf("dup = %v, want the expired one new and the recent one a duplicate", dup)
	}

	// 300 buckets by count: only the most recent stay.
	w = newWindow(time.Hour, 120) // a bucket per 10 identities
	for i := range 3000 {
		w.remember(id(i), now)
	}
	if n := w.size(); n > 120 || n < 110 {
		t.Fatalf("window holds %d identities, want 110..120", n)
	}
	for _, tc := range []struct {
		n    int
		want bool
	}{{2999, true}, {2890, true}, {2800, false}, {5, false}} {
		if got := w.storedLocked(id(tc.n)); got != tc.want {
			t.Errorf("identity %d stored = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// BenchmarkWindowClaim claims and stores batches of 5,000 new identities in a full window
// of 2,000,000 (an import's steady state).
func BenchmarkWindowClaim(b *testing.B) {
	w := newWindow(time.Hour, 2_000_000)
	next := 0
	batch := func() []reading.ID {
		ids := make([]reading.ID, 5000)
		for i := range ids {
			ids[i] = reading.ID{byte(next), byte(next >> 8), byte(next >> 16), byte(next >> 24), 1, 2, 3, byte(next * 7)}
			next++
		}
		return ids
	}
	for range 2_000_000 / 5000 {
		c, _ := w.claim(batch())
		w.settle(c, true)
	}
	b.ResetTimer()
	for range b.N {
		ids := batch()
		c, _ := w.claim(ids)
		w.settle(c, true)
	}
	b.ReportMetric(float64(5000*b.N)/b.Elapsed().Seconds(), "ids/s")
}

// TestWindowDefaultMemory: the default window is bounded in identities and bytes. Filled
// beyond its bound, it holds DedupMaxEntries identities at about 50 bytes each (the map of
// 16-byte identities and its growth slack); serve's window once took 90 MB.
func TestWindowDefaultMemory(t *testing.T) {
	var o Options
	o.defaults()
	if o.DedupMaxEntries != 500_000 {
		t.Fatalf("default DedupMaxEntries = %d, want 500,000", o.DedupMaxEntries)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	w := newWindow(o.DedupWindow, o.DedupMaxEntries)
	ids := make([]reading.ID, 5000)
	for n := 0; n < 2*o.DedupMaxEntries; {
		for i := range ids {
			ids[i] = reading.ID{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24), 9}
			n++
		}
		c, _ := w.claim(ids)
		w.settle(c, true)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := w.size(); n > o.DedupMaxEntries {
		t.Errorf("window holds %d identities, above its bound of %d", n, o.DedupMaxEntries)
	}
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("a full default window: %d identities, %.1f MB", w.size(), float64(grew)/1e6)
	if grew > 32<<20 {
		t.Errorf("a full default window takes %d MB, want at most 32", grew>>20)
	}
	runtime.KeepAlive(w)
}
