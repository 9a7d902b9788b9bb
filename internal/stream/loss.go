package stream

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/durable"
)

// LossMonitor reports messages a stream lost: JetStream drops the messages of a damaged
// block (bytes overwritten, a file truncated by a crash) when it reads or recovers it, and
// records their sequences. Nothing can bring them back; what matters is that nobody misses
// it. Each newly lost range is logged at ERROR, naming the stream and the sequences, and
// counted in pulselake_stream_lost_messages_total{stream}.
//
// JetStream records only what it can still name. A crash-damaged last block is truncated
// at the first bad record on recovery, and the messages after it vanish without a trace:
// the stream simply ends earlier, and the next batches reuse their sequence numbers. So the
// monitor also keeps a high-water mark: the highest ingest sequence acknowledged to a
// producer, written to hwmFile (once a second, fsynced) and compared at start with the
// stream's last sequence (and with how far its consumers got).
//
// Run checks at once (after a restart this is where recovery's losses show) and then
// periodically; it is owned by its caller and returns when ctx ends.
type LossMonitor struct {
	conn    *Conn
	log     *slog.Logger
	lost    *prometheus.CounterVec
	seen    map[string]int // lost sequences already reported, per stream
	hwmFile string
	hwm     uint64 // last written
	started bool
}

// NewLossMonitor returns a monitor of every stream of conn's account. hwmFile keeps the
// ingest stream's high-water mark ("" keeps none, e.g. on an external cluster).
func NewLossMonitor(log *slog.Logger, reg prometheus.Registerer, conn *Conn, hwmFile string) *LossMonitor {
	m := &LossMonitor{conn: conn, log: log, seen: map[string]int{}, hwmFile: hwmFile,
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulselake_stream_lost_messages_total",
			Help: "Stream messages lost to damaged storage (reported by JetStream when it recovered or read a block).",
		}, []string{"stream"})}
	reg.MustRegister(m.lost)
	return m
}

// LossCheckInterval is how often Run looks for newly lost messages.
const LossCheckInterval = 30 * time.Second

// Run checks now and every LossCheckInterval until ctx ends, and saves the high-water
// mark every second; its last save is when ctx ends.
func (m *LossMonitor) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	next := time.Now()
	for {
		if time.Now().After(next) {
			if err := m.Check(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("checking the streams for lost messages", "err", err)
			}
			next = time.Now().Add(LossCheckInterval)
		}
		m.SaveMark()
		select {
		case <-ctx.Done():
			m.SaveMark()
			return nil
		case <-t.C:
		}
	}
}

// SaveMark writes the highest acknowledged ingest sequence if it grew.
func (m *LossMonitor) SaveMark() {
	seq := m.conn.lastAcked.Load()
	if m.hwmFile == "" || !m.started || seq <= m.hwm {
		return
	}
	if err := durable.WriteFile(m.hwmFile, []byte(strconv.FormatUint(seq, 10)+"\n"), 0o600); err != nil {
		m.log.Warn("saving the stream's high-water mark", "err", err)
		return
	}
	m.hwm = seq
}

// checkMark compares, once at start, the last sequence known to have been acknowledged
// (the high-water mark, and the consumers' positions) with the stream's last sequence.
func (m *LossMonitor) checkMark(ctx context.Context) error {
	s, err := m.conn.JS.Stream(ctx, IngestStream)
	if err != nil {
		return err
	}
	known, source := uint64(0), ""
	if m.hwmFile != "" {
		if data, err := os.ReadFile(m.hwmFile); err == nil {
			known, _ = strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
			source = "high-water mark"
		}
	}
	// The consumers are read before the stream: a message stored in between (a busy
	// stream, or a node's replica catching up after a restart) is then counted in the
	// stream's last sequence, never only in a consumer's position, where it would look
	// like an acknowledged message the stream lost.
	consumers := s.ListConsumers(ctx)
	for ci := range consumers.Info() {
		if ci.Delivered.Stream > known {
			known, source = ci.Delivered.Stream, "consumer "+ci.Name
		}
	}
	if err := consumers.Err(); err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	last := info.State.LastSeq
	if known > last {
		n := known - last
		m.lost.WithLabelValues(IngestStream).Add(float64(n))
		m.log.Error("stream data lost: damaged storage; the stream ends before messages that were acknowledged, and they cannot be recovered",
			"stream", IngestStream, "lost_messages", n, "sequences", fmt.Sprintf("%d-%d", last+1, known),
			"last_stored", last, "known_from", source,
			"hint", "readings acknowledged in these messages are gone unless the lake already has them or the devices send them again; the next batches reuse these sequence numbers; look for disk or file system errors")
	}
	// From now on the mark follows the stream as it is.
	m.conn.lastAcked.Store(max(m.conn.lastAcked.Load(), last))
	m.started = true
	if m.hwmFile != "" && known > last {
		if err := durable.WriteFile(m.hwmFile, []byte(strconv.FormatUint(last, 10)+"\n"), 0o600); err != nil {
			return err
		}
	}
	m.hwm = last
	return nil
}

// Check looks at every stream once and reports losses not reported before.
func (m *LossMonitor) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !m.started {
		if err := m.checkMark(ctx); err != nil {
			return fmt.Errorf("comparing the ingest stream with its high-water mark: %w", err)
		}
	}
	streams := m.conn.JS.ListStreams(ctx)
	for info := range streams.Info() {
		lost := info.State.Lost
		if lost == nil || len(lost.Msgs) <= m.seen[info.Config.Name] {
			continue
		}
		name := info.Config.Name
		seqs := slices.Clone(lost.Msgs)
		slices.Sort(seqs)
		newly := len(seqs) - m.seen[name]
		m.seen[name] = len(seqs)
		m.lost.WithLabelValues(name).Add(float64(newly))
		m.log.Error("stream data lost: damaged storage; these messages cannot be recovered",
			"stream", name, "lost_messages", newly, "lost_bytes", lost.Bytes,
			"sequences", Ranges(seqs), "first", seqs[0], "last", seqs[len(seqs)-1],
			"hint", "readings acknowledged in these messages are gone unless the lake already has them (check the lake writer's position) or the devices send them again; look for disk or file system errors")
	}
	return streams.Err()
}

// Ranges writes sorted sequences as ranges: "4-9,12".
func Ranges(seqs []uint64) string {
	var b strings.Builder
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] <= seqs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(seqs[i], 10))
		if j > i {
			b.WriteString("-" + strconv.FormatUint(seqs[j], 10))
		}
		if b.Len() > 400 {
			fmt.Fprintf(&b, ",... (%d sequences in all)", len(seqs))
			break
		}
		i = j + 1
	}
	return b.String()
}
