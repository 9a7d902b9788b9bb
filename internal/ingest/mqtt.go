package ingest

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

// TokenVerifier returns the token for a secret or an error.
type TokenVerifier func(secret string) (token.Token, error)

// Auth authenticates the clients of the embedded NATS server: pulselake's own connections
// with the internal user, devices (MQTT) and other clients with an API token as password.
// Ingest tokens may only publish readings (MQTT topic readings/<kind>/<device>); read tokens
// may only subscribe to them.
//
// Subject-bound tokens are refused (MQTT CONNACK "not authorized"): the server stores a QoS 1
// message in $MQTT_msgs with its topic and payload only, not who published it, so the subject
// binding of the publisher cannot be checked when pulselake reads the message; and topics name
// a kind and a device, not a subject, so a subscription cannot be limited to one subject. A
// path that cannot be filtered by subject refuses subject-bound tokens; HTTP is their way in.
type Auth struct {
	Verify           TokenVerifier
	InternalUser     string
	InternalPassword string
	// Log receives a line for each refused subject-bound token; nil discards.
	Log *slog.Logger
}

// Check implements server.Authentication.
func (a *Auth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if o.Username == a.InternalUser && a.InternalUser != "" {
		if subtle.ConstantTimeCompare([]byte(o.Password), []byte(a.InternalPassword)) != 1 {
			return false
		}
		c.RegisterUser(&server.User{Username: o.Username})
		return true
	}
	secret := o.Password
	if secret == "" {
		secret = o.Token
	}
	tok, err := a.Verify(secret)
	if err != nil {
		return false
	}
	if tok.Bound() {
		if a.Log != nil {
			a.Log.Warn("refusing a subject-bound token on the MQTT/NATS listener: messages there carry no publisher identity and subscriptions cannot be limited to one subject, so the binding could not be enforced; use HTTP (POST /v1/readings, GET /v1/events) with this token, or an unbound token here",
				"token", tok.ID, "scope", tok.Scope, "remote", remoteOf(c))
		}
		return false
	}
	perms := &server.Permissions{}
	switch {
	case tok.Scope == token.ScopeAdmin:
		perms = nil
	case tok.Scope.Allows(token.ScopeIngest):
		perms.Publish = &server.SubjectPermission{Allow: []string{stream.ReadingsPrefix + ">"}}
		perms.Subscribe = &server.SubjectPermission{Deny: []string{">"}}
	default:
		perms.Publish = &server.SubjectPermission{Deny: []string{">"}}
		perms.Subscribe = &server.SubjectPermission{Allow: []string{stream.ReadingsPrefix + ">"}}
	}
	// The user is named for the token (whatever user name the client sent), so that
	// DisconnectToken finds every connection opened with it when it is revoked.
	c.RegisterUser(&server.User{Username: tokenUser(tok.ID), Permissions: perms})
	return true
}

func remoteOf(c server.ClientAuthentication) string {
	if a := c.RemoteAddress(); a != nil {
		return a.String()
	}
	return ""
}

// Limits of the MQTT move: a batch holds at most maxMQTTBatch messages and about
// maxMQTTBatchBytes of payload (one message more than that may close it), and each node keeps
// at most mqttBatchesInFlight batches between taking them and acknowledging them.
const (
	maxMQTTBatch        = 1000
	maxMQTTBatchBytes   = 4 << 20
	mqttBatchesInFlight = 4
)

// RunMQTT moves MQTT readings from the NATS server's MQTT store into the ingest stream until
// ctx ends. Messages are taken in groups (up to 1000 or 4 MiB), stored as one batch, then
// acknowledged one by one; a failed store leaves them to be redelivered.
//
// Several batches are in flight at once (mqttBatchesInFlight): while one waits for the ingest
// stream to confirm it (a quorum round trip on a cluster), the next one gathers what arrives
// and is converted and sent when full or when a batch before it is stored. Each message is
// acknowledged on its own and only after its batch is stored, so the order in which batches
// complete does not matter, and every node of a cluster can pull from the same consumer: a
// message is acknowledged by the node that stored it. (Acknowledging a batch at once, "all up
// to N", would be wrong here: N covers other nodes' messages still being stored.)
func (in *Ingester) RunMQTT(ctx context.Context, conn *stream.Conn) error {
	cons, err := conn.JS.Consumer(ctx, stream.MQTTStream, stream.MQTTConsumer)
	if err != nil {
		return err
	}
	msgs := make(chan jetstream.Msg, maxMQTTBatch)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxBytes(2*stream.FollowerPullBytes)) // an MQTT message may be as large as the message limit
	if err != nil {
		return err
	}
	defer cc.Drain()
	g := &mqttGatherer{msgs: msgs, stored: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	for range mqttBatchesInFlight {
		wg.Go(func() {
			batch := make([]jetstream.Msg, 0, maxMQTTBatch)
			for {
				batch = g.next(ctx, batch[:0])
				if len(batch) == 0 {
					return
				}
				in.ingestMQTT(ctx, batch)
				clear(batch) // let the payloads go while waiting for the next batch
				g.done()
			}
		})
	}
	wg.Wait()
	return nil
}

// mqttGatherer hands the MQTT movers their batches, one mover at a time.
type mqttGatherer struct {
	take     sync.Mutex // held by the mover gathering a batch
	msgs     <-chan jetstream.Msg
	inFlight atomic.Int32  // batches being stored
	stored   chan struct{} // a batch was stored (capacity 1: a signal, not a count)
}

// next waits for a message, then appends to batch what else arrives until the batch is full
// (maxMQTTBatch messages or maxMQTTBatchBytes). It sends a partial batch as soon as no other
// batch is being stored (nothing to wait for: the messages go now) or one finishes (the
// stream has room again); while others are being stored it keeps gathering, so that under
// load batches are full instead of many small ones. It returns an empty batch when ctx ends.
// On return the batch counts as in flight until done.
func (g *mqttGatherer) next(ctx context.Context, batch []jetstream.Msg) []jetstream.Msg {
	g.take.Lock()
	defer g.take.Unlock()
	select {
	case <-ctx.Done():
		return batch
	case m := <-g.msgs:
		batch = append(batch, m)
	}
	size := len(batch[0].Data())
	add := func(m jetstream.Msg) {
		batch = append(batch, m)
		size += len(m.Data())
	}
gather:
	for len(batch) < maxMQTTBatch && size < maxMQTTBatchBytes {
		select {
		case m := <-g.msgs:
			add(m)
			continue
		default:
		}
		if g.inFlight.Load() == 0 {
			break
		}
		select {
		case m := <-g.msgs:
			add(m)
		case <-g.stored:
			break gather
		case <-ctx.Done():
			break gather
		}
	}
	g.inFlight.Add(1)
	return batch
}

// done marks a batch returned by next as stored (or given up).
func (g *mqttGatherer) done() {
	g.inFlight.Add(-1)
	select {
	case g.stored <- struct{}{}:
	default:
	}
}

func (in *Ingester) ingestMQTT(ctx context.Context, msgs []jetstream.Msg) {
	recs := make([]Record, 0, len(msgs))
	for _, m := range msgs {
		if !strings.HasPrefix(m.Subject(), stream.MQTTReadings) {
			continue // another topic: not a reading (the consumer takes the whole store)
		}
		topic := strings.TrimPrefix(m.Subject(), "$MQTT.msgs.")
		kind, device := topicParts(topic)
		origin := strings.ReplaceAll(topic, ".", "/")
		parts, err := reading.SplitBody(m.Data(), reading.FormatJSON, in.opts.MaxBatch)
		var mb reading.ErrMalformedBody
		switch {
		case err == nil:
			for _, p := range parts {
				recs = append(recs, Record{Raw: p, Origin: origin, Kind: kind, Device: device})
			}
		case errors.As(err, &mb), errors.As(err, new(reading.ErrTooManyRecords)):
			// Kept whole so the parser rejects it into quarantine.
			recs = append(recs, Record{Raw: m.Data(), Origin: origin, Kind: kind, Device: device})
		}
	}
	// Only unbound tokens can connect (Auth), so every subject is allowed here.
	for len(recs) > 0 {
		_, err := in.IngestWaiting(ctx, stream.SourceMQTT, recs)
		if err == nil {
			break
		}
		// The stream is down; keep the messages (unacked) and retry, as redelivery would.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	for _, m := range msgs {
		_ = m.Ack()
	}
}

// topicParts splits "readings.<kind>.<device>" into kind and device; invalid parts are
// returned empty so the payload's own fields (or their absence) decide.
func topicParts(topic string) (kind, device string) {
	parts := strings.SplitN(strings.TrimPrefix(topic, stream.ReadingsPrefix), ".", 2)
	if len(parts) > 0 {
		kind = parts[0]
	}
	if len(parts) > 1 {
		device = parts[1]
	}
	return kind, device
}
