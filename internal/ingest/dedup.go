package ingest

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// window remembers the identities of readings stored recently, so a re-sent reading is
// reported as a duplicate instead of being stored again.
//
// Stored identities belong to time buckets (a twelfth of the window each); whole buckets
// expire, and when more than max identities are held the oldest bucket goes early. One map
// holds every stored identity with its bucket, so a look-up is one map access however
// many buckets there are; dropping a bucket sweeps the map (one pass per twelfth of the
// window's turnover). The map is keyed by an identity's first 8 bytes and holds the other
// 8 (a look-up of a 64-bit key is several times cheaper than one of a 16-byte key, and the
// window looks up and adds every identity an import stores): two identities sharing their
// first 8 bytes cannot both be held, the later one replaces the earlier, which is forgotten
// early. That keeps memory near 30 bytes per identity. The lake
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
	ids     map[uint64]slot // stored identities by their first 8 bytes
	buckets []bucket        // oldest first
	nextGen uint32
	total   int // identities added to the buckets held (one stored twice counts twice)
	pending map[reading.ID]*claims
}

// slot is a stored identity's last 8 bytes and the generation of its bucket.
type slot struct {
	rest uint64
	gen  uint32
}

// split is an identity's first and last 8 bytes.
func split(id reading.ID) (uint64, uint64) {
	return binary.LittleEndian.Uint64(id[:8]), binary.LittleEndian.Uint64(id[8:])
}

type bucket struct {
	start time.Time
	gen   uint32
	n     int // identities added to it
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
	return &window{span: ttl / windowBuckets, max: max, ids: map[uint64]slot{}, pending: map[reading.ID]*claims{}}
}

func (w *window) storedLocked(id reading.ID) bool {
	k, rest := split(id)
	s, ok := w.ids[k]
	return ok && s.rest == rest
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
	w.expireLocked(now)
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
	w.expireLocked(time.Now())
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
	w.expireLocked(time.Now())
	for _, id := range ids {
		w.addLocked(id, at)
	}
	w.mu.Unlock()
}

// addLocked adds an identity stored at a time; the caller expired old buckets first
// (expireLocked, once per batch: the clock is read once, not per identity).
func (w *window) addLocked(id reading.ID, at time.Time) {
	n := len(w.buckets)
	// A new bucket per span of time, and per twelfth of max identities so that dropping the
	// oldest bucket always frees memory.
	if n == 0 || at.Sub(w.buckets[n-1].start) >= w.span || w.buckets[n-1].n >= max(1, w.max/windowBuckets) {
		w.buckets = append(w.buckets, bucket{start: at, gen: w.nextGen})
		w.nextGen++
		n++
	}
	w.buckets[n-1].n++
	k, rest := split(id)
	w.ids[k] = slot{rest, w.buckets[n-1].gen} // an identity added again moves to the newest bucket
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
	gen := w.buckets[0].gen
	for k, s := range w.ids {
		if s.gen == gen {
			delete(w.ids, k)
		}
	}
	w.total -= w.buckets[0].n
	w.buckets = w.buckets[1:]
}

// size is the number of identities remembered.
func (w *window) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}
