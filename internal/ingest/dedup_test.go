package ingest

import (
	"encoding/binary"
	"math/rand/v2"
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

// TestWindowSharedPrefix: identities that share their first (or last) 8 bytes are held
// side by side, and each is a duplicate only of itself.
func TestWindowSharedPrefix(t *testing.T) {
	w := newWindow(time.Minute, 1000)
	a, b, c := id(7), id(7), id(7)
	b[15] = 1
	c[7] = 1
	cl, dup := w.claim([]reading.ID{a, b})
	if dup[0] || dup[1] {
		t.Fatalf("claim of two identities sharing 8 bytes: dup = %v, want neither", dup)
	}
	w.settle(cl, true)
	cl, dup = w.claim([]reading.ID{a, b, c})
	if !dup[0] || !dup[1] || dup[2] {
		t.Fatalf("again: dup = %v, want both held and the third new", dup)
	}
	w.settle(cl, true)
}

// TestWindowAgainstReference: a window of a few dozen identities, filled, overflowed and
// expired in random order, holds exactly the identities a plain list in storing order
// holds: the newest max, without the buckets (a minute each) that began more than 13
// minutes ago. The identities are chosen to crowd a few slots of the index, across its
// end, so that look-ups and deletions run through long probe sequences.
func TestWindowAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const capacity = 37
	w := newWindow(12*time.Minute, capacity)
	crowded := func() reading.ID {
		probe := &window{index: make([]uint32, 128)}
		for {
			var x reading.ID
			binary.LittleEndian.PutUint64(x[:8], rng.Uint64())
			binary.LittleEndian.PutUint64(x[8:], rng.Uint64())
			if h := probe.home(&x); h >= 120 || h < 4 {
				return x
			}
		}
	}
	type held struct {
		id    reading.ID
		start time.Time // of its bucket
	}
	var ref []held
	var last time.Time // the newest bucket's start
	now := time.Unix(1_700_000_000, 0)
	var seen []reading.ID
	for step := range 20_000 {
		var x reading.ID
		switch r := rng.IntN(100); {
		case r < 40: // time passes
			now = now.Add(time.Duration(rng.IntN(150)) * time.Second)
			continue
		case r < 12 && len(seen) > 0: // an identity stored before, stored again
			x = seen[rng.IntN(len(seen))]
		default:
			x = crowded()
			seen = append(seen, x)
		}
		w.mu.Lock() // as settle and rememberAll do, with the test's clock
		w.expireLocked(now)
		w.addLocked(x, now)
		w.mu.Unlock()
		for len(ref) > 0 && now.Sub(ref[0].start) > 13*time.Minute {
			ref = ref[1:]
		}
		if len(ref) == 0 || now.Sub(last) >= time.Minute {
			last = now
		}
		if ref = append(ref, held{x, last}); len(ref) > capacity {
			ref = ref[1:]
		}
		if got := w.size(); got != len(ref) {
			t.Fatalf("step %d: window holds %d, the reference %d", step, got, len(ref))
		}
		inRef := map[reading.ID]bool{}
		for _, h := range ref {
			inRef[h.id] = true
		}
		for _, x := range seen[max(0, len(seen)-4*capacity):] {
			if got := w.storedLocked(x); got != inRef[x] {
				t.Fatalf("step %d: stored = %v, the reference %v", step, got, inRef[x])
			}
		}
	}
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
// beyond its bound, it holds DedupMaxEntries identities in 12.6 MB (a 16-byte ring slot and
// a 4-byte index slot at most half full for each); serve's window once took 90 MB, and 28 MB
// as a map.
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
	if grew > 14<<20 {
		t.Errorf("a full default window takes %d MiB, want at most 14", grew>>20)
	}
	runtime.KeepAlive(w)
}
