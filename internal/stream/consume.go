package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/reading"
)

// The consumer loop. Every processor of the ingest stream (rule engine, anomaly detectors,
// ECG classifier, live feed, lake writer) runs the same loop, in the spirit of Benthos /
// Redpanda Connect's at-least-once engine: it fetches byte-bounded pulls, decodes the batch
// envelopes, calls the processor's handler and acknowledges a message only after the handler
// returned nil (its effect is durable). What happens otherwise is the loop's business, not
// the handler's:
//
//   - a handler error: the message is negatively acknowledged with an exponential back-off
//     with jitter (Backoff) and JetStream delivers it again (ModeRedeliver); or, for a
//     consumer that needs stream order (the lake writer), the same batch is handed to the
//     handler again after the back-off, its messages kept in progress (ModeRetryInPlace);
//   - a message that cannot be decoded, one whose handler returned a Poison error, and one
//     that failed on its MaxDeliver-th delivery are terminated (never delivered to this
//     consumer again) and described to Quarantine;
//   - a live consumer (ModeLive: an ordered, ephemeral consumer of a live feed) acknowledges
//     nothing: a message that fails is skipped.

// Mode is how a consumer acknowledges messages and what it does when a handler fails.
type Mode int

const (
	// ModeRedeliver acknowledges each message after its handler succeeded and has JetStream
	// deliver it again, after a back-off, when the handler failed.
	ModeRedeliver Mode = iota
	// ModeRetryInPlace hands the same batch to the handler again after a back-off until it
	// succeeds, and then acknowledges it: for consumers whose writes depend on stream order.
	ModeRetryInPlace
	// ModeLive acknowledges nothing and never retries (an ordered, ephemeral consumer).
	ModeLive
)

// Poison reasons of a Poisoned record.
const (
	PoisonUndecodable = "undecodable" // not a batch envelope this build can read
	PoisonRejected    = "rejected"    // the handler returned a Poison error
	PoisonMaxDeliver  = "max-deliver" // the handler failed on the MaxDeliver-th delivery
)

// Poisoned describes a message a consumer terminated: it is never delivered to that
// consumer again, and stays in the stream for its retention.
type Poisoned struct {
	Consumer  string    // the durable consumer's name
	Reason    string    // PoisonUndecodable, PoisonRejected or PoisonMaxDeliver
	Err       string    // the error that made the message poison
	Subject   string    // stream subject
	Seq       uint64    // stream sequence
	Stored    time.Time // when the stream stored the message
	Delivered uint64    // deliveries to this consumer, the last included
	Data      []byte    // the payload as stored, decompressed when it is a compressed envelope
	Batch     *Batch    // the decoded envelope; nil when it could not be decoded
}

type poisonError struct{ err error }

func (e *poisonError) Error() string { return e.err.Error() }
func (e *poisonError) Unwrap() error { return e.err }

// Poison marks a handler error as permanent: the message will never be handled, so it is
// terminated and quarantined at once instead of being delivered again.
func Poison(err error) error {
	if err == nil {
		return nil
	}
	return &poisonError{err}
}

// IsPoison reports whether err was marked by Poison.
func IsPoison(err error) bool {
	var p *poisonError
	return errors.As(err, &p)
}

// Backoff is an exponential back-off with jitter: attempt n (from 1) waits a random time in
// [d/2, d] with d = Min·2^(n-1), at most Max. The lower half is fixed so that waits grow
// with every attempt while concurrent retries spread out.
type Backoff struct {
	Min, Max time.Duration
}

// Delay is the wait before attempt+1, after attempt failed attempts (attempt >= 1).
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Min
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Msg is one stream message as a handler sees it.
type Msg struct {
	Batch     Batch  // the decoded envelope
	Err       error  // why it could not be decoded (ConsumerOptions.KeepUndecodable)
	Subject   string // stream subject
	Data      []byte // the payload as stored
	Seq       uint64 // stream sequence
	Stored    time.Time
	Delivered uint64 // deliveries to this consumer, this one included
	m         jetstream.Msg
	decoded   bool
}

// Release drops the decoded envelope once the handler no longer needs it (the lake writer,
// before its commits: decoded readings take twice the memory of the raw message). If the
// batch is handed to the handler again, it is decoded again.
func (m *Msg) Release() {
	m.Batch, m.decoded = Batch{}, false
}

// Wrap reads a fetched JetStream message's metadata into a Msg (not yet decoded), for code
// that pulls messages itself (the lake writer's catch-up of a table).
func Wrap(m jetstream.Msg) (*Msg, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("reading message metadata: %w", err)
	}
	return &Msg{Subject: m.Subject(), Data: m.Data(), Seq: meta.Sequence.Stream, Stored: meta.Timestamp,
		Delivered: meta.NumDelivered, m: m}, nil
}

// Kinds are the kinds of the message's accepted readings (KindsHeader); ok is false for a
// message stored without the header (by an earlier build), whose envelope must be read.
func (m *Msg) Kinds() (kinds []string, ok bool) {
	if m.m == nil {
		return nil, false
	}
	return KindsOf(m.m.Headers())
}

// KindsOf reads KindsHeader from a stream message's headers (Msg.Kinds).
func KindsOf(h nats.Header) (kinds []string, ok bool) {
	v, ok := h[KindsHeader]
	if !ok || len(v) != 1 {
		return nil, false
	}
	if v[0] == "" {
		return nil, true
	}
	return strings.Split(v[0], ","), true
}

// Ack acknowledges the message. A Consumer acknowledges the messages it hands out itself;
// Ack is for messages obtained with Wrap.
func (m *Msg) Ack() error { return m.m.Ack() }

// DecodeAll decodes the envelopes of msgs not yet decoded on len(parsers) goroutines, one
// parser each. A message that is not an envelope gets its error in Err.
func DecodeAll(msgs []*Msg, parsers []*reading.Parser) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, p := range parsers[:min(len(parsers), len(msgs))] {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(msgs); i = int(next.Add(1) - 1) {
				m := msgs[i]
				if m.decoded {
					continue
				}
				m.Batch, m.Err = Decode(m.Data, p)
				m.Batch.Seq, m.decoded = m.Seq, true
			}
		})
	}
	wg.Wait()
}

// ConsumerOptions configures a Consumer. Set exactly one of Handle and HandleBatch.
type ConsumerOptions struct {
	// Name of the consumer in logs, metrics and quarantine records (the durable's name).
	Name string
	// Kinds decodes readings (required).
	Kinds *reading.Registry
	Mode  Mode
	// Handle is called with each message as it arrives; the message is acknowledged when it
	// returns nil.
	Handle func(ctx context.Context, m *Msg) error
	// HandleBatch is called with the messages held when FlushBytes or FlushInterval is
	// reached (and with what is held when a drain ends); they are acknowledged when it
	// returns nil. Only with ModeRetryInPlace.
	HandleBatch func(ctx context.Context, msgs []*Msg) error
	// FlushBytes and FlushInterval bound what HandleBatch consumers hold (default 64 MiB, 5 s).
	FlushBytes    int64
	FlushInterval time.Duration
	// FetchMessages and FetchBytes bound one pull (default 256 messages, DefaultPullBytes).
	// Pulls are bounded by bytes, never by count alone: see FollowerPullBytes. A message
	// larger than FetchBytes is fetched by the next pull, of FollowerPullBytes.
	FetchMessages int
	FetchBytes    int
	// FetchWait is how long one pull waits for messages (default 1 s; HandleBatch consumers
	// wait at most until the next flush is due). Stopping waits for the open pull to end.
	FetchWait time.Duration
	// Backoff between attempts after a handler error (default 1 s to 1 min).
	Backoff Backoff
	// MaxDeliver terminates a message whose handler failed on its MaxDeliver-th delivery
	// (ModeRedeliver; 0: never, the message is retried for as long as the stream keeps it).
	MaxDeliver int
	// Skip, if set, is asked first: a message it returns true for is acknowledged without
	// being decoded or handled (e.g. a processor that reads only some kinds).
	Skip func(m *Msg) bool
	// Filter narrows what is decoded for Handle (see Filter): the readings of kinds the
	// processor does not use are left out or kept brief. A message quarantined by such a
	// consumer is decoded in full for the quarantine.
	Filter Filter
	// KeepUndecodable hands messages that are not batch envelopes to the handler with Err
	// set instead of terminating them (the lake writer keeps them in its quarantine table).
	KeepUndecodable bool
	// Quarantine receives a description of every message the consumer terminated. It should
	// not block; its error is logged.
	Quarantine func(ctx context.Context, p Poisoned) error
	// DecodeWorkers decode a batch's envelopes in parallel (HandleBatch only; default 1).
	DecodeWorkers int
	// Stop, when closed, makes Run drain: it pulls with short waits until the consumer has
	// been handed every message of the stream, hands what it holds to the handler and
	// returns. DrainAttempts bounds the handler attempts of that last batch (default 3).
	Stop          <-chan struct{}
	DrainAttempts int
	// Between, if set, is called after every pull with the number of messages held (the
	// lake writer's housekeeping: catch-up of tables set aside, lag, compaction).
	Between func(ctx context.Context, draining bool, held int)
}

// Consumer runs the consumer loop for one processor. Create it with NewConsumer and drive it
// with Run (several Runs one after the other, never at once: the live feed follows the
// stream only while someone listens).
type Consumer struct {
	log     *slog.Logger
	o       ConsumerOptions
	parsers []*reading.Parser

	handled     prometheus.Counter
	redelivered prometheus.Counter
	poisoned    *prometheus.CounterVec

	heldMu    sync.Mutex
	heldSince time.Time // stream time of the oldest message held (HandleBatch), zero when none

	bigPull bool // the last pull ended at once without a message: the next asks for FollowerPullBytes
}

// DefaultPullBytes bounds a consumer's pull: 2 MiB of stored messages, about 20 MB of
// envelopes at an import's compression (an envelope of 5,000 readings is a 230 KB frame).
// Every byte pulled is held by the client until handled, and copied by the server on its
// way, for each consumer; a pull of FollowerPullBytes (16 MiB of frames) would hold
// half a minute of a processor's work. A message larger than the pull's bytes is not
// delivered (the server ends the pull without it): the next pull asks for
// FollowerPullBytes.
const DefaultPullBytes = 2 << 20

// Consumer metrics; one family for every consumer, by consumer name.
var (
	handledOpts = prometheus.CounterOpts{Name: "pulselake_stream_consumer_handled_total",
		Help: "Ingest stream messages a processor handled and acknowledged, by consumer."}
	redeliveredOpts = prometheus.CounterOpts{Name: "pulselake_stream_consumer_retries_total",
		Help: "Handler failures of a processor: messages negatively acknowledged to be delivered again, or batches retried in place, by consumer."}
	poisonedOpts = prometheus.CounterOpts{Name: "pulselake_stream_consumer_poisoned_total",
		Help: "Messages a processor terminated and quarantined (never delivered to it again), by consumer and reason."}
)

// NewConsumer returns a consumer loop. Its metrics are registered once per registry and
// shared by every consumer (label consumer).
func NewConsumer(log *slog.Logger, reg prometheus.Registerer, o ConsumerOptions) (*Consumer, error) {
	if o.Kinds == nil || o.Name == "" {
		return nil, errors.New("creating stream consumer: a name and a kind registry are required")
	}
	if (o.Handle == nil) == (o.HandleBatch == nil) {
		return nil, fmt.Errorf("creating stream consumer %s: exactly one of Handle and HandleBatch is required", o.Name)
	}
	if o.HandleBatch != nil && o.Mode != ModeRetryInPlace {
		return nil, fmt.Errorf("creating stream consumer %s: HandleBatch needs ModeRetryInPlace", o.Name)
	}
	if o.FlushBytes <= 0 {
		o.FlushBytes = 64 << 20
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 5 * time.Second
	}
	if o.FetchMessages <= 0 {
		o.FetchMessages = 256
	}
	if o.FetchBytes <= 0 {
		o.FetchBytes = DefaultPullBytes
	}
	if o.FetchWait <= 0 {
		o.FetchWait = time.Second
	}
	if o.Backoff.Min <= 0 {
		o.Backoff.Min = time.Second
	}
	if o.Backoff.Max < o.Backoff.Min {
		o.Backoff.Max = max(o.Backoff.Min, time.Minute)
	}
	if o.DecodeWorkers <= 0 {
		o.DecodeWorkers = 1
	}
	if o.DrainAttempts <= 0 {
		o.DrainAttempts = 3
	}
	if o.Filter.active() {
		if o.HandleBatch != nil {
			return nil, fmt.Errorf("creating stream consumer %s: a Filter is for Handle consumers", o.Name)
		}
		uses, reg := o.Filter.Kinds, o.Kinds
		o.Filter.Kinds = func(kind string) bool {
			_, known := reg.Kind(kind)
			return !known || uses(kind) // an unknown kind is parsed, and fails as it would unfiltered
		}
	}
	c := &Consumer{log: log, o: o}
	for range o.DecodeWorkers {
		c.parsers = append(c.parsers, reading.NewParser(o.Kinds))
	}
	handled, err := registerVec(reg, prometheus.NewCounterVec(handledOpts, []string{"consumer"}))
	if err != nil {
		return nil, err
	}
	retried, err := registerVec(reg, prometheus.NewCounterVec(redeliveredOpts, []string{"consumer"}))
	if err != nil {
		return nil, err
	}
	poisoned, err := registerVec(reg, prometheus.NewCounterVec(poisonedOpts, []string{"consumer", "reason"}))
	if err != nil {
		return nil, err
	}
	c.handled = handled.WithLabelValues(o.Name)
	c.redelivered = retried.WithLabelValues(o.Name)
	c.poisoned = poisoned.MustCurryWith(prometheus.Labels{"consumer": o.Name})
	return c, nil
}

// registerVec registers v, or returns the vector already registered under its name.
func registerVec(reg prometheus.Registerer, v *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	if reg == nil {
		return v, nil
	}
	if err := reg.Register(v); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("registering stream consumer metrics: %w", err)
	}
	return v, nil
}

// HeldSince is the stream time of the oldest message a HandleBatch consumer holds and has
// not yet had handled, zero when it holds none. Safe for concurrent use.
func (c *Consumer) HeldSince() time.Time {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	return c.heldSince
}

func (c *Consumer) setHeldSince(t time.Time) {
	c.heldMu.Lock()
	c.heldSince = t
	c.heldMu.Unlock()
}

// errDrainGaveUp ends a drain whose last batch kept failing.
var errDrainGaveUp = errors.New("giving up")

// Run consumes from cons until ctx ends (returning nil, without acknowledging what it holds:
// that is delivered again), or, after Stop was closed, until it drained the consumer. It
// returns an error only when a drain's last batch could not be handled.
func (c *Consumer) Run(ctx context.Context, cons jetstream.Consumer) error {
	var (
		held      []*Msg
		heldBytes int64
		first     time.Time // when the oldest held message arrived
		draining  bool
		stopAt    time.Time // when Stop was seen
	)
	defer c.setHeldSince(time.Time{})
	flush := func() error {
		if len(held) == 0 {
			return nil
		}
		if err := c.handleBatch(ctx, held, draining); err != nil {
			return err
		}
		clear(held) // the decoded batches go now, not when their slots are reused
		held, heldBytes = held[:0], 0
		c.setHeldSince(time.Time{})
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.o.Stop:
			if !draining {
				draining, stopAt = true, time.Now()
			}
		default:
		}
		wait := c.o.FetchWait
		if c.o.HandleBatch != nil {
			wait = time.Second
			if len(held) > 0 {
				wait = min(wait, c.o.FlushInterval-time.Since(first))
			}
			wait = max(wait, 50*time.Millisecond)
		}
		if draining {
			wait = 200 * time.Millisecond
		}
		before := len(held)
		var flushErr error
		got, err := c.pull(ctx, cons, wait, func(m *Msg) {
			if len(held) == 0 {
				first = time.Now()
				c.setHeldSince(m.Stored)
			}
			held = append(held, m)
			heldBytes += int64(PayloadSize(m.Data)) // what it takes decoded, not compressed
			// A pull is bounded by stored (compressed) bytes and can bring several times
			// FlushBytes of envelopes: the batch is handed on as soon as it is full, and the
			// rest of the pull goes to the next one. (A drain's last batch is left whole.)
			if flushErr == nil && !draining && heldBytes >= c.o.FlushBytes {
				flushErr = flush()
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if flushErr != nil {
			return flushErr
		}
		if err != nil {
			c.log.Warn("fetching from the ingest stream", "consumer", c.o.Name, "err", err)
			if draining {
				return flush()
			}
			select {
			case <-ctx.Done():
			case <-c.o.Stop:
			case <-time.After(time.Second):
			}
			continue
		}
		if draining && got == 0 && len(held) == before && c.delivered(ctx, cons) {
			return flush()
		}
		// Messages stored after Stop are not waited for: on a cluster other nodes keep taking
		// readings, and the writer that takes over consumes them.
		if draining && len(held) > 0 && held[len(held)-1].Stored.After(stopAt) {
			return flush()
		}
		if len(held) > 0 && (heldBytes >= c.o.FlushBytes || time.Since(first) >= c.o.FlushInterval) {
			if err := flush(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		if c.o.Between != nil {
			c.o.Between(ctx, draining, len(held))
		}
	}
}

// pull makes one pull request and handles what arrives as it arrives (Handle consumers) or
// passes it to hold (HandleBatch consumers). It returns how many messages Handle got.
func (c *Consumer) pull(ctx context.Context, cons jetstream.Consumer, wait time.Duration, hold func(*Msg)) (int, error) {
	// Pull by count and by bytes (bounded client memory; big envelopes never overrun the
	// connection's pending limits). Bytes alone would size the client's channels for a
	// million messages on every call.
	pullBytes := c.o.FetchBytes
	if c.bigPull {
		pullBytes, c.bigPull = max(pullBytes, FollowerPullBytes), false
	}
	start := time.Now()
	batch, err := cons.Fetch(c.o.FetchMessages, jetstream.FetchMaxBytes(pullBytes), jetstream.FetchMaxWait(wait))
	if err != nil {
		return 0, err
	}
	// A pull that ends well before its wait without a message was most likely refused a
	// message larger than its bytes (the client reports that as no messages).
	got, arrived := 0, 0
	defer func() {
		if arrived == 0 && ctx.Err() == nil && time.Since(start) < wait/2 {
			c.bigPull = true
		}
	}()
	msgs := batch.Messages()
	for {
		var jm jetstream.Msg
		select {
		case <-ctx.Done():
			// Stopping. The pull request stays open at the server until it expires, and what
			// the server sends into it would wait for its ack wait before anyone got it: take
			// everything until it ends and hand it back.
			if c.o.Mode != ModeLive {
				for m := range msgs {
					if w, err := Wrap(m); err == nil {
						c.handBack(w)
					}
				}
			}
			return got, nil
		case m, ok := <-msgs:
			if !ok {
				if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
					c.log.Debug("pull ended", "consumer", c.o.Name, "err", err)
				}
				return got, nil
			}
			jm = m
		}
		arrived++
		m, err := Wrap(jm)
		if err != nil {
			c.log.Warn("skipping a message without metadata", "consumer", c.o.Name, "err", err)
			continue
		}
		got++
		if c.o.Skip != nil && c.o.Skip(m) {
			c.ack(m)
			continue
		}
		if c.o.HandleBatch != nil {
			hold(m)
			continue
		}
		c.handleOne(ctx, m)
	}
}

// handleOne decodes and handles one message, then acknowledges, redelivers or terminates it.
func (c *Consumer) handleOne(ctx context.Context, m *Msg) {
	m.Batch, m.Err = DecodeFiltered(m.Data, c.parsers[0], c.o.Filter)
	m.Batch.Seq = m.Seq
	if m.Err != nil && !c.o.KeepUndecodable {
		if c.o.Mode == ModeLive {
			c.log.Debug("live feed: skipping an undecodable message", "seq", m.Seq, "err", m.Err)
			return
		}
		c.poison(ctx, m, PoisonUndecodable, m.Err)
		return
	}
	err := c.o.Handle(ctx, m)
	switch {
	case err == nil:
		c.ack(m)
		c.handled.Inc()
	case c.o.Mode == ModeLive:
		c.log.Debug("live feed: handler failed; skipping the message", "seq", m.Seq, "err", err)
	case IsPoison(err):
		c.poison(ctx, m, PoisonRejected, err)
	case ctx.Err() != nil:
		c.handBack(m)
	case c.o.MaxDeliver > 0 && m.Delivered >= uint64(c.o.MaxDeliver):
		c.poison(ctx, m, PoisonMaxDeliver, fmt.Errorf("failed %d deliveries, the last: %w", m.Delivered, err))
	default:
		delay := c.o.Backoff.Delay(int(m.Delivered))
		c.redelivered.Inc()
		c.log.Warn("handling a stream message failed; it will be delivered again", "consumer", c.o.Name, "seq", m.Seq,
			"delivery", m.Delivered, "retry_in", delay.Round(time.Millisecond), "err", err)
		if nerr := m.m.NakWithDelay(delay); nerr != nil {
			c.log.Warn("negatively acknowledging a message (it comes back after its ack wait)", "consumer", c.o.Name, "err", nerr)
		}
	}
}

// handleBatch decodes held messages and hands them to HandleBatch until it succeeds, then
// acknowledges them. It gives up only when ctx ends or, draining, after DrainAttempts.
func (c *Consumer) handleBatch(ctx context.Context, msgs []*Msg, draining bool) error {
	DecodeAll(msgs, c.parsers)
	live := msgs[:0:0]
	for _, m := range msgs {
		if m.Err != nil && !c.o.KeepUndecodable {
			c.poison(ctx, m, PoisonUndecodable, m.Err)
			continue
		}
		live = append(live, m)
	}
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			DecodeAll(live, c.parsers) // what the handler released
		}
		err := c.o.HandleBatch(ctx, live)
		if err == nil {
			for _, m := range live {
				c.ack(m)
			}
			c.handled.Add(float64(len(live)))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.redelivered.Inc()
		for _, m := range live {
			_ = m.m.InProgress()
		}
		if draining && attempt >= c.o.DrainAttempts {
			return fmt.Errorf("%w after %d attempts (the messages stay in the stream and are handled on the next start): %w", errDrainGaveUp, attempt, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.o.Backoff.Delay(attempt)):
		}
	}
}

// handBack returns a message to the stream when the consumer stops, so that the next run
// gets it without waiting for its ack wait. The delay, longer than any pull waits, keeps it
// from coming back into the pull request being wound down.
func (c *Consumer) handBack(m *Msg) {
	if c.o.Mode == ModeLive {
		return
	}
	_ = m.m.NakWithDelay(max(c.o.FetchWait, time.Second) + 100*time.Millisecond)
}

func (c *Consumer) ack(m *Msg) {
	if c.o.Mode == ModeLive {
		return
	}
	if err := m.m.Ack(); err != nil {
		// The effect is durable; a lost acknowledgement only means a redelivery, which every
		// processor tolerates.
		c.log.Warn("acknowledging a stream message", "consumer", c.o.Name, "seq", m.Seq, "err", err)
	}
}

// poison terminates m and describes it to Quarantine.
func (c *Consumer) poison(ctx context.Context, m *Msg, reason string, err error) {
	c.poisoned.WithLabelValues(reason).Inc()
	c.log.Error("terminating a stream message: it is never delivered to this consumer again", "consumer", c.o.Name,
		"seq", m.Seq, "subject", m.Subject, "reason", reason, "delivery", m.Delivered, "err", err)
	if c.o.Quarantine != nil {
		p := Poisoned{Consumer: c.o.Name, Reason: reason, Err: err.Error(), Subject: m.Subject, Seq: m.Seq,
			Stored: m.Stored, Delivered: m.Delivered, Data: m.Data}
		if env, err := Payload(m.Data); err == nil {
			p.Data = env // the envelope, not its compressed form
		}
		if m.Err == nil {
			p.Batch = &m.Batch
			if c.o.Filter.active() { // every record, as the quarantine lists them
				if b, err := Decode(m.Data, c.parsers[0]); err == nil {
					b.Seq = m.Seq
					p.Batch = &b
				} else {
					p.Batch = nil
				}
			}
		}
		if qerr := c.o.Quarantine(ctx, p); qerr != nil {
			c.log.Error("recording a terminated message in quarantine", "consumer", c.o.Name, "seq", m.Seq, "err", qerr)
		}
	}
	if terr := m.m.Term(); terr != nil {
		c.log.Warn("terminating a stream message", "consumer", c.o.Name, "seq", m.Seq, "err", terr)
	}
}

// delivered reports whether the consumer has been handed every message of the stream (so
// that a draining consumer may stop). It says yes when the stream cannot be asked.
func (c *Consumer) delivered(ctx context.Context, cons jetstream.Consumer) bool {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := cons.Info(ictx)
	if err != nil {
		c.log.Warn("asking the stream what is left to consume", "consumer", c.o.Name, "err", err)
		return true
	}
	return info.NumPending == 0
}
