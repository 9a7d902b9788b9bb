package lake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulselake/pulselake/internal/stream"
)

// How the lake writer reads the ingest stream. The lake is its own cursor: the writer reads
// with an ephemeral consumer (in memory, in order, no acknowledgements) starting just after
// the position the writer last committed. That position is kept in the durable consumer
// ConsumerName, which nothing pulls from: after each commit the writer resets it to the next
// sequence, so that its ack floor is the committed position (replicated with the consumer),
// which the stream's trimming of processed batches and the erasure of a subject's messages
// read as the ack floor of every durable consumer. A durable pull consumer's delivery state
// is never relied on: after a leader change under load a whole pull could be delivered where
// the writer never got it, and redelivered after later messages were committed.
//
// The feed also checks the stream sequences it hands out: each follows the one before it,
// unless the stream holds nothing between them (messages removed by retention, trimming or
// erasure). Otherwise it reads again from the first missing one, so that no table's
// watermark ever passes a message the writer has not had.

// feedWait is how long one Fetch of the feed waits for a first message. The consumer loop
// checks its flush interval and housekeeping after every Fetch.
const feedWait = 250 * time.Millisecond

// feedPullWait is how long one pull of the feed's consumer stays open at the server.
const feedPullWait = 10 * time.Second

// feed reads the ingest stream in order from a start sequence. It implements the parts of
// jetstream.Consumer that stream.Consumer.Run uses (Fetch and Info).
type feed struct {
	log        *slog.Logger
	js         jetstream.JetStream
	maxBytes   int
	pullMsgs   int
	pullBytes  int
	msgs       chan jetstream.Msg // from the reading goroutine, in order
	handed     uint64             // the last stream sequence Fetch returned (Fetch's caller only)
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	gaps       int // times a gap made the feed read again (reading goroutine only)
	recreateIn time.Duration
}

// startFeed starts reading the ingest stream at stream sequence from (at least 1) until
// ctx ends or close is called.
func startFeed(ctx context.Context, log *slog.Logger, js jetstream.JetStream, from uint64, fetchMsgs, fetchBytes int) *feed {
	from = max(from, 1)
	ctx, cancel := context.WithCancel(ctx)
	f := &feed{log: log, js: js, maxBytes: fetchBytes, pullMsgs: fetchMsgs, pullBytes: fetchBytes,
		msgs: make(chan jetstream.Msg, fetchMsgs), handed: from - 1, cancel: cancel, recreateIn: time.Second}
	f.wg.Go(func() { f.read(ctx, from) })
	return f
}

// close stops the reading goroutine and waits for it.
func (f *feed) close() {
	f.cancel()
	f.wg.Wait()
}

// read runs a consumer from next on, handing its messages to msgs, and starts it
// again (from the first message not handed on) when it fails or skips a message.
func (f *feed) read(ctx context.Context, next uint64) {
	for ctx.Err() == nil {
		n, err := f.readFrom(ctx, next)
		next = n
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("lake writer: reading the ingest stream again", "from_seq", next, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.recreateIn):
		}
	}
}

// errGap reports messages the consumer skipped (a pull cut short).
var errGap = errors.New("the stream delivered a message after a gap that holds stored messages")

// readFrom reads with one ephemeral consumer (in memory, no acknowledgements, one pull at a
// time) and returns the next sequence to read from when it stops (ctx ended, a pull failed,
// or a gap).
//
// One pull at a time, by Fetch, because a pull's messages wait in a client channel with room
// for twice the pull's count: however long the writer takes (a flush, a full disk), what the
// server sends into that pull (its messages, then a timeout status) fits. A continuous pull
// (Messages, Consume) keeps several requests open, and their heartbeats and timeout statuses
// could overrun its channel while the writer was busy: the client then dropped messages as a
// slow consumer, and the writer stalled until the consumer was created again.
func (f *feed) readFrom(ctx context.Context, next uint64) (uint64, error) {
	s, err := f.js.Stream(ctx, stream.IngestStream)
	if err != nil {
		return next, fmt.Errorf("opening stream %s: %w", stream.IngestStream, err)
	}
	c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		// Its own name: another writer's consumer may outlive it by InactiveThreshold.
		Name:              fmt.Sprintf("lake_writer_%016x", rand.Uint64()),
		FilterSubject:     stream.IngestSubjects,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       next,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return next, fmt.Errorf("creating a consumer of %s: %w", stream.IngestStream, err)
	}
	defer func() {
		// Deleting it also ends a pull still open at the server.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.DeleteConsumer(dctx, c.CachedInfo().Name)
	}()
	// A message as large as the stream allows always fits a pull (one that does not fit is
	// refused by the server, and the pull would end empty every time).
	pullBytes := max(f.pullBytes, stream.FollowerPullBytes)
	for {
		batch, err := c.Fetch(f.pullMsgs, jetstream.FetchMaxBytes(pullBytes), jetstream.FetchMaxWait(feedPullWait))
		if err != nil {
			return next, fmt.Errorf("pulling from %s: %w", stream.IngestStream, err)
		}
		if next, err = f.handOn(ctx, s, batch, next); err != nil {
			return next, err
		}
	}
}

// handOn hands the messages of one pull to msgs, in order, and returns the next sequence to
// read. A pull that ends with an error other than its wait passing returns it: a consumer
// that stops answering (its node died, it was removed after a long stall) is noticed by the
// next pull at the latest and created again after the last message handed on.
func (f *feed) handOn(ctx context.Context, s jetstream.Stream, batch jetstream.MessageBatch, next uint64) (uint64, error) {
	msgs := batch.Messages()
	stop := func(err error) (uint64, error) {
		// The pull ends within its wait, or at once when its consumer is deleted.
		go func() {
			for range msgs {
			}
		}()
		return next, err
	}
	for {
		var m jetstream.Msg
		select {
		case <-ctx.Done():
			return stop(ctx.Err())
		case mm, ok := <-msgs:
			if !ok {
				return next, pullErr(batch)
			}
			m = mm
		}
		meta, err := m.Metadata()
		if err != nil {
			return stop(fmt.Errorf("reading message metadata: %w", err))
		}
		seq := meta.Sequence.Stream
		if seq < next {
			continue // handed on already
		}
		if seq > next {
			if err := f.nothingBetween(ctx, s, next, seq); err != nil {
				f.gaps++
				return stop(err)
			}
		}
		select {
		case f.msgs <- noAck{m}:
		case <-ctx.Done():
			return stop(ctx.Err())
		}
		next = seq + 1
	}
}

// pullErr is the error a pull ended with, nil when it ended by its wait or had nothing.
func pullErr(batch jetstream.MessageBatch) error {
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
		return fmt.Errorf("pulling from %s: %w", stream.IngestStream, err)
	}
	return nil
}

// nothingBetween reports nil when the stream holds no message from from up to (not
// including) to.
func (f *feed) nothingBetween(ctx context.Context, s jetstream.Stream, from, to uint64) error {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := s.GetMsg(gctx, from, jetstream.WithGetMsgSubject(stream.IngestSubjects))
	if err != nil {
		return fmt.Errorf("%w: checking %d..%d: %w", errGap, from, to-1, err)
	}
	if m.Sequence < to {
		return fmt.Errorf("%w: got %d, expected %d (stored)", errGap, to, m.Sequence)
	}
	return nil
}

// Fetch returns up to n messages in stream order: it waits up to feedWait for the first one
// and takes what else has arrived, up to the feed's byte limit. Its options are not read
// (the feed's limits apply).
func (f *feed) Fetch(n int, _ ...jetstream.FetchOpt) (jetstream.MessageBatch, error) {
	out := make(chan jetstream.Msg, n)
	b := &feedBatch{msgs: out}
	defer close(out)
	t := time.NewTimer(feedWait)
	defer t.Stop()
	size := 0
	for len(out) < n && size < f.maxBytes {
		var m jetstream.Msg
		if len(out) == 0 {
			select {
			case m = <-f.msgs:
			case <-t.C:
				return b, nil
			}
		} else {
			select {
			case m = <-f.msgs:
			default:
				return b, nil
			}
		}
		meta, err := m.Metadata()
		if err != nil || meta.Sequence.Stream <= f.handed {
			// The reading goroutine hands on each sequence once, in order.
			return b, fmt.Errorf("lake writer feed: message out of order after %d", f.handed)
		}
		f.handed = meta.Sequence.Stream
		size += len(m.Data())
		out <- m
	}
	return b, nil
}

// Info reports, in NumPending, whether the stream holds messages after the last one Fetch
// returned (0 when none, else how many sequences the stream has after it, deleted ones
// included): the consumer loop's drain asks it.
func (f *feed) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	s, err := f.js.Stream(ctx, stream.IngestStream)
	if err != nil {
		return nil, err
	}
	_, err = s.GetMsg(ctx, f.handed+1, jetstream.WithGetMsgSubject(stream.IngestSubjects))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return &jetstream.ConsumerInfo{Stream: stream.IngestStream}, nil
	}
	if err != nil {
		return nil, err
	}
	si, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	return &jetstream.ConsumerInfo{Stream: stream.IngestStream, NumPending: max(si.State.LastSeq-f.handed, 1)}, nil
}

var errFeedOnly = errors.New("the lake writer's feed supports Fetch and Info only")

func (f *feed) CachedInfo() *jetstream.ConsumerInfo {
	return &jetstream.ConsumerInfo{Stream: stream.IngestStream}
}
func (f *feed) FetchBytes(int, ...jetstream.FetchOpt) (jetstream.MessageBatch, error) {
	return nil, errFeedOnly
}
func (f *feed) FetchNoWait(int) (jetstream.MessageBatch, error) { return nil, errFeedOnly }
func (f *feed) Consume(jetstream.MessageHandler, ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	return nil, errFeedOnly
}
func (f *feed) Messages(...jetstream.PullMessagesOpt) (jetstream.MessagesContext, error) {
	return nil, errFeedOnly
}
func (f *feed) Next(...jetstream.FetchOpt) (jetstream.Msg, error) { return nil, errFeedOnly }

type feedBatch struct{ msgs chan jetstream.Msg }

func (b *feedBatch) Messages() <-chan jetstream.Msg { return b.msgs }
func (b *feedBatch) Error() error                   { return nil }

// noAck is a message of the feed's consumer: it takes no acknowledgements (the committed
// position is the writer's cursor), so the consumer loop's are not sent.
type noAck struct{ jetstream.Msg }

func (noAck) Ack() error                       { return nil }
func (noAck) DoubleAck(context.Context) error  { return nil }
func (noAck) Nak() error                       { return nil }
func (noAck) NakWithDelay(time.Duration) error { return nil }
func (noAck) InProgress() error                { return nil }
func (noAck) Term() error                      { return nil }
func (noAck) TermWithReason(string) error      { return nil }
