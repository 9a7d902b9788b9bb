package ingest

import (
	"sync"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// window remembers the identities of readings stored recently, so a re-sent reading is
// reported as a duplicate instead of being stored again.
//
// Stored identities live in time buckets (a twelfth of the window each); whole buckets
// expire, and when more than max identities are held the oldest bucket goes early. That
// keeps memory near 24 bytes per identity with no per-entry bookkeeping. The lake
// de-duplicates on identity without limit, so forgetting early costs a duplicate stream
// record, never a duplicate row.
//
// A reading being stored by one batch is "pending": a concurrent batch with the same
// reading waits for the outcome rather than answering "duplicate" for a reading that might
// yet fail to be stored.
type window struct {
	mu      sync.Mutex
	span    time.Duration // time covered by one bucket
	max     int
	buckets []bucket // oldest first
	total   int
	pending map[reading.ID]*claims
}

type bucket struct {
	start time.Time
	ids   map[reading.ID]struct{}
}

// claims are the pending identities of one batch; done closes when the batch is settled.
type claims struct {
	ids  []reading.ID
	done chan struct{}
}

const windowBuckets = 12

func newWindow(ttl time.Duration, max int) *window {
	if ttl <= 0 || max <= 0 {
		max = 0
	}
	return &window{span: ttl / windowBuckets, max: max, pending: map[reading.ID]*claims{}}
}

func (w *window) storedLocked(id reading.ID) bool {
	for i := len(w.buckets) - 1; i >= 0; i-- {
		if _, ok := w.buckets[i].ids[id]; ok {
			return true
		}
	}
	return false
}

// claim marks ids pending for a new batch. It returns, per id, whether it is a duplicate
// (stored already, or earlier in the same batch). It may wait for another batch's outcome.
func (w *window) claim(ids []reading.ID) (*claims, []bool) {
	mine := &claims{done: make(chan struct{})}
	dup := make([]bool, len(ids))
	if w.max == 0 {
		return mine, dup
	}
	w.mu.Lock()
	for i := 0; i < len(ids); i++ {
		id := ids[i]
		if other, ok := w.pending[id]; ok {
			if other == mine {
				dup[i] = true
				continue
			}
			// Pending in another batch: wait for its outcome, then look again.
			w.mu.Unlock()
			<-other.done
			w.mu.Lock()
			i--
			continue
		}
		if w.storedLocked(id) {
			dup[i] = true
			continue
		}
		w.pending[id] = mine
		mine.ids = append(mine.ids, id)
	}
	w.mu.Unlock()
	return mine, dup
}

// settle records the outcome of a batch: stored identities become duplicates-to-be; failed
// ones are forgotten so a retry is accepted.
func (w *window) settle(mine *claims, stored bool) {
	defer close(mine.done)
	if w.max == 0 {
		return
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range mine.ids {
		delete(w.pending, id)
		if stored {
			w.addLocked(id, now)
		}
	}
}

// remember records an identity known to be stored at a time (rebuilding after a restart).
func (w *window) remember(id reading.ID, at time.Time) {
	if w.max == 0 {
		return
	}
	w.mu.Lock()
	if !w.storedLocked(id) {
		w.addLocked(id, at)
	}
	w.mu.Unlock()
}

// rememberAll records identities stored together at one time (a batch read back while
// rebuilding): one lock for all, and no look-up first — a reading stored twice in the
// stream is rare, and counting it twice only makes the window forget a little early.
func (w *window) rememberAll(ids []reading.ID, at time.Time) {
	if w.max == 0 || len(ids) == 0 {
		return
	}
	w.mu.Lock()
	for _, id := range ids {
		w.addLocked(id, at)
	}
	w.mu.Unlock()
}

func (w *window) addLocked(id reading.ID, at time.Time) {
	w.expireLocked(time.Now())
	n := len(w.buckets)
	// A new bucket per span of time, and per twelfth of max identities so that dropping the
	// oldest bucket always frees memory.
	if n == 0 || at.Sub(w.buckets[n-1].start) >= w.span || len(w.buckets[n-1].ids) >= max(1, w.max/windowBuckets) {
		w.buckets = append(w.buckets, bucket{start: at, ids: map[reading.ID]struct{}{}})
		n++
	}
	w.buckets[n-1].ids[id] = struct{}{}
	w.total++
	for w.total > w.max && len(w.buckets) > 1 {
		w.dropOldestLocked()
	}
}

// expireLocked drops buckets entirely older than the window.
func (w *window) expireLocked(now time.Time) {
	for len(w.buckets) > 0 && now.Sub(w.buckets[0].start) > w.span*(windowBuckets+1) {
		w.dropOldestLocked()
	}
}

func (w *window) dropOldestLocked() {
	w.total -= len(w.buckets[0].ids)
	w.buckets[0] = bucket{}
	w.buckets = w.buckets[1:]
}

// size is the number of identities remembered.
func (w *window) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}
