package ecg

// StreamBeat is a beat cut from a live sample stream.
type StreamBeat struct {
	Sample  int64 // R-peak index, counted from the first sample pushed
	Samples [WindowLen]float32
	RR      RRFeatures
}

// BeatStream cuts heartbeat windows from a raw single-lead ECG stream: it runs a QRSDetector
// and emits each beat once the next R peak (for the post-RR interval) and the samples of the
// full window have arrived. Delay is bounded by the detector's delay plus 1.5 s; memory by a
// ring of ringSeconds*2 of samples. A BeatStream is not safe for concurrent use.
type BeatStream struct {
	fs       float64
	det      *QRSDetector
	buf      []float64 // ring of raw samples
	n        int64
	peaks    []int64 // confirmed R peaks not yet emitted (at most a few)
	tr       beatTracker
	lastPost float64 // post-RR of the last emitted beat: the next one's pre-RR
	scratch  []float64
	seg      [segLen]float64
	newPk    []int64
}

// NewBeatStream returns a BeatStream for a signal sampled at fs Hz (at least 100).
func NewBeatStream(fs float64) *BeatStream {
	if fs < 100 {
		fs = 100
	}
	det := NewQRSDetector(fs)
	// The ring holds the detector's delay, the segment before the R peak and the window after it.
	size := int(float64(det.Delay())+2*fs) + (WindowLen+segPre)*int(fs/WindowFs+1)
	return &BeatStream{fs: fs, det: det, buf: make([]float64, size), scratch: make([]float64, 0, size)}
}

// Push adds one sample (mV) and appends completed beats to dst.
func (s *BeatStream) Push(x float64, dst []StreamBeat) []StreamBeat {
	s.buf[s.n%int64(len(s.buf))] = x
	s.n++
	s.newPk = s.det.Push(x, s.newPk[:0])
	s.peaks = append(s.peaks, s.newPk...)
	span := int64(float64(WindowLen) * s.fs / WindowFs)
	for len(s.peaks) >= 2 && s.n > s.peaks[0]+span+1 {
		r, next := s.peaks[0], s.peaks[1]
		s.peaks = s.peaks[1:]
		post := float64(next-r) / s.fs
		before := int64(segPre*s.fs/WindowFs) + 2
		if s.n-r+before > int64(len(s.buf)) {
			s.lastPost = post
			continue // fell out of the ring (only after a very long gap)
		}
		size := int64(len(s.buf))
		cutSegment(&s.seg, func(i int64) float64 { return s.buf[i%size] }, max(0, s.n-size), s.n, r, s.fs)
		rr, period := s.tr.next(s.lastPost, post, &s.seg)
		s.lastPost = post
		b := StreamBeat{Sample: r, RR: rr}
		// Copy the window's span out of the ring; CutWindow indexes from the R peak.
		s.scratch = s.scratch[:0]
		for k := r; k < min(s.n, r+span+2); k++ {
			s.scratch = append(s.scratch, s.buf[k%size])
		}
		CutWindow(&b.Samples, s.scratch, s.fs, 0, period)
		dst = append(dst, b)
	}
	if len(s.peaks) > 64 {
		s.peaks = s.peaks[len(s.peaks)-64:]
	}
	return dst
}
