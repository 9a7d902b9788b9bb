package stream

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulselake/pulselake/internal/reading"
)

// TestSpaceGuardTrimsOnlyProcessed: with the disk below the guard's minimum, batches every
// durable consumer acknowledged are removed from the ingest stream, the others stay, and
// Ready says why the stream is not ready.
func TestSpaceGuardTrimsOnlyProcessed(t *testing.T) {
	for _, tt := range []struct {
		name        string
		acks        []int  // messages each durable consumer acknowledges, in order
		wantFirst   uint64 // first sequence left in the stream
		wantReadyOK bool
		minFree     int64
	}{
		{name: "slowest consumer holds the floor", acks: []int{7, 4}, wantFirst: 5, minFree: 1 << 62},
		{name: "nothing processed, nothing removed", acks: []int{7, 0}, wantFirst: 1, minFree: 1 << 62},
		{name: "enough space: nothing removed", acks: []int{10, 10}, wantFirst: 1, wantReadyOK: true, minFree: 1 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, conn := startTest(t)
			ctx := context.Background()
			reg, _ := reading.NewRegistry()
			p := reading.NewParser(reg)
			for i := range 10 {
				b := testBatch(t, p, 1)
				b.Entries[0].Raw = append(b.Entries[0].Raw, byte('a'+i)) // distinct message IDs
				if _, err := conn.Publish(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			for i, n := range tt.acks {
				c, err := conn.JS.CreateConsumer(ctx, IngestStream, jetstream.ConsumerConfig{
					Durable: "c" + itoa(int64(i)), AckPolicy: jetstream.AckExplicitPolicy})
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					continue
				}
				batch, err := c.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				for m := range batch.Messages() {
					if err := m.DoubleAck(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			g := NewSpaceGuard(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, srv, conn, tt.minFree)
			s, err := conn.JS.Stream(ctx, IngestStream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.FirstSeq != tt.wantFirst || info.State.LastSeq != 10 {
				t.Errorf("stream holds %d..%d, want %d..10", info.State.FirstSeq, info.State.LastSeq, tt.wantFirst)
			}
			err = g.Ready(ctx)
			if tt.wantReadyOK != (err == nil) {
				t.Errorf("Ready = %v, want ok=%v", err, tt.wantReadyOK)
			}
			if err != nil && !strings.Contains(err.Error(), "nats.min_free_bytes") {
				t.Errorf("Ready = %v, want it to name nats.min_free_bytes", err)
			}
		})
	}
}
