package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FollowerPullBytes bounds what one consumer of the ingest stream has pulled and not yet
// processed (16 MiB, two of the largest messages). Every consumer on pulselake's connection
// pulls by bytes, never by message count alone: a batch message can be megabytes, and a
// pull of hundreds of them would queue gigabytes for the connection and get it dropped by
// the server as a slow consumer. Use it as jetstream.PullMaxBytes(FollowerPullBytes) with
// Messages or Consume, and jetstream.FetchMaxBytes with Fetch.
const FollowerPullBytes = 2 * DefaultMaxPayload

// Follower configures a durable consumer of the ingest stream for monitoring (rules, anomaly
// detectors, classifiers): it starts with the batches stored after it is first created —
// alerting on the stream's history helps nobody — and resumes where it stopped afterwards.
type Follower struct {
	Durable       string
	Description   string
	AckWait       time.Duration
	MaxAckPending int
}

// followRetry is how long Follow tries again after a request that timed out or found no
// responder: on a cluster node that just rejoined, under load, the first requests can time
// out while the node catches up with the others.
const followRetry = time.Minute

// Follow creates the follower's consumer, or updates it if it exists.
func Follow(ctx context.Context, js jetstream.JetStream, f Follower) (jetstream.Consumer, error) {
	deadline := time.Now().Add(followRetry)
	for {
		c, err := js.CreateOrUpdateConsumer(ctx, IngestStream, jetstream.ConsumerConfig{
			Durable:       f.Durable,
			Description:   f.Description,
			FilterSubject: IngestSubjects,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       f.AckWait,
			MaxAckPending: f.MaxAckPending,
			DeliverPolicy: jetstream.DeliverNewPolicy,
		})
		if err == nil {
			return c, nil
		}
		transient := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
		if !transient || ctx.Err() != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("creating consumer %s: %w", f.Durable, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("creating consumer %s: %w", f.Durable, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
