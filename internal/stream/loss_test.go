package stream

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/reading"
)

func TestRanges(t *testing.T) {
	for _, tt := range []struct {
		in   []uint64
		want string
	}{
		{nil, ""}, {[]uint64{5}, "5"}, {[]uint64{4, 5, 6, 9, 11, 12}, "4-6,9,11-12"},
	} {
		if got := Ranges(tt.in); got != tt.want {
			t.Errorf("Ranges(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestLossMonitorReportsDamagedBlock overwrites bytes in the middle of the ingest stream's
// last block while the server is stopped, starts it again and checks that the lost
// messages are logged at ERROR with their sequences and counted.
func TestLossMonitorReportsDamagedBlock(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 1}))
	srv, err := StartServer(quiet, ServerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := Connect(context.Background(), quiet, ConnOptions{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	hwm := filepath.Join(dir, "ingest.hwm")
	m0 := NewLossMonitor(quiet, prometheus.NewRegistry(), conn, hwm)
	if err := m0.Check(ctx); err != nil {
		t.Fatal(err)
	}
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	for i := range 20 {
		b := testBatch(t, p, 50)
		for j := range b.Entries[:50] { // distinct records per batch
			b.Entries[j].Raw = append([]byte(nil), b.Entries[j].Raw...)
			b.Entries[j].Identity[0] = byte(i)
		}
		if _, err := conn.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	m0.SaveMark()
	conn.Close()
	srv.Shutdown(ctx)

	blocks, _ := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", IngestStream, "msgs", "*.blk"))
	if len(blocks) == 0 {
		t.Fatal("no message block found")
	}
	last := blocks[len(blocks)-1]
	data, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(data) / 2; i < len(data)/2+64; i++ {
		data[i] ^= 0x5a
	}
	if err := os.WriteFile(last, data, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(filepath.Dir(filepath.Dir(last)), "msgs", "index.db"))

	srv, err = StartServer(quiet, ServerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	conn, err = Connect(ctx, quiet, ConnOptions{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var logs bytes.Buffer
	preg := prometheus.NewRegistry()
	m := NewLossMonitor(slog.New(slog.NewTextHandler(&logs, nil)), preg, conn, hwm)
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	lost := lostCounted(t, preg)
	if lost == 0 {
		s, _ := conn.JS.Stream(ctx, IngestStream)
		info, _ := s.Info(ctx)
		t.Logf("state after restart: %+v lost %+v; blocks %v", info.State, info.State.Lost, blocks)
		t.Fatalf("no lost message counted; log: %s", logs.String())
	}
	line := logs.String()
	if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "stream="+IngestStream) || !strings.Contains(line, "sequences=") {
		t.Fatalf("want an ERROR naming the stream and the lost sequences, got %q", line)
	}
	// Reported once: a second check adds nothing.
	logs.Reset()
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 0 || lostCounted(t, preg) != lost {
		t.Fatalf("loss reported twice: %s", logs.String())
	}
	t.Logf("lost %v messages: %s", lost, line)
}

func lostCounted(t *testing.T, reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "pulselake_stream_lost_messages_total" && l.GetValue() == IngestStream {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestLossMonitorNoFalseAlarmUnderLoad starts monitors (each compares the stream with its
// consumers once, as at a node's start) while batches are published and a consumer
// acknowledges them as fast as they come: a consumer that got a message stored after the
// stream's last sequence was read must not look like an acknowledged message the stream
// lost.
func TestLossMonitorNoFalseAlarmUnderLoad(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 1}))
	srv, err := StartServer(quiet, ServerOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	conn, err := Connect(context.Background(), quiet, ConnOptions{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	cons, err := conn.JS.CreateOrUpdateConsumer(ctx, IngestStream, jetstream.ConsumerConfig{
		Durable: "busy", AckPolicy: jetstream.AckNonePolicy, FilterSubject: IngestSubjects})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(jetstream.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	published := make(chan error, 1)
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			b := testBatch(t, p, 1)
			b.Entries[0].Identity[0], b.Entries[0].Identity[1] = byte(i), byte(i>>8)
			if _, err := conn.Publish(ctx, b); err != nil && ctx.Err() == nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	var logs bytes.Buffer
	for range 200 {
		metrics := prometheus.NewRegistry()
		m := NewLossMonitor(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError})), metrics, conn, "")
		if err := m.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if logs.Len() > 0 {
			t.Fatalf("a stream that lost nothing was reported as losing messages: %s", logs.String())
		}
	}
	cancel()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
}
