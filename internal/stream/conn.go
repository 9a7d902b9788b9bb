package stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the streams and consumers pulselake creates.
const (
	IngestStream   = "INGEST"       // batches of readings; subjects ingest.<source>
	IngestSubjects = "ingest.>"     // every batch
	MQTTStream     = "$MQTT_msgs"   // the NATS server's store of QoS1 MQTT messages
	MQTTSubjects   = "$MQTT.msgs.>" // all of them
	MQTTReadings   = "$MQTT.msgs.readings.>"
	MQTTConsumer   = "ingest-mqtt" // pulselake's consumer of MQTT readings
	ReadingsPrefix = "readings."   // NATS subject prefix of MQTT topic readings/<kind>/<device>
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
}

// Conn is a connection to the stream with JetStream access.
type Conn struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	opts   ConnOptions
	log    *slog.Logger
	closed chan struct{}
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
	closed := make(chan struct{})
	nopts := []nats.Option{
		nats.Name(o.Name),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("stream connection lost; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("stream connection restored", "url", nc.ConnectedUrlRedacted()) }),
	}
	if o.User != "" {
		nopts = append(nopts, nats.UserInfo(o.User, o.Password))
	}
	url := o.URL
	if url == "" {
		if o.Server == nil {
			return nil, errors.New("connecting to the stream: neither a NATS URL nor an embedded server")
		}
		nopts = append(nopts, nats.InProcessServer(o.Server.NATS()))
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS %s: %w", redact(url), err)
	}
	// A store that failed a write (disk full) never answers a publish: without a timeout the
	// request would wait for ever instead of getting 503.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024), jetstream.WithPublishAsyncTimeout(PublishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	return &Conn{NC: nc, JS: js, opts: o, log: log, closed: closed}, nil
}

func redact(url string) string {
	if i := strings.Index(url, "@"); i >= 0 {
		if j := strings.Index(url, "://"); j >= 0 && j < i {
			return url[:j+3] + "***" + url[i:]
		}
	}
	return url
}

// Replicas is the replica count for streams and buckets.
func (c *Conn) Replicas() int { return c.opts.Replicas }

// Setup creates the ingest stream and the MQTT readings consumer if they do not exist, and
// updates the ingest stream's limits if they changed.
func (c *Conn) Setup(ctx context.Context) error {
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
		MaxMsgSize:  maxMsg,
		Duplicates:  c.opts.DuplicateWindow,
		Replicas:    c.opts.Replicas,
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
	_, err := c.JS.CreateOrUpdateConsumer(ctx, MQTTStream, jetstream.ConsumerConfig{
		Durable:       MQTTConsumer,
		Description:   "pulselake: validates MQTT readings into the ingest stream",
		FilterSubject: MQTTReadings,
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

// Publish writes a batch to the ingest stream and returns when JetStream has stored it.
// A batch larger than the server's largest message is split into several messages; each
// carries a Nats-Msg-Id derived from its records, so re-sending the same records within the
// duplicate window stores nothing new. It returns how many messages JetStream reported as
// duplicates.
func (c *Conn) Publish(ctx context.Context, b *Batch) (dupMsgs int, err error) {
	if len(b.Entries) == 0 {
		return 0, nil
	}
	limit := int(c.NC.MaxPayload()) - 1024 // headers
	var futures []jetstream.PubAckFuture
	subject := SubjectFor(b.Source)
	start := 0
	for start < len(b.Entries) {
		end := start
		// Grow the chunk while it fits. Envelope sizes are linear in entries, so encode once
		// per entry appended.
		buf := b.encodeHeader(nil)
		for end < len(b.Entries) {
			before := len(buf)
			buf = append(buf, '\n')
			buf = b.Entries[end].encode(buf)
			if len(buf) > limit && end > start {
				buf = buf[:before]
				break
			}
			end++
		}
		buf = append(buf, '\n')
		if len(buf) > limit {
			return 0, fmt.Errorf("publishing batch: record %d alone is %d bytes, above the %d-byte message limit", start, len(buf), limit)
		}
		msg := &nats.Msg{Subject: subject, Data: buf, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, batchID(b.Source, buf))
		f, err := c.JS.PublishMsgAsync(msg)
		if err != nil {
			return 0, fmt.Errorf("publishing batch to %s: %w", subject, err)
		}
		futures = append(futures, f)
		start = end
	}
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				dupMsgs++
			}
		case err := <-f.Err():
			return dupMsgs, fmt.Errorf("storing batch in %s: %w", IngestStream, err)
		case <-ctx.Done():
			return dupMsgs, fmt.Errorf("storing batch in %s: %w", IngestStream, ctx.Err())
		}
	}
	return dupMsgs, nil
}

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
	kv, err := c.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: description,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    c.opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("opening key-value bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// Close drains the connection: pending publishes complete, subscriptions stop.
func (c *Conn) Close() {
	if err := c.NC.Drain(); err != nil {
		c.NC.Close()
	}
	select {
	case <-c.closed:
	case <-time.After(30 * time.Second):
		c.log.Warn("stream connection did not drain in 30s; closing")
		c.NC.Close()
	}
}
