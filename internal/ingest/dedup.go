package ingest

import (
	"encoding/binary"
	"math/bits"
	"sync"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// window remembers the identities of readings stored recently, so a re-sent reading is
// reported as a duplicate instead of being stored again.
//
// Stored identities are kept in the order they were stored, in a ring of at most max
// (allocated a chunk at a time as it fills), and found through an open-addressing index of
// ring positions (4 bytes a slot, at most half full, linear probing). When the ring is full
// the oldest identity goes; whole time buckets (a twelfth of the window each) expire. So a
// held identity costs 16 bytes in the ring and 8 to 16 in the index: 12 MB for the default
// 500,000, fixed, however the identities are spread. The lake de-duplicates on identity
// without limit, so forgetting early costs a duplicate stream record, never a duplicate row.
//
// A reading being stored by one batch is "pending": a concurrent batch with the same
// reading waits for the outcome rather than answering "duplicate" for a reading that might
// yet fail to be stored.
type window struct {
	mu      sync.Mutex
	span    time.Duration // time covered by one bucket
	max     int
	ring    [][]reading.ID // chunks of ringChunk; sequence number s is at ring position s % max
	head    uint64         // sequence number of the next identity stored
	tail    uint64         // of the oldest held: [tail, head) are held
	index   []uint32       // ring position + 1 of held identities, 0 for a free slot
	buckets []bucket       // oldest first
	pending map[reading.ID]*claims
}

// bucket is a span of stored identities: those from sequence number first to the next
// bucket's first, stored from start on.
type bucket struct {
	start time.Time
	first uint64
}

// claims are the pending identities of one batch; done closes when the batch is settled.
type claims struct {
	ids  []reading.ID
	done chan struct{}
}

const (
	windowBuckets = 12
	ringChunk     = 1 << 16 // identities per ring chunk (1 MiB)
	minIndex      = 64
)

func newWindow(ttl time.Duration, max int) *window {
	if ttl <= 0 || max <= 0 {
		max = 0
	}
	return &window{span: ttl / windowBuckets, max: max, pending: map[reading.ID]*claims{}}
}

// entry is the index entry of sequence number s: its ring position + 1.
func (w *window) entry(s uint64) uint32 { return uint32(s%uint64(w.max)) + 1 }

// slot is the ring slot of an index entry.
func (w *window) slot(v uint32) *reading.ID {
	return &w.ring[(v-1)/ringChunk][(v-1)%ringChunk]
}

// home is an identity's first index slot. Identities are hashes, but the index mixes both
// halves anyway so that identities sharing a prefix do not share a slot.
func (w *window) home(id *reading.ID) int {
	h := (binary.LittleEndian.Uint64(id[:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(id[8:]), 29)) * 0x9e3779b97f4a7c15
	return int(h>>32) & (len(w.index) - 1)
}

func (w *window) storedLocked(id reading.ID) bool {
	if len(w.index) == 0 {
		return false
	}
	mask := len(w.index) - 1
	for i := w.home(&id); w.index[i] != 0; i = (i + 1) & mask {
		if *w.slot(w.index[i]) == id {
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
// (expireLocked, once per batch: the clock is read once, not per identity). An identity
// added twice is held twice (rememberAll does not look up first); each goes in turn.
func (w *window) addLocked(id reading.ID, at time.Time) {
	if int(w.head-w.tail) == w.max {
		w.dropOldestLocked() // its bucket may now be empty: expiry passes over it
	}
	if 2*(int(w.head-w.tail)+1) > len(w.index) {
		w.growIndex()
	}
	if n := len(w.buckets); n == 0 || at.Sub(w.buckets[n-1].start) >= w.span {
		w.buckets = append(w.buckets, bucket{start: at, first: w.head})
	}
	v := w.entry(w.head)
	if c := int(v-1) / ringChunk; c == len(w.ring) {
		w.ring = append(w.ring, make([]reading.ID, min(ringChunk, w.max-c*ringChunk)))
	}
	*w.slot(v) = id
	w.insert(&id, v)
	w.head++
}

// insert puts a ring position (+1) into the index at the identity's first free slot.
func (w *window) insert(id *reading.ID, v uint32) {
	mask := len(w.index) - 1
	i := w.home(id)
	for w.index[i] != 0 {
		i = (i + 1) & mask
	}
	w.index[i] = v
}

// growIndex doubles the index (up to twice max slots, rounded to a power of two) and
// re-inserts the held identities.
func (w *window) growIndex() {
	n := max(minIndex, 2*len(w.index))
	w.index = make([]uint32, n)
	for s := w.tail; s < w.head; s++ {
		v := w.entry(s)
		w.insert(w.slot(v), v)
	}
}

// expireLocked drops buckets entirely older than the window.
func (w *window) expireLocked(now time.Time) {
	for len(w.buckets) > 0 && now.Sub(w.buckets[0].start) > w.span*(windowBuckets+1) {
		end := w.head
		if len(w.buckets) > 1 {
			end = w.buckets[1].first
		}
		for w.tail < end {
			w.dropOldestLocked()
		}
		w.buckets = w.buckets[1:]
	}
}

// dropOldestLocked forgets the oldest held identity: its index slot is freed and the
// probe sequence behind it closed up (backward-shift deletion), so no look-up ever stops
// early at the freed slot.
func (w *window) dropOldestLocked() {
	v := w.entry(w.tail)
	mask := len(w.index) - 1
	i := w.home(w.slot(v))
	for w.index[i] != v {
		i = (i + 1) & mask
	}
	for j := i; ; {
		w.index[i] = 0
		for {
			j = (j + 1) & mask
			u := w.index[j]
			if u == 0 {
				w.tail++
				return
			}
			// The entry at j stays unless its home is cyclically outside (i, j].
			h := w.home(w.slot(u))
			if (i < j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
				w.index[i] = u
				i = j
				break
			}
		}
	}
}

// size is the number of identities remembered.
func (w *window) size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int(w.head - w.tail)
}
