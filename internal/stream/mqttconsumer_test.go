package stream

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// A data directory whose MQTT consumer still filters on readings (as set up before) gets
// the unfiltered consumer on the next Setup, keeping its position.
func TestSetupUnfiltersTheMQTTConsumer(t *testing.T) {
	_, conn := startTest(t)
	ctx := context.Background()
	old, err := conn.JS.CreateOrUpdateConsumer(ctx, MQTTStream, jetstream.ConsumerConfig{
		Durable:       MQTTConsumer,
		FilterSubject: MQTTReadings + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		MaxAckPending: 20000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{MQTTReadings + "heart_rate.dev-1", "$MQTT.msgs.other.topic"} {
		if _, err := conn.JS.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := old.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.FilterSubject != "" || len(info.Config.FilterSubjects) != 0 {
		t.Fatalf("consumer still filters on %q %v", info.Config.FilterSubject, info.Config.FilterSubjects)
	}
	// Both messages are delivered now: the reader skips the one outside readings.
	if info.NumPending != 2 {
		t.Fatalf("pending = %d, want 2", info.NumPending)
	}
}
