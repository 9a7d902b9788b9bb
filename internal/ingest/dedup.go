package ingest

import (
	"sync"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// window remembers the identities of readings stored recently, so a re-sent reading is
// reported as a duplicate instead of being stored again. A reading being stored by one
// request is "pending": a concurrent request with the same reading waits for the outcome
// rather than answering "duplicate" for a reading that might yet fail to be stored.
//
// Memory is bounded: identities older than ttl, or beyond max entries, are forgotten
// (oldest first). The lake de-duplicates on identity without limit, so forgetting early
// costs a duplicate stream record, never a duplicate row.
type window struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	seen  map[reading.ID]*claim
	order []slot // FIFO ring of insertions
	head  int    // index of the oldest slot
	n     int    // slots in use
}

type slot struct {
	id reading.ID
	at int64 // unix nanos of insertion
}

// claim is one identity's state. done is closed when a pending claim is settled.
type claim struct {
	owner  *claims
	stored bool
	done   chan struct{}
}

// claims are the pending identities of one batch.
type claims struct {
	ids []reading.ID
	cs  []*claim
}

func newWindow(ttl time.Duration, max int) *window {
	if max <= 0 || ttl <= 0 {
		max = 0
	}
	return &window{ttl: ttl, max: max, seen: make(map[reading.ID]*claim), order: make([]slot, min(max, 1<<16))}
}

// claim marks ids pending for this batch. It returns, per id, whether it is a duplicate (stored
// already, or earlier in the same batch). It may wait for another batch's pending claim.
func (w *window) claim(ids []reading.ID) (*claims, []bool) {
	mine := &claims{}
	dup := make([]bool, len(ids))
	if w.max == 0 {
		return mine, dup
	}
	for i := 0; i < len(ids); i++ {
		w.mu.Lock()
		c, ok := w.seen[ids[i]]
		switch {
		case !ok:
			c = &claim{owner: mine, done: make(chan struct{})}
			w.seen[ids[i]] = c
			w.push(ids[i])
			mine.ids = append(mine.ids, ids[i])
			mine.cs = append(mine.cs, c)
		case c.stored || c.owner == mine:
			dup[i] = true
		default:
			// Pending in another batch: wait for it, then look again.
			w.mu.Unlock()
			<-c.done
			i--
			continue
		}
		w.mu.Unlock()
	}
	return mine, dup
}

// settle records the outcome of a batch: stored claims stay as duplicates-to-be; failed ones
// are forgotten so a retry is accepted.
func (w *window) settle(mine *claims, stored bool) {
	if w.max == 0 {
		return
	}
	w.mu.Lock()
	for i, c := range mine.cs {
		c.stored = stored
		c.owner = nil
		if !stored && w.seen[mine.ids[i]] == c {
			delete(w.seen, mine.ids[i])
		}
		close(c.done)
	}
	w.mu.Unlock()
}

// remember records identities known to be stored (used when rebuilding after a restart).
func (w *window) remember(id reading.ID, at time.Time) {
	if w.max == 0 {
		return
	}
	w.mu.Lock()
	if _, ok := w.seen[id]; !ok {
		c := &claim{stored: true, done: make(chan struct{})}
		close(c.done)
		w.seen[id] = c
		w.pushAt(id, at.UnixNano())
	}
	w.mu.Unlock()
}

func (w *window) push(id reading.ID) { w.pushAt(id, time.Now().UnixNano()) }

// pushAt appends to the ring, first evicting expired entries and, when full, the oldest.
func (w *window) pushAt(id reading.ID, at int64) {
	cutoff := time.Now().UnixNano() - int64(w.ttl)
	for w.n > 0 && (w.order[w.head].at < cutoff || w.n >= w.max) {
		w.evictOldest()
	}
	if w.n == len(w.order) {
		w.grow()
	}
	w.order[(w.head+w.n)%len(w.order)] = slot{id: id, at: at}
	w.n++
}

func (w *window) evictOldest() {
	s := w.order[w.head]
	if c, ok := w.seen[s.id]; ok && c.owner == nil {
		delete(w.seen, s.id)
	}
	w.head = (w.head + 1) % len(w.order)
	w.n--
}

func (w *window) grow() {
	bigger := make([]slot, min(2*len(w.order), w.max))
	for i := 0; i < w.n; i++ {
		bigger[i] = w.order[(w.head+i)%len(w.order)]
	}
	w.order, w.head = bigger, 0
}

// size is the number of identities remembered.
func (w *window) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}
