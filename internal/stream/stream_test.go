package stream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// StartTest starts an embedded server in a temporary directory and connects to it.
func startTest(t *testing.T) (*Server, *Conn) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := StartServer(log, ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := Connect(context.Background(), log, ConnOptions{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Shutdown(context.Background())
	})
	if err := conn.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return srv, conn
}

func testBatch(t testing.TB, p *reading.Parser, n int) *Batch {
	b := &Batch{Source: SourceHTTP, Received: time.Now(), Token: "tok1"}
	for i := range n {
		raw := []byte(`{"subject":"p1","device":"hr-1","kind":"heart_rate","time":` + itoa(1795428000000+int64(i)) + `,"values":{"bpm":70}}`)
		r, errs := p.Parse(raw)
		if errs != nil {
			t.Fatal(errs)
		}
		b.Entries = append(b.Entries, Entry{Identity: r.Identity(), Reading: &r, Raw: raw})
	}
	b.Entries = append(b.Entries, Entry{Errors: reading.Errors{{Code: reading.CodeInvalidJSON, Message: "x"}}, Raw: []byte("{not json\n")})
	return b
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

func TestPublishDecodeAndDeduplicate(t *testing.T) {
	_, conn := startTest(t)
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	ctx := context.Background()

	b := testBatch(t, p, 3)
	if dups, err := conn.Publish(ctx, b); err != nil || dups != 0 {
		t.Fatalf("publish: dups=%d err=%v", dups, err)
	}
	// The same records again (a client retry) are a duplicate message, whatever the receive time.
	b2 := testBatch(t, p, 3)
	b2.Received = b.Received.Add(time.Second)
	if dups, err := conn.Publish(ctx, b2); err != nil || dups != 1 {
		t.Fatalf("re-publish: dups=%d err=%v, want 1 duplicate", dups, err)
	}
	s, err := conn.JS.Stream(ctx, IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(msg.Data, p)
	if err != nil {
		t.Fatal(err)
	}
	// The header lists the kinds of the accepted readings; a message without it must be read.
	if kinds, ok := KindsOf(msg.Header); !ok || !slices.Equal(kinds, []string{"heart_rate"}) {
		t.Errorf("kinds header %v %v, want heart_rate", kinds, ok)
	}
	if _, ok := KindsOf(nil); ok {
		t.Error("a message without the kinds header claims to list its kinds")
	}
	if got.Source != SourceHTTP || got.Token != "tok1" || len(got.Entries) != 4 {
		t.Fatalf("decoded %+v", got)
	}
	for i := range 3 {
		e := got.Entries[i]
		if !e.Accepted() || e.Identity != b.Entries[i].Identity || string(e.Raw) != string(b.Entries[i].Raw) {
			t.Errorf("entry %d = %+v", i, e)
		}
	}
	if e := got.Entries[3]; e.Accepted() || e.Errors[0].Code != reading.CodeInvalidJSON || string(e.Raw) != "{not json\n" {
		t.Errorf("rejected entry = %+v", e)
	}
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages, want 1", info.State.Msgs)
	}
}

func TestPublishSplitsLargeBatches(t *testing.T) {
	_, conn := startTest(t)
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	ctx := context.Background()
	b := testBatch(t, p, 60000) // ~9 MB of envelope, above the 8 MiB message limit
	if _, err := conn.Publish(ctx, b); err != nil {
		t.Fatal(err)
	}
	s, _ := conn.JS.Stream(ctx, IngestStream)
	info, _ := s.Info(ctx)
	if info.State.Msgs < 2 {
		t.Fatalf("stream holds %d messages, want the batch split", info.State.Msgs)
	}
	total := 0
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(m.Data, p)
		if err != nil {
			t.Fatal(err)
		}
		total += len(d.Entries)
	}
	if total != len(b.Entries) {
		t.Errorf("decoded %d entries, want %d", total, len(b.Entries))
	}
}

func FuzzDecode(f *testing.F) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	f.Add([]byte(`{"v":1,"source":"http","received":"2026-11-23T10:00:00Z"}` + "\n" + `{"errors":[{"code":"invalid-json","path":"","message":"x"}],"raw_text":"{"}` + "\n"))
	f.Add([]byte(`{"v":1,"source":"mqtt","received":"2026-11-23T10:00:00Z"}` + "\n" + `{"id":"00112233445566778899aabbccddeeff","reading":{"subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00Z","values":{"bpm":70}},"raw":{}}` + "\n"))
	f.Add(filterBatch(f, 12))
	f.Add([]byte(`{"v":3,"source":"import","received":"2026-11-23T10:00:00Z"}` + "\n" + `{"reading":{"id":"ah-1","subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00.000001Z","values":{"bpm":70}},"origin":"x:1"}` + "\n"))
	f.Add([]byte(`{"v":3,"source":"import","received":"2026-11-23T10:00:00Z"}` + "\n" + `{"reading":{ "subject":"s","device":"d","kind":"heart_rate","time":"2026-11-23T10:00:00.5+01:00","values":{"bpm":70}},"raw":{}}` + "\n"))
	f.Add([]byte(`{"v":3,"source":"http","received":"2026-11-23T10:00:00Z"}` + "\n" + `{"reading":{"subject":"s","device":"d","kind":"heart_rate","time":1795425600123,"values":{"bpm":70}},"raw":{}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Decode(data, p)
		if err != nil {
			return
		}
		// Identities, which parses no reading, finds the same accepted entries.
		var ids []reading.ID
		if err := Identities(data, p, func(at time.Time, id reading.ID) {
			if !at.Equal(b.Received) {
				t.Fatalf("Identities received %v, Decode %v", at, b.Received)
			}
			ids = append(ids, id)
		}); err != nil {
			t.Fatalf("Decode accepts what Identities refuses: %v", err)
		}
		var want []reading.ID
		for _, e := range b.Entries {
			if e.Accepted() {
				want = append(want, e.Identity)
			}
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("Identities %v, Decode %v", ids, want)
		}
		// The general path alone (no scanner for the stored form) reads the same batch, and
		// so does every filter.
		general, err := decodeFiltered(data, entryDecoder{p: p, general: true})
		if err != nil || !reflect.DeepEqual(general, b) {
			t.Fatalf("general path: %v\n%+v\nwith the scanner:\n%+v", err, general, b)
		}
		since := func() time.Time { return time.Date(2026, 11, 23, 9, 0, 30, 0, time.UTC) }
		for _, f := range []Filter{{Kinds: func(k string) bool { return k == "spo2" }}, {Kinds: func(k string) bool { return k != "steps" }, Brief: true},
			{Kinds: func(k string) bool { return k != "steps" }, Brief: true, Since: since}, {Since: since}} {
			fast, err1 := DecodeFiltered(data, p, f)
			slow, err2 := decodeFiltered(data, entryDecoder{p: p, f: f, general: true})
			if err1 != nil || err2 != nil || !reflect.DeepEqual(fast, slow) {
				t.Fatalf("filtered: %v / %v\n%+v\n%+v", err1, err2, fast, slow)
			}
		}
		// What decodes re-encodes and decodes to the same entries, each with its reading's
		// identity (which version 3 derives instead of storing).
		b2, err := Decode(b.Encode(nil), p)
		if err != nil || len(b2.Entries) != len(b.Entries) {
			t.Fatalf("re-decode: %v, %d vs %d entries", err, len(b2.Entries), len(b.Entries))
		}
		for i, e := range b2.Entries {
			if !reflect.DeepEqual(e.Reading, b.Entries[i].Reading) || (e.Accepted() && e.Identity != e.Reading.Identity()) {
				t.Fatalf("re-decode: entry %d: %+v (identity %v), was %+v", i, e.Reading, e.Identity, b.Entries[i].Reading)
			}
		}
	})
}

// TestPublishFlowControl: with the publish window full, Publish gives up after PublishWait
// with ErrBusy and sends nothing; a record too large for one message is refused whole.
func TestPublishFlowControl(t *testing.T) {
	srv, _ := startTest(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	conn, err := Connect(context.Background(), log, ConnOptions{Server: srv, Name: "flow", PublishWindow: 1 << 20, PublishWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	ctx := context.Background()

	if err := conn.window.Acquire(ctx, 1<<20); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := conn.Publish(ctx, testBatch(t, p, 3)); !errors.Is(err, ErrBusy) {
		t.Fatalf("with the window full: err = %v, want ErrBusy", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %s, want about the 100 ms publish wait", d)
	}
	conn.window.Release(1 << 20)

	b := testBatch(t, p, 3)
	b.Entries = append(b.Entries, Entry{Errors: reading.Errors{{Code: reading.CodeInvalidJSON, Message: "x"}}, Raw: bytes.Repeat([]byte{'x'}, DefaultMaxPayload)})
	var tooLarge *RecordTooLargeError
	if _, err := conn.Publish(ctx, b); !errors.As(err, &tooLarge) || tooLarge.Entry != 4 {
		t.Fatalf("oversize entry: err = %v, want RecordTooLargeError for entry 4", err)
	}
	s, err := conn.JS.Stream(ctx, IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("%d messages stored, want none", info.State.Msgs)
	}
	if _, err := conn.Publish(ctx, testBatch(t, p, 3)); err != nil {
		t.Fatalf("after the window freed: %v", err)
	}
}
