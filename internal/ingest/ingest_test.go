package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

func newTestIngester(t testing.TB, publish Publisher, o Options) *Ingester {
	kinds, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	o.DedupMaxEntries = -1 // the window is not what these tests measure
	in := New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), kinds, publish, o)
	in.win = newWindow(0, 0)
	return in
}

func ndjson(n, seq int) []byte {
	var b bytes.Buffer
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := range n {
		fmt.Fprintf(&b, `{"subject":"patient-%d","device":"bp-%d","kind":"blood_pressure","time":%d,"values":{"systolic":%d,"diastolic":%d,"pulse":%d}}`+"\n",
			i%1000, seq, base+int64(i), 110+i%60, 60+i%40, 55+i%40)
	}
	return b.Bytes()
}

func records(body []byte) []Record {
	raws, _ := reading.SplitBody(body, reading.FormatNDJSON, 1<<20)
	recs := make([]Record, len(raws))
	for i, r := range raws {
		recs[i] = Record{Raw: r}
	}
	return recs
}

// encodePublisher does what the stream connection does with a batch in memory: encode it
// into an envelope sized up front (and the client's copy of it).
func encodePublisher(_ context.Context, b *stream.Batch) (int, error) {
	est := 256
	for _, e := range b.Entries {
		est += 2*len(e.Raw) + 160
	}
	env := b.Encode(make([]byte, 0, est))
	cp := append([]byte(nil), env...)
	runtime.KeepAlive(cp)
	return 0, nil
}

// TestRequestCost measures what Ingest allocates for batches of 1,000 and 10,000 readings
// (parse, validate, entries, envelope and its copy) and checks that the memory charged to
// the in-flight limit covers it: allocations include garbage, so they bound what is live.
func TestRequestCost(t *testing.T) {
	in := newTestIngester(t, encodePublisher, Options{})
	for _, n := range []int{1000, 10000} {
		body := ndjson(n, 1)
		recs := records(body)
		if _, err := in.Ingest(context.Background(), "http", token.Token{}, recs); err != nil {
			t.Fatal(err) // warm the parser pool
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if _, err := in.Ingest(context.Background(), "http", token.Token{}, recs); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		alloc := int64(after.TotalAlloc - before.TotalAlloc)
		charged := int64(costPerRecord*n + costPerByte*len(body))
		t.Logf("%d readings, body %d bytes: Ingest allocated %d bytes (%.0f per reading, %.2f× the body); charged %d",
			n, len(body), alloc, float64(alloc)/float64(n), float64(alloc)/float64(len(body)), charged)
		if alloc > charged {
			t.Errorf("%d readings: Ingest allocated %d bytes but only %d are charged to the in-flight limit", n, alloc, charged)
		}
	}
}

// TestReadBodyChargesWhatArrives: a body is charged as it grows, not by its declared
// length, and the charge is returned on release.
func TestReadBodyChargesWhatArrives(t *testing.T) {
	in := newTestIngester(t, encodePublisher, Options{MaxBodyBytes: 1 << 20, MaxInflightBytes: 1 << 20})
	// A declared 1 MiB body of which 10 bytes arrived, then the client stalls.
	stalled := io.MultiReader(strings.NewReader("0123456789"), iotest.ErrReader(errors.New("deadline")))
	_, release, err := in.ReadBody(stalled, 1<<20)
	if err == nil {
		t.Fatal("want the reader's error")
	}
	if got := in.charged.Load(); got > bodyChunk {
		t.Errorf("a stalled body holds %d bytes of the limit, want at most %d", got, bodyChunk)
	}
	release()
	if got := in.charged.Load(); got != 0 {
		t.Errorf("after release %d bytes stay charged", got)
	}

	tests := []struct {
		name string
		body []byte
		hint int64
		want error
	}{
		{"exact declared length", bytes.Repeat([]byte("a"), 300<<10), 300 << 10, nil},
		{"unknown length", bytes.Repeat([]byte("a"), 300<<10), -1, nil},
		{"empty", nil, 0, nil},
		{"above the limit", bytes.Repeat([]byte("a"), 1<<20+1), -1, ErrBodyTooLarge},
		{"longer than declared", bytes.Repeat([]byte("a"), 1000), 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, release, err := in.ReadBody(iotest.HalfReader(bytes.NewReader(tt.body)), tt.hint)
			defer release()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && !bytes.Equal(body, tt.body) {
				t.Fatalf("read %d bytes, want %d", len(body), len(tt.body))
			}
		})
	}
	if got := in.charged.Load(); got != 0 {
		t.Errorf("after every release %d bytes stay charged", got)
	}
}

// TestIngestOverloadAndErrors: beyond the in-flight limit, and when the stream is busy,
// Ingest answers ErrOverloaded; a record above the message limit is a RecordTooLargeError
// naming its index in the request; an unconfirmed store says the batch may be stored.
func TestIngestOverloadAndErrors(t *testing.T) {
	body := ndjson(1000, 2)
	recs := records(body)
	ctx := context.Background()

	in := newTestIngester(t, encodePublisher, Options{MaxBodyBytes: 1024, MaxInflightBytes: 4096})
	if _, err := in.Ingest(ctx, "http", token.Token{}, recs); err != nil {
		t.Fatalf("a batch costing more than the whole limit runs alone: %v", err)
	}
	if !in.charge(1) {
		t.Fatal("charge of a finished batch not returned")
	}
	if _, err := in.Ingest(ctx, "http", token.Token{}, recs); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("with the limit taken, err = %v, want ErrOverloaded", err)
	}
	in.uncharge(1)

	for _, tt := range []struct {
		name  string
		err   error
		check func(error) bool
	}{
		{"busy stream", fmt.Errorf("%w (no room)", stream.ErrBusy), func(err error) bool { return errors.Is(err, ErrOverloaded) }},
		{"refused", fmt.Errorf("%w: full", stream.ErrNotStored), func(err error) bool {
			return errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrUnconfirmed) && strings.Contains(err.Error(), "nothing of the batch was stored")
		}},
		{"unconfirmed", fmt.Errorf("%w: lost", stream.ErrUnconfirmed), func(err error) bool { return errors.Is(err, ErrUnconfirmed) && errors.Is(err, ErrUnavailable) }},
		{"too large", &stream.RecordTooLargeError{Entry: 2, Size: 9 << 20, Limit: 8 << 20}, func(err error) bool {
			var tl *RecordTooLargeError
			return errors.As(err, &tl) && tl.Index == 2
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := newTestIngester(t, func(context.Context, *stream.Batch) (int, error) { return 0, tt.err }, Options{})
			recs := records(ndjson(3, 3))
			recs[0].Raw = []byte(`{"not":"a reading"}`) // rejected: stays in the batch as entry 0
			_, err := in.Ingest(ctx, "http", token.Token{}, recs)
			if !tt.check(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestIngestWaitingKeepsOversizeRecordRejected: where no client can be told (MQTT, files),
// a record too large to store is kept rejected with the start of its payload, and the rest
// of the batch is stored.
func TestIngestWaitingKeepsOversizeRecordRejected(t *testing.T) {
	var stored *stream.Batch
	calls := 0
	in := newTestIngester(t, func(_ context.Context, b *stream.Batch) (int, error) {
		calls++
		for i, e := range b.Entries {
			if len(e.Raw) > 1<<20 {
				return 0, &stream.RecordTooLargeError{Entry: i, Size: len(e.Raw), Limit: 1 << 20}
			}
		}
		stored = b
		return 0, nil
	}, Options{})
	recs := records(ndjson(2, 4))
	recs = append(recs, Record{Raw: bytes.Repeat([]byte("x"), 2<<20), Origin: "readings/heart_rate/d1"})
	res, err := in.IngestWaiting(context.Background(), stream.SourceMQTT, recs)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || res.Accepted != 2 || len(res.Rejected) != 1 || res.Rejected[0].Code != reading.CodeRecordTooLarge {
		t.Fatalf("calls %d, result %+v", calls, res)
	}
	if e := stored.Entries[2]; len(e.Raw) != keptPrefix || e.Errors[0].Code != reading.CodeRecordTooLarge {
		t.Fatalf("kept entry: %d bytes, errors %v", len(e.Raw), e.Errors)
	}
}

// TestRecoverRebuildsWindow: after a restart the de-duplication window is rebuilt from the
// stream (identities only), so readings sent again are answered as duplicates.
func TestRecoverRebuildsWindow(t *testing.T) {
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
	ctx := context.Background()
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	kinds, _ := reading.NewRegistry()
	first := New(log, prometheus.NewRegistry(), kinds, conn.Publish, Options{})
	recs := records(ndjson(3000, 5))
	recs = append(recs, Record{Raw: []byte(`{"bad":1}`)}) // a rejected record is not an identity
	for i := 0; i < len(recs); i += 1000 {
		if _, err := first.Ingest(ctx, "http", token.Token{}, recs[i:min(i+1000, len(recs))]); err != nil {
			t.Fatal(err)
		}
	}
	again := New(log, prometheus.NewRegistry(), kinds, conn.Publish, Options{})
	if err := again.Recover(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if got := again.win.size(); got != 3000 {
		t.Fatalf("rebuilt window holds %d identities, want 3000", got)
	}
	res, err := again.Ingest(ctx, "http", token.Token{}, recs[:3000])
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != 3000 || res.Accepted != 0 {
		t.Fatalf("re-sent after restart: %+v, want 3000 duplicates", res)
	}
}

// TestTypedRecords: a record that comes as a typed reading (an export's reader) is checked
// by the rules of a parsed one: a valid one is stored normalized beside its payload, an
// invalid one is rejected with the code parsing its payload gives, payload kept.
func TestTypedRecords(t *testing.T) {
	var got *stream.Batch
	in := newTestIngester(t, func(_ context.Context, b *stream.Batch) (int, error) { got = b; return 0, nil }, Options{})
	at := time.Date(2026, 3, 14, 6, 12, 33, 123456789, time.FixedZone("", -4*3600))
	good := reading.Reading{ID: "ah-1", Subject: "alice", Device: "watch", Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": 72}}
	bad := reading.Reading{ID: "ah-2", Subject: "alice", Device: "watch", Kind: "heart_rate", Time: at, Values: map[string]float64{"bpm": 900}}
	recs := []Record{
		{Raw: good.AppendJSON(nil), Origin: "export.xml:1", Reading: &good},
		{Raw: bad.AppendJSON(nil), Origin: "export.xml:2", Reading: &bad},
	}
	res, err := in.Ingest(context.Background(), stream.SourceImport, token.Token{}, recs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || len(res.Rejected) != 1 || res.Rejected[0].Index != 1 || res.Rejected[0].Code != reading.CodeOutOfRange || res.Rejected[0].Path != "/values/bpm" {
		t.Fatalf("result %+v, want the first accepted and the second rejected as value-out-of-range at /values/bpm", res)
	}
	if len(got.Entries) != 2 {
		t.Fatalf("%d entries stored, want 2", len(got.Entries))
	}
	acc, rej := got.Entries[0], got.Entries[1]
	if !acc.Accepted() || !acc.Reading.Time.Equal(at.Truncate(time.Microsecond)) || acc.Reading.Time.Location() != time.UTC || acc.Reading.Time.Nanosecond() != 123456000 {
		t.Errorf("stored reading %+v, want its time in UTC to the microsecond", acc.Reading)
	}
	if acc.Identity != acc.Reading.Identity() || string(acc.Raw) != string(recs[0].Raw) {
		t.Errorf("stored entry %+v", acc)
	}
	if rej.Accepted() || string(rej.Raw) != string(recs[1].Raw) || rej.Errors[0].Code != reading.CodeOutOfRange {
		t.Errorf("rejected entry %+v", rej)
	}
}
