package ecg

import (
	"math"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// Kinds of readings the live classifier takes beats from.
const (
	KindBeat   = "ecg_beat" // one 187-sample window in 0..1 (values: samples, optional label)
	KindSignal = "ecg"      // raw samples in mV at fs Hz (values: fs, samples)
)

// LiveBeat is a beat cut from a reading, ready to classify.
type LiveBeat struct {
	Subject, Device string
	Time            time.Time // R-peak time (ecg) or the reading's time (ecg_beat)
	Window          [WindowLen]float32
	RR              RRFeatures // zero for ecg_beat readings (classified by shape)
	Label           string     // reference label carried by the reading, "" if none
	Kind            string     // kind of the source reading
	Source          reading.ID // identity of the reading holding the beat (its R peak)
}

// LiveOptions bounds a Live's memory.
type LiveOptions struct {
	MaxDevices  int           // devices with state (default DefaultMaxDevices)
	MaxStreams  int           // devices with sample-stream (QRS detector) state (default DefaultMaxStreams)
	IdleTimeout time.Duration // state of devices silent this long is dropped by Evict (default DefaultIdleTimeout)
}

// Live holds the per-device state of streaming classification: the QRS detector and beat
// cutter of devices that send raw `ecg` samples, and the run of equal classes of every
// device. Memory is bounded by MaxDevices and MaxStreams (the least recently seen device
// loses its state first) and by IdleTimeout. A Live is not safe for concurrent use.
type Live struct {
	opts    LiveOptions
	devices map[devKey]*liveDevice
	streams int
	out     []StreamBeat
}

type devKey struct{ subject, device string }

type liveDevice struct {
	seen time.Time // wall clock of the last reading

	// Sample stream (kind ecg).
	bs     *BeatStream
	fs     float64
	t0     time.Time // time of sample 0 of bs
	n      int64     // samples pushed into bs
	chunks []chunkRef

	// Run of equal predicted classes.
	runClass Class
	run      int
}

// chunkRef is where one ecg reading starts within the device's sample stream.
type chunkRef struct {
	start int64
	id    reading.ID
}

// maxChunks is how many recent ecg readings of a device are remembered to name the reading
// holding a beat's R peak (beats are cut at most a few seconds after their peak).
const maxChunks = 32

// NewLive returns an empty Live.
func NewLive(o LiveOptions) *Live {
	if o.MaxDevices <= 0 {
		o.MaxDevices = DefaultMaxDevices
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	return &Live{opts: o, devices: map[devKey]*liveDevice{}}
}

// Devices returns the number of devices with state, and how many of them have sample-stream
// state.
func (l *Live) Devices() (devices, streams int) { return len(l.devices), l.streams }

// Beats appends the beats that reading r (with identity id) completes to dst: the window of
// an ecg_beat reading, or the beats the QRS detector confirmed in the samples of an ecg
// reading (a beat is emitted once the next R peak has arrived, so up to a few seconds
// later, possibly while a later reading is pushed). Other kinds yield nothing. now is the
// wall clock, used for eviction.
func (l *Live) Beats(r *reading.Reading, id reading.ID, now time.Time, dst []LiveBeat) []LiveBeat {
	switch r.Kind {
	case KindBeat:
		if len(r.Samples) != WindowLen {
			return dst
		}
		l.device(r, now)
		b := LiveBeat{Subject: r.Subject, Device: r.Device, Time: r.Time, Label: r.Text["label"], Kind: r.Kind, Source: id}
		for i, v := range r.Samples {
			b.Window[i] = float32(v)
		}
		return append(dst, b)
	case KindSignal:
		fs := r.Values["fs"]
		if fs <= 0 || len(r.Samples) == 0 {
			return dst
		}
		return l.pushSamples(l.device(r, now), r, id, fs, dst)
	}
	return dst
}

func (l *Live) device(r *reading.Reading, now time.Time) *liveDevice {
	k := devKey{r.Subject, r.Device}
	d := l.devices[k]
	if d == nil {
		if len(l.devices) >= l.opts.MaxDevices {
			l.evictOldest(false)
		}
		d = &liveDevice{runClass: -1}
		l.devices[k] = d
	}
	d.seen = now
	return d
}

// pushSamples feeds an ecg reading to the device's beat cutter. A reading that does not
// continue the previous one (another rate, a gap or an overlap of more than two samples or
// 20 ms) starts a new stream: the QRS detector learns its thresholds again.
func (l *Live) pushSamples(d *liveDevice, r *reading.Reading, id reading.ID, fs float64, dst []LiveBeat) []LiveBeat {
	if d.bs != nil {
		expected := d.t0.Add(time.Duration(float64(d.n) / d.fs * float64(time.Second)))
		tol := max(time.Duration(2/fs*float64(time.Second)), 20*time.Millisecond)
		if fs != d.fs || absDur(r.Time.Sub(expected)) > tol {
			d.bs = nil
			l.streams--
		}
	}
	if d.bs == nil {
		if l.streams >= l.opts.MaxStreams {
			l.evictOldest(true)
		}
		d.bs, d.fs, d.t0, d.n, d.chunks = NewBeatStream(fs), fs, r.Time, 0, d.chunks[:0]
		l.streams++
	}
	if len(d.chunks) == maxChunks {
		copy(d.chunks, d.chunks[1:])
		d.chunks = d.chunks[:maxChunks-1]
	}
	d.chunks = append(d.chunks, chunkRef{start: d.n, id: id})
	for _, x := range r.Samples {
		l.out = d.bs.Push(x, l.out[:0])
		d.n++
		for _, sb := range l.out {
			at := d.t0.Add(time.Duration(math.Round(float64(sb.Sample)/d.fs*1e6)) * time.Microsecond)
			dst = append(dst, LiveBeat{Subject: r.Subject, Device: r.Device, Time: at, Window: sb.Samples, RR: sb.RR,
				Kind: KindSignal, Source: d.source(sb.Sample, id)})
		}
	}
	return dst
}

// source is the identity of the reading holding sample s (fallback: the current reading).
func (d *liveDevice) source(s int64, current reading.ID) reading.ID {
	for i := len(d.chunks) - 1; i >= 0; i-- {
		if d.chunks[i].start <= s {
			return d.chunks[i].id
		}
	}
	return current
}

// Record notes the predicted class of a device's beat (in beat order) and returns how many
// consecutive beats of that device, this one included, had that class.
func (l *Live) Record(subject, device string, c Class) int {
	d := l.devices[devKey{subject, device}]
	if d == nil {
		return 1 // evicted between cutting and recording: start over
	}
	if d.runClass == c {
		d.run++
	} else {
		d.runClass, d.run = c, 1
	}
	return d.run
}

// Evict drops the state of devices not seen for IdleTimeout before now and returns how many.
func (l *Live) Evict(now time.Time) int {
	n := 0
	for k, d := range l.devices {
		if now.Sub(d.seen) > l.opts.IdleTimeout {
			l.drop(k, d)
			n++
		}
	}
	return n
}

// evictOldest drops the least recently seen device (with stream state only, if streams).
func (l *Live) evictOldest(streams bool) {
	var oldK devKey
	var old *liveDevice
	for k, d := range l.devices {
		if streams && d.bs == nil {
			continue
		}
		if old == nil || d.seen.Before(old.seen) {
			oldK, old = k, d
		}
	}
	if old == nil {
		return
	}
	if streams {
		old.bs, old.chunks = nil, nil
		l.streams--
		return
	}
	l.drop(oldK, old)
}

func (l *Live) drop(k devKey, d *liveDevice) {
	if d.bs != nil {
		l.streams--
	}
	delete(l.devices, k)
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
