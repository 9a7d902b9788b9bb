package lake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/logbuf"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
)

// fetchSeqs fetches from f until it has n messages (or 20 s pass) and returns their stream
// sequences in the order handed out.
func fetchSeqs(t *testing.T, f *feed, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for deadline := time.Now().Add(20 * time.Second); len(seqs) < n && time.Now().Before(deadline); {
		b, err := f.Fetch(2)
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Ack(); err != nil {
				t.Fatalf("a feed message takes no acknowledgement, got %v", err)
			}
			seqs = append(seqs, meta.Sequence.Stream)
		}
	}
	return seqs
}

// TestFeedReadsInOrderPastDeletedMessages reads the ingest stream from a start sequence with
// messages deleted in the middle: the feed hands out every stored message once, in order,
// without taking the deleted ones for a gap, and tells the drain whether anything is left.
func TestFeedReadsInOrderPastDeletedMessages(t *testing.T) {
	ctx := context.Background()
	conn := testStream(t, t.TempDir())
	reg, err := reading.NewRegistry(glucose(false))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		publish(t, conn, reg, i, 1, false)
	}
	s, err := conn.JS.Stream(ctx, stream.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{4, 5, 8} {
		if err := s.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	f := startFeed(ctx, discard(), conn.JS, 2, 4, 1<<20)
	got := fetchSeqs(t, f, 4)
	if want := []uint64{2, 3, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("feed from 2 handed out %v, want %v", got, want)
	}
	info, err := f.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 {
		t.Errorf("nothing is stored after 7, yet the feed reports %d pending", info.NumPending)
	}
	publish(t, conn, reg, 8, 1, false) // sequence 9
	if info, err = f.Info(ctx); err != nil || info.NumPending == 0 {
		t.Errorf("a message stored after the last handed out: pending %v (err %v), want > 0", info, err)
	}
	if got := fetchSeqs(t, f, 1); !slices.Equal(got, []uint64{9}) {
		t.Errorf("then the feed handed out %v, want [9]", got)
	}
	f.close()
	if f.gaps != 0 {
		t.Errorf("deleted messages were taken for a gap %d times", f.gaps)
	}
}

// TestFeedGapCheck: a jump in stream sequence passes only over messages the stream does not
// hold.
func TestFeedGapCheck(t *testing.T) {
	ctx := context.Background()
	conn := testStream(t, t.TempDir())
	reg, err := reading.NewRegistry(glucose(false))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		publish(t, conn, reg, i, 1, false)
	}
	s, err := conn.JS.Stream(ctx, stream.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, 3); err != nil {
		t.Fatal(err)
	}
	f := &feed{log: discard()}
	if err := f.nothingBetween(ctx, s, 3, 4); err != nil {
		t.Errorf("3 is deleted, so 4 may follow 2: %v", err)
	}
	if err := f.nothingBetween(ctx, s, 4, 6); !errors.Is(err, errGap) {
		t.Errorf("5 is stored, so 6 must not follow 3; got %v", err)
	}
	if err := f.nothingBetween(ctx, s, 2, 4); !errors.Is(err, errGap) {
		t.Errorf("2 is stored; got %v", err)
	}
}

// TestWriterRecordsItsCommittedPosition: after a drain the cursor consumer's ack floor is
// the last stream sequence, nothing is pending on it, and a writer started again from there
// writes only what came after.
func TestWriterRecordsItsCommittedPosition(t *testing.T) {
	ctx, dir, conn, reg := glucoseStream(t)
	for i := range 4 {
		publish(t, conn, reg, 5*i, 5, false)
	}
	drain(t, dir, conn, reg)
	cons, err := conn.JS.Consumer(ctx, stream.IngestStream, ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 4 || info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("cursor after the drain: ack floor %d, pending %d, ack-pending %d; want 4, 0, 0",
			info.AckFloor.Stream, info.NumPending, info.NumAckPending)
	}
	publish(t, conn, reg, 20, 5, false)
	// The server counts a consumer's pending messages asynchronously: wait for the count.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if info, err = cons.Info(ctx); err == nil && info.NumPending == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor with one new message: %+v (err %v), want 1 pending", info, err)
		}
	}
	drain(t, dir, conn, reg)
	if n := len(scan(t, dir, ZoneTrusted, "glucose", "id")); n != 25 {
		t.Errorf("trusted.glucose has %d rows, want 25", n)
	}
	if info, err = cons.Info(ctx); err != nil || info.AckFloor.Stream != 5 {
		t.Errorf("cursor after the second drain: %+v (err %v), want ack floor 5", info, err)
	}
	if info.Delivered.Stream > info.AckFloor.Stream {
		t.Errorf("the cursor consumer was delivered %d messages: nothing should pull from it", info.Delivered.Stream)
	}
}

// TestFeedKeepsEveryMessageWhileItsReaderIsBusy: the lake writer stops taking messages for
// longer than a pull stays open (a slow flush), then takes them again as new ones arrive:
// nothing the server sent meanwhile makes the client drop messages as a slow consumer, every
// message comes, in order, without the consumer being created again, and closing the feed
// does not wait for a pull open at the server. Streams of several lengths, so that the pulls
// stand differently when the reader stops. Before, a continuous pull's heartbeats and
// timeout statuses filled channel room its next requests counted on: the client dropped a
// message in one or two of these streams in every run, and the writer stalled until its
// consumer was replaced.
func TestFeedKeepsEveryMessageWhileItsReaderIsBusy(t *testing.T) {
	for stored := 12; stored <= 17; stored++ {
		t.Run(fmt.Sprintf("%d stored", stored), func(t *testing.T) {
			t.Parallel()
			busyFeed(t, stored)
		})
	}
}

// busyFeed stores n messages in a new stream, takes one through a feed, takes nothing for
// longer than a pull's wait, then takes the rest and seven stored afterwards.
func busyFeed(t *testing.T, n int) {
	ctx := context.Background()
	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	conn := testStreamLog(t, t.TempDir(), log)
	reg, err := reading.NewRegistry(glucose(false))
	if err != nil {
		t.Fatal(err)
	}
	const later = 7
	for i := range n {
		publish(t, conn, reg, i, 1, false)
	}
	f := startFeed(ctx, log, conn.JS, 1, 4, 1<<20)
	got := fetchSeqs(t, f, 1)
	time.Sleep(feedPullWait + 2*time.Second) // the writer is busy
	got = append(got, fetchSeqs(t, f, n-len(got))...)
	for i := range later {
		publish(t, conn, reg, 100+i, 1, false)
	}
	got = append(got, fetchSeqs(t, f, later)...)
	t0 := time.Now()
	f.close()
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("closing the feed took %s; a pull open at the server must not hold it", d)
	}
	var want []uint64
	for seq := uint64(1); seq <= uint64(n+later); seq++ {
		want = append(want, seq)
	}
	if !slices.Equal(got, want) {
		t.Errorf("the feed handed out %v, want 1..%d", got, n+later)
	}
	for _, bad := range []string{"slow consumer", "reading the ingest stream again"} {
		if strings.Contains(logs.String(), bad) {
			t.Errorf("the log mentions %q:\n%s", bad, logs.String())
		}
	}
}
