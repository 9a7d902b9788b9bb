package stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"
)

// Names of the streams and consumers pulselake creates.
const (
	IngestStream   = "INGEST"               // batches of readings; subjects ingest.<source>
	IngestSubjects = "ingest.>"             // every batch
	MQTTStream     = "$MQTT_msgs"           // the NATS server's store of QoS1 MQTT messages
	MQTTSubjects   = "$MQTT.msgs.>"         // all of them
	MQTTReadings   = "$MQTT.msgs.readings." // the prefix of MQTT readings in MQTTStream
	MQTTConsumer   = "ingest-mqtt"          // pulselake's consumer of MQTT readings
	ReadingsPrefix = "readings."            // NATS subject prefix of MQTT topic readings/<kind>/<device>
	// MQTTRetention is how long raw MQTT messages are kept after pulselake read them.
	MQTTRetention = 24 * time.Hour
)

// PublishTimeout bounds the wait for JetStream's acknowledgement of a published batch.
const PublishTimeout = 15 * time.Second

// ConnOptions configures a connection to the stream.
type ConnOptions struct {
	// URL of an external NATS cluster; empty means the in-process Server.
	URL    string
	Server *Server
	// User and Password authenticate the connection.
	User, Password string
	// Name identifies the connection in the server's monitoring.
	Name string
	// Replicas of streams and buckets: 1 embedded, 3 on a cluster (default 1).
	Replicas int
	// MaxAge is how long the ingest stream keeps batches (default 7 days). Consumers that fall
	// further behind lose data, so it is generous.
	MaxAge time.Duration
	// DuplicateWindow is JetStream's de-duplication window for batch IDs (default 2 min).
	DuplicateWindow time.Duration
	// MaxBytes bounds the ingest stream; when full, new batches are refused (never old ones
	// dropped). 0 means unbounded.
	MaxBytes int64
	// PublishWindow bounds the bytes of batch messages sent to JetStream and not yet
	// acknowledged (default 4 × the largest message: 32 MiB embedded). A publish waits for
	// room at most PublishWait (default 5 s) and then fails with ErrBusy: the stream is
	// slower than intake, the caller should come back later (HTTP 429).
	PublishWindow int64
	PublishWait   time.Duration
	// StoreTimeout bounds how long Publish keeps trying to learn the outcome of a message it
	// sent when the connection drops or no acknowledgement comes (default 30 s).
	StoreTimeout time.Duration
}

// Conn is a connection to the stream with JetStream access.
//
// Batches are published over a second connection of their own, so that acknowledgements
// never queue behind the megabytes delivered to consumers on NC, and a consumer's backlog
// can never delay (or, through the server's slow-consumer limit, drop) intake.
type Conn struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	pubNC  *nats.Conn
	pubJS  jetstream.JetStream
	window *semaphore.Weighted
	// lastAcked is the highest ingest stream sequence acknowledged to Publish.
	lastAcked atomic.Uint64
	opts      ConnOptions
	log       *slog.Logger
	closed    []chan struct{}
}

// Connect connects to the embedded server (in process) or to o.URL.
func Connect(ctx context.Context, log *slog.Logger, o ConnOptions) (*Conn, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.MaxAge == 0 {
		o.MaxAge = 7 * 24 * time.Hour
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.PublishWait == 0 {
		o.PublishWait = 5 * time.Second
	}
	if o.StoreTimeout == 0 {
		o.StoreTimeout = 30 * time.Second
	}
	if o.URL == "" && o.Server == nil {
		return nil, errors.New("connecting to the stream: neither a NATS URL nor an embedded server")
	}
	c := &Conn{opts: o, log: log}
	var err error
	if c.NC, err = c.dial(o.Name, 64<<20); err != nil {
		return nil, err
	}
	// The publishing connection buffers nothing while disconnected: a batch is either sent
	// to the server or known not to be (and then retried or refused, never half-sent).
	if c.pubNC, err = c.dial(o.Name+"-publish", -1); err != nil {
		c.NC.Close()
		return nil, err
	}
	if c.opts.PublishWindow == 0 {
		c.opts.PublishWindow = 4 * c.pubNC.MaxPayload()
	}
	c.window = semaphore.NewWeighted(c.opts.PublishWindow)
	// A store that failed a write (disk full) never answers a publish: without a timeout a
	// publisher would wait for ever instead of getting an error.
	if c.JS, err = jetstream.New(c.NC, jetstream.WithPublishAsyncMaxPending(1024), jetstream.WithPublishAsyncTimeout(PublishTimeout)); err == nil {
		c.pubJS, err = jetstream.New(c.pubNC, jetstream.WithPublishAsyncMaxPending(4096),
			jetstream.WithPublishAsyncTimeout(ackTimeout))
	}
	if err != nil {
		c.NC.Close()
		c.pubNC.Close()
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	return c, nil
}

// ackTimeout is how long a sent batch waits for its acknowledgement before Publish sends it
// again (same message ID: JetStream answers "duplicate" if the first one was stored).
const ackTimeout = 10 * time.Second

func (c *Conn) dial(name string, reconnectBuf int) (*nats.Conn, error) {
	log := c.log.With("connection", name)
	closed := make(chan struct{})
	c.closed = append(c.closed, closed)
	nopts := []nats.Option{
		nats.Name(name),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(reconnectBuf),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Error("stream connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Warn("stream connection restored", "url", nc.ConnectedUrlRedacted()) }),
		// A subscription whose messages are not taken fast enough loses messages here
		// (pulled stream messages come back after their ack wait). It must never go unseen.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
				msgs, bytes, _ := sub.Pending()
				log.Error("slow consumer: the client dropped messages of a subscription", "subject", sub.Subject, "pending_msgs", msgs, "pending_bytes", bytes)
				return
			}
			log.Error("stream connection error", "err", err)
		}),
	}
	if c.opts.User != "" {
		nopts = append(nopts, nats.UserInfo(c.opts.User, c.opts.Password))
	}
	if c.opts.URL == "" {
		nopts = append(nopts, nats.InProcessServer(c.opts.Server.NATS()))
	}
	nc, err := nats.Connect(c.opts.URL, nopts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS %s: %w", redact(c.opts.URL), err)
	}
	return nc, nil
}

func redact(url string) string {
	if i := strings.Index(url, "@"); i >= 0 {
		if j := strings.Index(url, "://"); j >= 0 && j < i {
			return url[:j+3] + "***" + url[i:]
		}
	}
	return url
}

// Ready reports whether both connections are up and JetStream answers.
func (c *Conn) Ready(ctx context.Context) error {
	if !c.NC.IsConnected() || !c.pubNC.IsConnected() {
		return errors.New("not connected to NATS")
	}
	if _, err := c.JS.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	return nil
}

// Replicas is the replica count for streams and buckets.
func (c *Conn) Replicas() int { return c.opts.Replicas }

// Setup creates the ingest stream and the MQTT readings consumer if they do not exist, and
// updates the ingest stream's limits if they changed. On a cluster that is still assembling
// (too few nodes up to place the replicas, no leader yet) it keeps trying until ctx ends.
func (c *Conn) Setup(ctx context.Context) error {
	return c.untilPlaced(ctx, c.setup)
}

// untilPlaced runs f until it succeeds, fails for a reason other than the cluster lacking
// nodes or a leader, or ctx ends. Without replicas it runs f once.
func (c *Conn) untilPlaced(ctx context.Context, f func(context.Context) error) error {
	if c.opts.Replicas <= 1 {
		return f(ctx)
	}
	logged := time.Time{}
	for {
		// While the cluster assembles, a request may go unanswered: each attempt gets its own
		// deadline.
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		var apiErr *jetstream.APIError
		switch {
		case errors.As(err, &apiErr):
			switch apiErr.ErrorCode {
			case 10005, 10008, 10023: // no suitable peers, JetStream temporarily unavailable, insufficient resources
			default:
				return err
			}
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders):
		default:
			return err
		}
		if time.Since(logged) > 10*time.Second {
			c.log.Info("waiting for enough cluster nodes to place the streams' replicas", "err", err)
			logged = time.Now()
		}
		if !sleep(ctx, 500*time.Millisecond) {
			return fmt.Errorf("%w (start every node of cluster.routes; replicas need that many nodes)", err)
		}
	}
}

func (c *Conn) setup(ctx context.Context) error {
	maxMsg := int32(c.NC.MaxPayload())
	cfg := jetstream.StreamConfig{
		Name:        IngestStream,
		Description: "pulselake readings: batch envelopes, accepted and rejected records",
		Subjects:    []string{IngestSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      c.opts.MaxAge,
		MaxBytes:    orUnlimited(c.opts.MaxBytes),
		// No limit in practice (a few subjects, one per source), but it makes the server
		// store the stream in 4 MiB message blocks instead of 8 MiB when MaxBytes is
		// unlimited: the server keeps every block read or written in the last 10 s in
		// memory, a whole block each, so smaller blocks hold less beyond what was used.
		MaxMsgsPerSubject: IngestMaxMsgsPerSubject,
		MaxMsgSize:        maxMsg,
		Duplicates:        c.opts.DuplicateWindow,
		Replicas:          c.opts.Replicas,
	}
	if _, err := c.JS.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("creating stream %s: %w", IngestStream, err)
	}
	// The NATS server creates this stream on the first MQTT connection (with interest
	// retention); create it first. Limits retention instead of interest: acknowledging a
	// message then costs no delete (and no second fsync per message), and messages stay for
	// MQTTRetention, which also makes them replayable. MQTT subscribers are unaffected.
	mcfg := jetstream.StreamConfig{
		Name:      MQTTStream,
		Subjects:  []string{MQTTSubjects},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		MaxAge:    MQTTRetention,
		Replicas:  c.opts.Replicas,
	}
	if _, err := c.JS.CreateStream(ctx, mcfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("creating stream %s: %w", MQTTStream, err)
	}
	// The consumer takes every message of the stream, and the reader skips those outside
	// MQTTReadings. A filter would do the same, but the file store finds the next message of
	// a wildcard filter by matching it against every subject (every device's topic) of a
	// message block, for each message delivered: with thousands of devices that is most of
	// the consumer's cost, where an unfiltered consumer reads the next message directly.
	_, err := c.JS.CreateOrUpdateConsumer(ctx, MQTTStream, jetstream.ConsumerConfig{
		Durable:       MQTTConsumer,
		Description:   "pulselake: validates MQTT readings into the ingest stream",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 20000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      c.opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("creating consumer %s on %s: %w", MQTTConsumer, MQTTStream, err)
	}
	return nil
}

// IngestMaxMsgsPerSubject is the ingest stream's limit of messages per subject: none in
// practice. The server sizes a stream's message blocks from its limits (MaxBytes first,
// then MaxMsgs, then a per-subject limit: 4 MiB blocks), and 8 MiB without any.
const IngestMaxMsgsPerSubject = math.MaxInt64

func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// SubjectFor is the ingest stream subject of a source ("connector:fitbit" → ingest.connector.fitbit).
func SubjectFor(source string) string {
	return "ingest." + strings.ReplaceAll(source, ":", ".")
}

// Publish errors. Every error of Publish says whether the batch may have been stored.
var (
	// ErrBusy: the publish window stayed full for PublishWait; nothing was sent.
	ErrBusy = errors.New("the stream is busy: too many batches waiting to be stored")
	// ErrNotStored: the batch was refused or could not be sent; nothing of it was stored.
	ErrNotStored = errors.New("the batch was not stored")
	// ErrUnconfirmed: the batch was sent but its acknowledgement never came; it may or may
	// not be stored. Re-sending it is safe (it is de-duplicated).
	ErrUnconfirmed = errors.New("the stream did not confirm storing the batch; it may have been stored")
)

// RecordTooLargeError reports an entry whose encoding alone exceeds the message limit.
type RecordTooLargeError struct {
	Entry int // index in Batch.Entries
	Size  int // bytes of its envelope
	Limit int // the largest envelope
}

func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("record %d alone needs %d bytes in the stream, above the %d-byte message limit", e.Entry, e.Size, e.Limit)
}

// Publish writes a batch to the ingest stream and returns when JetStream has stored it.
// A batch larger than the server's largest message is split into several messages; each
// carries a Nats-Msg-Id derived from its records, so re-sending the same records within the
// duplicate window stores nothing new. It returns how many messages JetStream reported as
// duplicates.
//
// Publishing is flow-controlled: the bytes sent and not yet acknowledged are bounded by the
// publish window. A message whose acknowledgement is lost (connection dropped, timeout) is
// sent again with the same ID until JetStream answers or StoreTimeout passes, so that the
// outcome reported is the true one. On error nothing was acknowledged; the error wraps
// ErrBusy, ErrNotStored or ErrUnconfirmed, or is a *RecordTooLargeError (nothing sent).
func (c *Conn) Publish(ctx context.Context, b *Batch) (dupMsgs int, err error) {
	if len(b.Entries) == 0 {
		return 0, nil
	}
	held, err := c.reserve(ctx, b)
	if err != nil {
		return 0, err
	}
	defer c.window.Release(held)
	msgs, err := c.encode(b)
	if err != nil {
		return 0, err
	}
	sctx, cancel := context.WithTimeout(ctx, c.opts.StoreTimeout)
	defer cancel()
	// maybe[i]: message i may be stored (acknowledged, or sent with its outcome lost).
	maybe := make([]bool, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		if f, err := c.pubJS.PublishMsgAsync(m); err == nil {
			futures[i], maybe[i] = f, true
		}
	}
	for i, m := range msgs {
		dup, mayBeStored, err := c.confirm(sctx, m, futures[i])
		maybe[i] = mayBeStored
		if err != nil {
			if slices.Contains(maybe, true) {
				return dupMsgs, fmt.Errorf("%w: storing batch in %s: %w", ErrUnconfirmed, IngestStream, err)
			}
			return dupMsgs, fmt.Errorf("%w: storing batch in %s: %w", ErrNotStored, IngestStream, err)
		}
		if dup {
			dupMsgs++
		}
	}
	return dupMsgs, nil
}

// reserve takes room for b in the publish window, waiting up to PublishWait, and returns
// how much it took. Room is taken before encoding, by an estimate (an entry is about twice
// its raw payload), so that batches waiting for room hold no envelope.
func (c *Conn) reserve(ctx context.Context, b *Batch) (int64, error) {
	size := int64(0)
	for i := range b.Entries {
		size += 2*int64(len(b.Entries[i].Raw)) + 160
	}
	held := min(size, c.opts.PublishWindow)
	wctx, cancel := context.WithTimeout(ctx, c.opts.PublishWait)
	err := c.window.Acquire(wctx, held)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%w: %w", ErrNotStored, ctx.Err())
		}
		return 0, fmt.Errorf("%w (no room in %s for %s)", ErrBusy, c.opts.PublishWait, byteSize(size))
	}
	return held, nil
}

// confirm waits for JetStream's answer to message m, already sent as f (nil: not sent
// yet), and sends m again, with the same ID, while the answer is lost, until ctx ends. It
// reports whether JetStream called m a duplicate, and whether m may be stored (answered,
// or sent with its outcome lost), which tells on error whether the batch is unconfirmed.
func (c *Conn) confirm(ctx context.Context, m *nats.Msg, f jetstream.PubAckFuture) (dup, maybe bool, err error) {
	for {
		if f == nil { // (re)send, once connected
			if !c.pubNC.IsConnected() && !c.waitConnected(ctx) {
				return false, maybe, fmt.Errorf("not connected: %w", ctx.Err())
			}
			var err error
			if f, err = c.pubJS.PublishMsgAsync(m); err != nil {
				f = nil
				if !sleep(ctx, 100*time.Millisecond) {
					return false, maybe, err
				}
				continue
			}
		}
		var err error
		select {
		case ack := <-f.Ok():
			c.noteAcked(ack.Sequence)
			return ack.Duplicate, true, nil
		case err = <-f.Err():
		case <-ctx.Done():
			return false, true, ctx.Err()
		}
		if err == nil {
			return false, maybe, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) { // JetStream answered: not stored
			return false, maybe, err
		}
		if !errors.Is(err, nats.ErrNoResponders) { // sent, answer lost: ask again
			maybe = true
		}
		if c.opts.Server != nil { // the embedded store failed a write (disk full): it will not answer
			if msg, _ := c.opts.Server.werr.get(); msg != "" {
				return false, maybe, fmt.Errorf("%w (the stream store failed a write: %s)", err, msg)
			}
		}
		if !errors.Is(err, nats.ErrNoResponders) {
			c.log.Warn("batch sent but not acknowledged; sending it again to learn whether it was stored", "err", err)
		}
		f = nil
		if !sleep(ctx, 50*time.Millisecond) {
			return false, maybe, err
		}
	}
}

// noteAcked raises lastAcked to seq if it is higher.
func (c *Conn) noteAcked(seq uint64) {
	for last := c.lastAcked.Load(); seq > last && !c.lastAcked.CompareAndSwap(last, seq); {
		last = c.lastAcked.Load()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func (c *Conn) waitConnected(ctx context.Context) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !c.pubNC.IsConnected() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// encode splits a batch into messages of at most the message limit. Nothing is sent when an
// entry alone does not fit.
func (c *Conn) encode(b *Batch) ([]*nats.Msg, error) {
	limit := int(c.pubNC.MaxPayload()) - 1024 // headers
	subject := SubjectFor(b.Source)
	var msgs []*nats.Msg
	header := b.encodeHeader(nil)
	var entry []byte
	for start := 0; start < len(b.Entries); {
		// Size the message from the entries' raw lengths (an entry is about twice its raw
		// payload) so that it is not reallocated while growing.
		est := len(header) + 1
		for j := start; j < len(b.Entries) && est < limit; j++ {
			est += 2*len(b.Entries[j].Raw) + 160
		}
		buf := append(make([]byte, 0, min(est, limit+1)), header...)
		end := start
		var kinds []string
		for end < len(b.Entries) {
			entry = b.Entries[end].encode(entry[:0])
			if len(header)+2+len(entry) > limit {
				return nil, &RecordTooLargeError{Entry: end, Size: len(header) + 2 + len(entry), Limit: limit}
			}
			if len(buf)+2+len(entry) > limit {
				break
			}
			buf = append(append(buf, '\n'), entry...)
			if r := b.Entries[end].Reading; r != nil && !slices.Contains(kinds, r.Kind) {
				kinds = append(kinds, r.Kind)
			}
			end++
		}
		buf = append(buf, '\n')
		msg := &nats.Msg{Subject: subject, Data: Compress(buf), Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, batchID(b.Source, buf))
		slices.Sort(kinds)
		msg.Header.Set(KindsHeader, strings.Join(kinds, ","))
		msgs = append(msgs, msg)
		start = end
	}
	return msgs, nil
}

func byteSize(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// KindsHeader is a header of every ingest stream message: the kinds of its accepted
// readings, sorted, comma-separated (empty when it holds none). A processor that uses some
// kinds only skips the other messages without decompressing them (Msg.Kinds).
const KindsHeader = "Pulselake-Kinds"

// batchID hashes the records of an envelope (not its header, which holds the receive time),
// so the same records re-sent get the same ID.
func batchID(source string, envelope []byte) string {
	_, records, _ := bytes.Cut(envelope, []byte{'\n'})
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(records)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// KV opens the named key-value bucket, creating it if needed.
func (c *Conn) KV(ctx context.Context, bucket, description string) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := c.untilPlaced(ctx, func(ctx context.Context) (err error) {
		kv, err = c.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: description,
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    c.opts.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening key-value bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// Close drains the connections: pending publishes complete, subscriptions stop.
func (c *Conn) Close() {
	for _, i := range []int{1, 0} { // publishing first, then consumers
		nc := []*nats.Conn{c.NC, c.pubNC}[i]
		if err := nc.Drain(); err != nil {
			nc.Close()
		}
		select {
		case <-c.closed[i]:
		case <-time.After(30 * time.Second):
			c.log.Warn("stream connection did not drain in 30s; closing")
			nc.Close()
		}
	}
}
