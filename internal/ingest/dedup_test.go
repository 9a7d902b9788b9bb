package ingest

import (
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
