package lake

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/restcatalog"
	"github.com/pulselake/pulselake/internal/stream"
)

// restLake serves a SQL catalog over the Iceberg REST protocol (pulselake's own server) and
// returns a Store opened with catalog type rest against it, plus the SQL-catalog store behind
// the server. Both share one warehouse.
func restLake(t *testing.T, dir string) (rest, backing *Store) {
	t.Helper()
	ctx := context.Background()
	warehouse := "file://" + filepath.ToSlash(filepath.Join(dir, "warehouse"))
	var bc Config
	bc.Warehouse = warehouse
	bc.Catalog.URI = filepath.Join(dir, "server", "catalog.db")
	bc = bc.WithDefaults(dir)
	backing, err := Open(ctx, discard(), bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backing.Close() })
	srv := httptest.NewServer(restcatalog.Handler(backing.Catalog(), restcatalog.Options{Warehouse: warehouse}))
	t.Cleanup(srv.Close)

	rc := Config{Warehouse: warehouse, Catalog: CatalogConfig{Type: "rest", URI: srv.URL}, CompactInterval: -1}
	rc = rc.WithDefaults(dir)
	rest, err = Open(ctx, discard(), rc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rest.Close() })
	return rest, backing
}

// drainInto runs a writer on st until everything in the stream is in the lake.
func drainInto(t *testing.T, dir string, conn *stream.Conn, reg *reading.Registry, st *Store) {
	t.Helper()
	runUntilDrained(t, Options{Config: st.Config(), DataDir: dir, Conn: conn, Registry: reg, Store: st})
}

// countRows scans zone.name through st and returns its number of rows.
func countRows(t *testing.T, st *Store, zone, name string) int64 {
	t.Helper()
	tb, err := st.Load(context.Background(), zone, name)
	if err != nil {
		t.Fatal(err)
	}
	at, err := tb.Scan().ToArrowTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer at.Release()
	var n int64
	tr := array.NewTableReader(at, 1<<16)
	defer tr.Release()
	for tr.Next() {
		n += tr.RecordBatch().NumRows()
	}
	return n
}

// TestWriterThroughRESTCatalog runs the lake writer on a store whose catalog is a REST
// catalog (restcatalog over a SQL catalog), consuming the real embedded stream: every
// reading lands once, the stream watermark survives the REST commits (table property and
// snapshot summary), and a redelivery after lost acknowledgements writes nothing twice.
func TestWriterThroughRESTCatalog(t *testing.T) {
	ctx, dir, conn, reg := glucoseStream(t)
	rest, backing := restLake(t, dir)

	publish(t, conn, reg, 0, 10, false)
	publish(t, conn, reg, 10, 20, false)
	drainInto(t, dir, conn, reg, rest)

	want := map[[2]string]int64{
		{ZoneTrusted, "glucose"}:          30,
		{ZoneLanding, "http"}:             32, // 30 readings, 2 rejected records
		{ZoneQuarantine, QuarantineTable}: 2,
	}
	check := func(when string) {
		t.Helper()
		for tbl, n := range want {
			for name, st := range map[string]*Store{"REST": rest, "SQL behind the server": backing} {
				if got := countRows(t, st, tbl[0], tbl[1]); got != n {
					t.Errorf("%s, %s catalog: %s.%s has %d rows, want %d", when, name, tbl[0], tbl[1], got, n)
				}
			}
		}
	}
	check("after the first drain")

	tb, err := rest.Load(ctx, ZoneTrusted, "glucose")
	if err != nil {
		t.Fatal(err)
	}
	seq := streamSeq(tb)
	if seq == 0 {
		t.Fatalf("trusted.glucose has no %s property after REST commits: %v", PropStreamSeq, tb.Properties())
	}
	snap := tb.CurrentSnapshot()
	if snap == nil || snap.Summary == nil || snap.Summary.Properties[PropStreamSeq] != strconv.FormatUint(seq, 10) {
		t.Errorf("current snapshot summary %+v lacks %s=%d", snap, PropStreamSeq, seq)
	}

	// Lose every acknowledgement: the consumer starts over from the first message.
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
	drainInto(t, dir, conn, reg, rest)
	check("after redelivery")

	// New readings after the redelivery are written.
	publish(t, conn, reg, 30, 5, false)
	drainInto(t, dir, conn, reg, rest)
	want[[2]string{ZoneTrusted, "glucose"}] = 35
	want[[2]string{ZoneLanding, "http"}] = 38
	want[[2]string{ZoneQuarantine, QuarantineTable}] = 3
	check("after more readings")
}
