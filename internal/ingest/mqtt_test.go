package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

// TestAuthRefusesSubjectBoundTokens connects real NATS and MQTT clients to an embedded server
// guarded by Auth: unbound tokens get their scope's permissions, subject-bound ones are refused
// (CONNACK "not authorized" over MQTT) with a log line.
func TestAuthRefusesSubjectBoundTokens(t *testing.T) {
	tokens := map[string]token.Token{
		"plk_ingest-unbound-0123456789": {ID: "ingestunbnd0", Scope: token.ScopeIngest},
		"plk_ingest-bound-0123456789":   {ID: "ingestbound0", Scope: token.ScopeIngest, Subject: "patient-1"},
		"plk_read-unbound-0123456789":   {ID: "readunbound0", Scope: token.ScopeRead},
		"plk_read-bound-0123456789":     {ID: "readbound000", Scope: token.ScopeRead, Subject: "patient-1"},
	}
	var logs bytes.Buffer
	auth := &Auth{
		Verify: func(secret string) (token.Token, error) {
			if tok, ok := tokens[secret]; ok {
				return tok, nil
			}
			return token.Token{}, token.ErrInvalid
		},
		InternalUser: "pulselake", InternalPassword: "internal-password",
		Log: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	srv, err := stream.StartServer(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), stream.ServerOptions{
		Dir: t.TempDir(), ClientListen: "127.0.0.1:0", MQTTListen: "127.0.0.1:0", Auth: auth,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())

	for _, c := range []struct {
		secret  string
		connect bool
	}{
		{"plk_ingest-unbound-0123456789", true},
		{"plk_read-unbound-0123456789", true},
		{"plk_ingest-bound-0123456789", false},
		{"plk_read-bound-0123456789", false},
		{"plk_unknown-0123456789", false},
	} {
		t.Run(c.secret, func(t *testing.T) {
			nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("device", c.secret), nats.MaxReconnects(0))
			if c.connect != (err == nil) {
				t.Errorf("NATS connect: err = %v, want connected %v", err, c.connect)
			}
			if err == nil {
				nc.Close()
			} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(err.Error(), "Authorization Violation") {
				t.Errorf("NATS connect refused with %v, want an authorization violation", err)
			}
			mc := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr()).
				SetClientID("dev-" + c.secret[4:12]).SetUsername("device").SetPassword(c.secret).
				SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4))
			tk := mc.Connect()
			if !tk.WaitTimeout(10 * time.Second) {
				t.Fatal("MQTT connect: no answer in 10s")
			}
			if c.connect != (tk.Error() == nil) {
				t.Errorf("MQTT connect: err = %v, want connected %v", tk.Error(), c.connect)
			}
			if tk.Error() == nil {
				mc.Disconnect(100)
			} else if !errors.Is(tk.Error(), packets.ErrorRefusedNotAuthorised) {
				t.Errorf("MQTT connect refused with %v, want CONNACK not authorized (5)", tk.Error())
			}
		})
	}
	for _, id := range []string{"ingestbound0", "readbound000"} {
		if !strings.Contains(logs.String(), "token="+id) || !strings.Contains(logs.String(), "subject-bound") {
			t.Errorf("no log line for refused token %s:\n%s", id, logs.String())
		}
	}
}

// TestRunMQTTMovesEveryMessage fills the MQTT store of a real embedded server (readings, a
// malformed payload, another topic) and runs three movers on its one consumer, as the three
// nodes of a cluster do. While the ingest stream is held back nothing is acknowledged; the
// first stores fail and are retried; in the end every reading is in the ingest stream once,
// the malformed payload is quarantined, the other topic is skipped, and every message is
// acknowledged.
func TestRunMQTTMovesEveryMessage(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	conn, err := stream.Connect(context.Background(), log, stream.ConnOptions{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}

	const n, devices = 5000, 50
	for i := range n {
		if i%500 == 0 { // the connection allows 1,024 publishes unacknowledged
			<-conn.JS.PublishAsyncComplete()
		}
		payload := fmt.Sprintf(`{"subject":"patient-%d","time":%d,"values":{"bpm":%d}}`, i%devices, 1_790_000_000_000+int64(i), 50+i%100)
		if _, err := conn.JS.PublishAsync(fmt.Sprintf("%sheart_rate.dev-%d", stream.MQTTReadings, i%devices), []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	for subj, payload := range map[string]string{
		stream.MQTTReadings + "heart_rate.dev-bad": `{"subject":`,     // malformed: quarantined
		"$MQTT.msgs.status.dev-1":                  `{"online":true}`, // not a reading: skipped
	} {
		if _, err := conn.JS.PublishAsync(subj, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-conn.JS.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("messages not stored in the MQTT store within 30s")
	}

	gate := make(chan struct{})
	var calls atomic.Int32
	publish := func(ctx context.Context, b *stream.Batch) (int, error) {
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if calls.Add(1) <= 3 {
			return 0, fmt.Errorf("%w: the stream refused it", stream.ErrNotStored)
		}
		return conn.Publish(ctx, b)
	}
	kinds, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 3 {
		in := New(log, prometheus.NewRegistry(), kinds, publish, Options{})
		wg.Go(func() {
			if err := in.RunMQTT(ctx, conn); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
		})
	}
	cons, err := conn.JS.Consumer(ctx, stream.MQTTStream, stream.MQTTConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info := func() *jetstream.ConsumerInfo {
		t.Helper()
		ci, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ci
	}
	deadline := time.Now().Add(30 * time.Second)
	for info().NumAckPending < 3*maxMQTTBatch && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling the consumer until batches are taken
	}
	if ci := info(); ci.NumAckPending < 3*maxMQTTBatch || ci.AckFloor.Stream != 0 {
		t.Fatalf("with the ingest stream held back: %d messages taken, ack floor %d; want at least %d taken and none acknowledged",
			ci.NumAckPending, ci.AckFloor.Stream, 3*maxMQTTBatch)
	}
	close(gate)
	deadline = time.Now().Add(time.Minute)
	for ci := info(); ci.NumAckPending+int(ci.NumPending) > 0; ci = info() {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %d messages not yet taken, %d not acknowledged", ci.NumPending, ci.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond) // polling the consumer until every message is acknowledged
	}
	cancel()
	wg.Wait()
	if calls.Load() <= 3 {
		t.Fatalf("%d stores tried, want the 3 refused ones retried", calls.Load())
	}

	s, err := conn.JS.Stream(context.Background(), stream.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	p := reading.NewParser(kinds)
	seen := map[string]int{}
	var rejected []string
	for seq := uint64(1); ; seq++ {
		raw, err := s.GetMsg(context.Background(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := stream.Decode(raw.Data, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entries {
			if !e.Accepted() {
				rejected = append(rejected, e.Origin)
				continue
			}
			seen[e.Reading.Device+"@"+e.Reading.Time.String()]++
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct readings in the ingest stream, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("reading %s stored %d times", k, c)
		}
	}
	if len(rejected) != 1 || rejected[0] != "readings/heart_rate/dev-bad" {
		t.Errorf("rejected entries from %v, want the malformed payload of readings/heart_rate/dev-bad only", rejected)
	}
}
