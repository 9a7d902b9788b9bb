package lake

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testStream starts the real embedded JetStream server in dir.
// glucoseStream is the common start of a writer test: a data directory with a real
// embedded stream and a registry of the glucose kind.
func glucoseStream(t *testing.T) (context.Context, string, *stream.Conn, *reading.Registry) {
	t.Helper()
	dir := t.TempDir()
	conn := testStream(t, dir)
	reg, err := reading.NewRegistry(glucose(false))
	if err != nil {
		t.Fatal(err)
	}
	return context.Background(), dir, conn, reg
}

func testStream(t *testing.T, dir string) *stream.Conn {
	t.Helper()
	return testStreamLog(t, dir, discard())
}

// testStreamLog is testStream with the server and the connection logging to log.
func testStreamLog(t *testing.T, dir string, log *slog.Logger) *stream.Conn {
	t.Helper()
	ctx := context.Background()
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: filepath.Join(dir, "stream")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(ctx) })
	conn, err := stream.Connect(ctx, log, stream.ConnOptions{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	return conn
}

// publish stores readings of kind glucose (with a meal text when withMeal) in the stream.
func publish(t *testing.T, conn *stream.Conn, reg *reading.Registry, from, n int, withMeal bool) {
	t.Helper()
	p := reading.NewParser(reg)
	b := stream.Batch{Source: stream.SourceHTTP, Received: time.Now()}
	for i := from; i < from+n; i++ {
		meal := ""
		if withMeal {
			meal = `,"meal":"after"`
		}
		raw := fmt.Sprintf(`{"subject":"s-%d","device":"g-1","kind":"glucose","time":%d,"values":{"mg_dl":%d%s}}`,
			i%3, time.Date(2026, 11, 1+i%2, 8, 0, i, 0, time.UTC).UnixMilli(), 80+i, meal)
		r, errs := p.Parse([]byte(raw))
		if errs != nil {
			t.Fatal(errs)
		}
		b.Entries = append(b.Entries, stream.Entry{Identity: r.Identity(), Reading: &r, Raw: []byte(raw)})
	}
	b.Entries = append(b.Entries, stream.Entry{Errors: reading.Errors{{Code: reading.CodeInvalidJSON, Message: "x"}}, Raw: []byte(`{"subject":"s-9",`)})
	if _, err := conn.Publish(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
}

func glucose(withMeal bool) *reading.Kind {
	lo, hi := 10.0, 1000.0
	k := &reading.Kind{Name: "glucose", Fields: []reading.Field{{Name: "mg_dl", Type: reading.Number, Required: true, Min: &lo, Max: &hi}}}
	if withMeal {
		k.Fields = append(k.Fields, reading.Field{Name: "meal", Type: reading.Text, Enum: []string{"before", "after"}})
	}
	return k
}

// drain runs a writer until everything in the stream is in the lake.
func drain(t *testing.T, dir string, conn *stream.Conn, reg *reading.Registry) {
	t.Helper()
	runUntilDrained(t, Options{Config: Config{CompactInterval: -1}, DataDir: dir, Conn: conn, Registry: reg})
}

// runUntilDrained runs a writer with o until it has written everything in the stream.
func runUntilDrained(t *testing.T, o Options) {
	t.Helper()
	w, err := New(discard(), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	w.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("writer did not drain in 60 s")
	}
}

// scan reads the named columns of a table (strings and doubles rendered with %v).
func scan(t *testing.T, dir, zone, name string, cols ...string) [][]string {
	t.Helper()
	var c Config
	c = c.WithDefaults(dir)
	st, err := Open(context.Background(), discard(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tb, err := st.Load(context.Background(), zone, name)
	if err != nil {
		t.Fatal(err)
	}
	at, err := tb.Scan().ToArrowTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	var rows [][]string
	tr := array.NewTableReader(at, 1<<20)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		for i := range int(rec.NumRows()) {
			var row []string
			for _, cn := range cols {
				idx := rec.Schema().FieldIndices(cn)
				if len(idx) == 0 {
					t.Fatalf("%s.%s has no column %s", zone, name, cn)
				}
				col := rec.Column(idx[0])
				if col.IsNull(i) {
					row = append(row, "NULL")
				} else {
					row = append(row, col.ValueStr(i))
				}
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// TestWriterEvolvesAndSkipsRedelivered writes readings of a configured kind, then of the same
// kind with an added value (the table gains a column; older rows read NULL), then makes the
// stream deliver everything again as after a crash between commit and acknowledgement:
// nothing is written twice.
func TestWriterEvolvesAndSkipsRedelivered(t *testing.T) {
	dir := t.TempDir()
	conn := testStream(t, dir)
	reg1, err := reading.NewRegistry(glucose(false))
	if err != nil {
		t.Fatal(err)
	}
	publish(t, conn, reg1, 0, 10, false)
	drain(t, dir, conn, reg1)
	if rows := scan(t, dir, ZoneTrusted, "glucose", "mg_dl"); len(rows) != 10 {
		t.Fatalf("after the first drain trusted.glucose has %d rows, want 10", len(rows))
	}

	reg2, err := reading.NewRegistry(glucose(true))
	if err != nil {
		t.Fatal(err)
	}
	publish(t, conn, reg2, 10, 5, true)
	drain(t, dir, conn, reg2)
	rows := scan(t, dir, ZoneTrusted, "glucose", "mg_dl", "meal")
	if len(rows) != 15 {
		t.Fatalf("trusted.glucose has %d rows, want 15", len(rows))
	}
	meals := map[string]int{}
	for _, r := range rows {
		meals[r[1]]++
	}
	if meals["NULL"] != 10 || meals["after"] != 5 {
		t.Errorf("meal column: %v, want 10 NULL and 5 after", meals)
	}

	// Lose every acknowledgement: the consumer starts over from the first message.
	ctx := context.Background()
	s, err := conn.JS.Stream(ctx, stream.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteConsumer(ctx, ConsumerName); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: ConsumerName, AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubject: stream.IngestSubjects, DeliverPolicy: jetstream.DeliverAllPolicy}); err != nil {
		t.Fatal(err)
	}
	drain(t, dir, conn, reg2)
	if n := len(scan(t, dir, ZoneTrusted, "glucose", "id")); n != 15 {
		t.Errorf("after redelivery trusted.glucose has %d rows, want 15", n)
	}
	if n := len(scan(t, dir, ZoneLanding, "http", "raw")); n != 17 {
		t.Errorf("after redelivery landing.http has %d rows, want 17 (15 readings, 2 rejected records)", n)
	}
	q := scan(t, dir, ZoneQuarantine, QuarantineTable, "code", "subject")
	if len(q) != 2 || q[0][0] != reading.CodeInvalidJSON || q[0][1] != "NULL" {
		t.Errorf("quarantine.readings: %v, want two invalid-json rows", q)
	}
}

// TestWriterResumesWhatAnEarlierHolderHeld hands messages to another holder of the durable
// consumer (a node that then died with them unacknowledged) and publishes more behind them:
// the next writer gets them again at once and in stream order (the stream watermark of each
// table would skip them if they came after later messages), without the durable being
// deleted and created again.
func TestWriterResumesWhatAnEarlierHolderHeld(t *testing.T) {
	ctx, dir, conn, reg := glucoseStream(t)
	publish(t, conn, reg, 0, 10, false)
	drain(t, dir, conn, reg)

	for i := range 3 {
		publish(t, conn, reg, 10+5*i, 5, false)
	}
	cons, err := conn.JS.Consumer(ctx, stream.IngestStream, ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for range batch.Messages() {
		held++ // never acknowledged: the holder is gone
	}
	publish(t, conn, reg, 25, 5, false)
	before, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if held != 2 || before.NumAckPending != 2 {
		t.Fatalf("the earlier holder got %d messages, %d ack-pending; want 2", held, before.NumAckPending)
	}

	start := time.Now()
	drain(t, dir, conn, reg) // the consumer's ack wait (2 min) is longer than drain waits
	if n := len(scan(t, dir, ZoneTrusted, "glucose", "id")); n != 30 {
		t.Errorf("trusted.glucose has %d rows, want 30", n)
	}
	after, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !after.Created.Equal(before.Created) {
		t.Errorf("the durable consumer was created again (at %v, first at %v)", after.Created, before.Created)
	}
	if after.NumAckPending != 0 || after.NumPending != 0 || after.AckFloor.Stream != 5 {
		t.Errorf("after the writer: %d ack-pending, %d pending, ack floor %d; want 0, 0, 5",
			after.NumAckPending, after.NumPending, after.AckFloor.Stream)
	}
	t.Logf("resumed in %v", time.Since(start).Round(time.Millisecond))
}

// TestRowBufferCommitsPerInterval checks ops rows are buffered, bounded and committed.
func TestRowBufferCommitsPerInterval(t *testing.T) {
	dir := t.TempDir()
	var c Config
	c = c.WithDefaults(dir)
	st, err := Open(context.Background(), discard(), c)
	if err != nil {
		t.Fatal(err)
	}
	b := NewRowBuffer(discard(), nil, st, time.Hour, 3)
	cols := []Column{{"time", Timestamp}, {"subject", String}, {"score", Float64}}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for i := range 4 {
		ok := b.Add(ZoneOps, "anomalies", cols, []any{now, fmt.Sprintf("s-%d", i), float64(i) / 10})
		if ok != (i < 3) {
			t.Errorf("row %d: Add = %v with a bound of 3", i, ok)
		}
	}
	b.Flush(context.Background())
	st.Close()
	rows := scan(t, dir, ZoneOps, "anomalies", "subject", "score")
	if len(rows) != 3 || rows[2][0] != "s-2" || rows[2][1] != "0.2" {
		t.Errorf("ops.anomalies: %v", rows)
	}
	// The bound counts buffered rows only: after the flush there is room again.
	st2, _ := Open(context.Background(), discard(), c)
	defer st2.Close()
	b2 := NewRowBuffer(discard(), nil, st2, time.Hour, 3)
	if !b2.Add(ZoneOps, "anomalies", cols, []any{now, "s-9", 0.9}) {
		t.Error("a new buffer refused a row")
	}
}

// TestLeaseOneActiveWriter runs two writers with leases on one stream (two serve processes on
// a cluster): one writes, the other stands by and takes over when the first stops.
func TestLeaseOneActiveWriter(t *testing.T) {
	dir := t.TempDir()
	conn := testStream(t, dir)
	reg, err := reading.NewRegistry(glucose(false))
	if err != nil {
		t.Fatal(err)
	}
	newWriter := func() (*Writer, chan error) {
		w, err := New(discard(), nil, Options{Config: Config{CompactInterval: -1, FlushInterval: yamlconf.Duration(100 * time.Millisecond)}, DataDir: dir, Conn: conn, Registry: reg, Lease: true})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- w.Run(context.Background()) }()
		return w, done
	}
	w1, done1 := newWriter()
	kv, err := conn.JS.KeyValue(context.Background(), stream.LeaseBucket)
	for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		kv, err = conn.JS.KeyValue(context.Background(), stream.LeaseBucket)
	}
	if err != nil {
		t.Fatal(err)
	}
	first, err := kv.Get(context.Background(), leaseKey)
	for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		first, err = kv.Get(context.Background(), leaseKey)
	}
	if err != nil {
		t.Fatal(err)
	}
	w2, done2 := newWriter()
	publish(t, conn, reg, 0, 10, false)
	w1.Stop()
	if err := <-done1; err != nil {
		t.Fatal(err)
	}
	publish(t, conn, reg, 10, 10, false)
	// The standby takes the released lease and writes what came after.
	var holder jetstream.KeyValueEntry
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if holder, err = kv.Get(context.Background(), leaseKey); err == nil && string(holder.Value()) != string(first.Value()) {
			break
		}
	}
	if holder == nil || string(holder.Value()) == string(first.Value()) {
		t.Fatal("the standby writer did not take over the lease")
	}
	w2.Stop()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
	if n := len(scan(t, dir, ZoneTrusted, "glucose", "id")); n != 20 {
		t.Errorf("trusted.glucose has %d rows, want 20", n)
	}
}

// TestWriterWritesUniqueColumnsPlain: the columns that hold a different value in every row
// (a reading's identity, a record as received) are written without a dictionary, the others
// with one; a table made before that gets the properties with its next commit, and its
// files written from then on follow them.
func TestWriterWritesUniqueColumnsPlain(t *testing.T) {
	ctx, dir, conn, reg := glucoseStream(t)
	publish(t, conn, reg, 0, 50, false)
	drain(t, dir, conn, reg)
	checkDictionaries(t, dir, ZoneTrusted, "glucose", map[string]bool{"id": false, "subject": true, "device": true})
	checkDictionaries(t, dir, ZoneLanding, "http", map[string]bool{"id": false, "raw": false, "subject": true})

	// A table of an earlier version: without the properties.
	var c Config
	st, err := Open(ctx, discard(), c.WithDefaults(dir))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := st.Load(ctx, ZoneTrusted, "glucose")
	if err != nil {
		t.Fatal(err)
	}
	tx := tb.NewTransaction()
	if err := tx.RemoveProperties([]string{dictColumnKey + "id"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	st.Close()
	publish(t, conn, reg, 50, 50, false)
	drain(t, dir, conn, reg)
	checkDictionaries(t, dir, ZoneTrusted, "glucose", map[string]bool{"id": false, "subject": true})
}

// checkDictionaries opens every data file of zone.name and checks, per column named in want,
// whether its column chunks have a dictionary page; it also checks the table's properties.
func checkDictionaries(t *testing.T, dir, zone, name string, want map[string]bool) {
	t.Helper()
	ctx := context.Background()
	var c Config
	st, err := Open(ctx, discard(), c.WithDefaults(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tb, err := st.Load(ctx, zone, name)
	if err != nil {
		t.Fatal(err)
	}
	for col, dict := range want {
		if got := tb.Properties()[dictColumnKey+col]; (got == "false") == dict {
			t.Errorf("%s.%s: property %s%s = %q", zone, name, dictColumnKey, col, got)
		}
	}
	tasks, err := tb.Scan().PlanFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) == 0 {
		t.Fatalf("%s.%s has no data file", zone, name)
	}
	for _, task := range tasks {
		path := strings.TrimPrefix(task.File.FilePath(), "file://")
		r, err := file.OpenParquetFile(path, false)
		if err != nil {
			t.Fatal(err)
		}
		for g := range r.NumRowGroups() {
			rg := r.MetaData().RowGroup(g)
			for i := range rg.NumColumns() {
				cc, err := rg.ColumnChunk(i)
				if err != nil {
					t.Fatal(err)
				}
				col := cc.PathInSchema().String()
				if dict, ok := want[col]; ok && cc.HasDictionaryPage() != dict {
					t.Errorf("%s: column %s has a dictionary page: %v, want %v", path, col, cc.HasDictionaryPage(), dict)
				}
			}
		}
		r.Close()
	}
}

// TestWriterDropsReadingsAlreadyInTheLake sends the same readings again in a later message
// (a device re-sending, beyond the front door's window) while the writer runs, after their first
// copies were committed: with lake.dedup_days 1 one of their two days has left the index and
// is read back from the table, the other is still held; either way nothing is written twice.
// pulselake_lake_identity_index_entries counts what the index holds.
func TestWriterDropsReadingsAlreadyInTheLake(t *testing.T) {
	for _, c := range []struct{ days, held, heldAtEnd int }{{3, 10, 11}, {1, 5, 6}} {
		ctx, dir, conn, reg := glucoseStream(t)
		metrics := prometheus.NewRegistry()
		w, err := New(discard(), metrics, Options{Config: Config{CompactInterval: -1, DedupDays: c.days,
			FlushInterval: yamlconf.Duration(100 * time.Millisecond)}, DataDir: dir, Conn: conn, Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		gauge := func(name string) float64 {
			families, err := metrics.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range families {
				if f.GetName() == name {
					m := f.GetMetric()[0]
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
			return -1
		}
		publish(t, conn, reg, 0, 10, false) // ten readings, five on each of two days
		for deadline := time.Now().Add(30 * time.Second); gauge("pulselake_lake_identity_index_entries") != float64(c.held); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("dedup_days %d: the index holds %v identities after the first flush, want %d",
					c.days, gauge("pulselake_lake_identity_index_entries"), c.held)
			}
		}
		// The same ten again and one more (a message of the same records would be dropped by
		// the stream's duplicate window before the writer sees it).
		publish(t, conn, reg, 0, 11, false)
		w.Stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := len(scan(t, dir, ZoneTrusted, "glucose", "id")); n != 11 {
			t.Errorf("dedup_days %d: trusted.glucose has %d rows, want 11", c.days, n)
		}
		if got := gauge("pulselake_lake_duplicates_skipped_total"); got != 10 {
			t.Errorf("dedup_days %d: %v duplicates skipped, want 10", c.days, got)
		}
		// The last reading's day (six identities) is the most recently used.
		if got := gauge("pulselake_lake_identity_index_entries"); got != float64(c.heldAtEnd) {
			t.Errorf("dedup_days %d: the index holds %v identities at the end, want %d", c.days, got, c.heldAtEnd)
		}
	}
}
