package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Follower configures a durable consumer of the ingest stream for monitoring (rules, anomaly
// detectors, classifiers): it starts with the batches stored after it is first created —
// alerting on the stream's history helps nobody — and resumes where it stopped afterwards.
type Follower struct {
	Durable       string
	Description   string
	AckWait       time.Duration
	MaxAckPending int
}

// Follow creates the follower's consumer, or updates it if it exists.
func Follow(ctx context.Context, js jetstream.JetStream, f Follower) (jetstream.Consumer, error) {
	c, err := js.CreateOrUpdateConsumer(ctx, IngestStream, jetstream.ConsumerConfig{
		Durable:       f.Durable,
		Description:   f.Description,
		FilterSubject: IngestSubjects,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       f.AckWait,
		MaxAckPending: f.MaxAckPending,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s: %w", f.Durable, err)
	}
	return c, nil
}
