package lake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go/table"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
)

// eraseStore opens a store with a file:// warehouse and SQLite catalog in dir.
func eraseStore(t *testing.T, dir string) *Store {
	t.Helper()
	cfg := Config{}
	cfg = cfg.WithDefaults(dir)
	s, err := Open(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var (
	eraseTrustedCols = []Column{{ColSubject, String}, {ColDevice, String}, {ColTime, Timestamp}, {"bpm", Float64},
		{"samples", Float64List}, {ColID, String}, {ColIngestTime, Timestamp}, {ColSource, String}}
	eraseOpsCols = []Column{{"rule", String}, {ColSubject, String}, {"state", String}, {"at", Timestamp}}
	// A table without a subject column: erase must leave it alone.
	eraseCuratedCols = []Column{{"day", String}, {"readings", Int64}}
	eraseT0          = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
)

// eraseTrustedRow is row i of a trusted-like table: subjects rotate over three patients,
// times spread over three days (three partitions).
func eraseTrustedRow(i int, subject string) []any {
	ts := eraseT0.Add(time.Duration(i%3)*24*time.Hour + time.Duration(i)*time.Minute)
	var samples any
	if i%4 == 0 {
		samples = []float64{float64(i), 0.5}
	}
	return []any{subject, fmt.Sprintf("dev-%d", i%5), ts, float64(60 + i%50), samples, fmt.Sprintf("id-%04d", i), eraseT0, "http"}
}

func eraseSubject(i int) string { return []string{"p-1", "p-2", "p-3"}[i%3] }

// appendWithSeq commits rows in one Iceberg commit with a stream watermark, as the writer does.
func appendWithSeq(t *testing.T, s *Store, zone, name string, cols []Column, rows [][]any, seq uint64, partition string) {
	t.Helper()
	ctx := context.Background()
	tb, err := s.ensure(ctx, zone, name, schemaOf(cols), partition)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := buildRows(tb, cols, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	if _, err := s.commitAppend(ctx, zone, name, tb, []arrow.RecordBatch{rec}, seq); err != nil {
		t.Fatal(err)
	}
}

// tableRows reads every row of a table as sorted strings.
func tableRows(t *testing.T, tb *table.Table) []string {
	t.Helper()
	if tb.CurrentSnapshot() == nil {
		return nil
	}
	_, recs, err := tb.Scan().ToArrowRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rec, err := range recs {
		if err != nil {
			t.Fatal(err)
		}
		for r := range int(rec.NumRows()) {
			var b strings.Builder
			for c := range int(rec.NumCols()) {
				col := rec.Column(c)
				if col.IsNull(r) {
					b.WriteString("NULL|")
					continue
				}
				b.WriteString(col.ValueStr(r))
				b.WriteByte('|')
			}
			out = append(out, b.String())
		}
		rec.Release()
	}
	slices.Sort(out)
	return out
}

// parquetOnDisk lists the data files under a table's location.
func parquetOnDisk(t *testing.T, tb *table.Table) []string {
	t.Helper()
	root := strings.TrimPrefix(tb.Location(), "file://")
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			files = append(files, "file://"+p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func currentFiles(t *testing.T, tb *table.Table) []string {
	t.Helper()
	files, err := DataFiles(context.Background(), tb)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if !strings.HasPrefix(f, "file://") {
			files[i] = "file://" + f
		}
	}
	slices.Sort(files)
	return files
}

func TestEraseRemovesSubjectFromEveryZone(t *testing.T) {
	ctx := context.Background()
	s := eraseStore(t, t.TempDir())

	// trusted.heart_rate: four commits (files) over three day partitions.
	var want []string // rows of the other subjects, as they must remain
	for c := range 4 {
		var rows [][]any
		for i := c * 30; i < (c+1)*30; i++ {
			rows = append(rows, eraseTrustedRow(i, eraseSubject(i)))
		}
		appendWithSeq(t, s, ZoneTrusted, "heart_rate", eraseTrustedCols, rows, uint64(100+c), ColTime)
	}
	// A file holding only the subject (dropped whole, not rewritten).
	appendWithSeq(t, s, ZoneTrusted, "heart_rate", eraseTrustedCols, [][]any{eraseTrustedRow(999, "p-2")}, 104, ColTime)

	// ops.alerts: unpartitioned, through AppendRows.
	for c := range 2 {
		var rows [][]any
		for i := range 10 {
			rows = append(rows, []any{"high-bp", eraseSubject(i + c), "firing", eraseT0.Add(time.Duration(i) * time.Second)})
		}
		if err := s.AppendRows(ctx, ZoneOps, "alerts", eraseOpsCols, rows); err != nil {
			t.Fatal(err)
		}
	}
	// landing-like rows with NULL subjects (rejected payloads) must stay.
	if err := s.AppendRows(ctx, ZoneLanding, "http", []Column{{ColReceived, Timestamp}, {ColSubject, String}, {"raw", String}},
		[][]any{{eraseT0, nil, "{bad"}, {eraseT0, "p-2", `{"subject":"p-2"}`}, {eraseT0, "p-1", `{"subject":"p-1"}`}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendRows(ctx, ZoneCurated, "daily", eraseCuratedCols, [][]any{{"2026-11-20", 120}}); err != nil {
		t.Fatal(err)
	}

	load := func(zone, name string) *table.Table {
		tb, err := s.Load(ctx, zone, name)
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}
	keep := func(zone, name string) []string {
		var rows []string
		for _, r := range tableRows(t, load(zone, name)) {
			if !strings.HasPrefix(r, "p-2|") && !strings.Contains(r, "|p-2|") {
				rows = append(rows, r)
			}
		}
		return rows
	}
	want = keep(ZoneTrusted, "heart_rate")
	wantOps := keep(ZoneOps, "alerts")
	wantLanding := keep(ZoneLanding, "http")
	wantCurated := tableRows(t, load(ZoneCurated, "daily"))
	if len(want) != 80 || len(wantOps) != 13 || len(wantLanding) != 2 {
		t.Fatalf("fixture: %d trusted, %d ops, %d landing rows of other subjects", len(want), len(wantOps), len(wantLanding))
	}
	filesBefore := currentFiles(t, load(ZoneTrusted, "heart_rate"))

	// A dry run counts and changes nothing.
	dry, err := s.Erase(ctx, "p-2", EraseOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int64{}
	for _, te := range dry {
		got[te.Zone+"."+te.Name] = [2]int64{te.Before, te.After}
	}
	wantDry := map[string][2]int64{"landing.http": {1, 1}, "trusted.heart_rate": {41, 41}, "ops.alerts": {7, 7}}
	if fmt.Sprint(got) != fmt.Sprint(wantDry) {
		t.Fatalf("dry run: got %v, want %v", got, wantDry)
	}
	if f := currentFiles(t, load(ZoneTrusted, "heart_rate")); !slices.Equal(f, filesBefore) {
		t.Fatalf("dry run changed the files")
	}

	res, err := s.Erase(ctx, "p-2", EraseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got = map[string][2]int64{}
	for _, te := range res {
		got[te.Zone+"."+te.Name] = [2]int64{te.Before, te.After}
		if te.Before > 0 && (te.Rewritten == 0 || te.PurgedFiles != te.Rewritten || te.Expired == 0) {
			t.Errorf("%s.%s: rewritten %d files, purged %d, expired %d snapshots", te.Zone, te.Name, te.Rewritten, te.PurgedFiles, te.Expired)
		}
	}
	wantRes := map[string][2]int64{"landing.http": {1, 0}, "trusted.heart_rate": {41, 0}, "ops.alerts": {7, 0}}
	if fmt.Sprint(got) != fmt.Sprint(wantRes) {
		t.Fatalf("erase: got %v, want %v", got, wantRes)
	}

	// Other subjects' rows are exactly as they were; the table without a subject column too.
	for _, c := range []struct {
		zone, name string
		want       []string
	}{{ZoneTrusted, "heart_rate", want}, {ZoneOps, "alerts", wantOps}, {ZoneLanding, "http", wantLanding}, {ZoneCurated, "daily", wantCurated}} {
		if rows := tableRows(t, load(c.zone, c.name)); !slices.Equal(rows, c.want) {
			t.Errorf("%s.%s after erase:\n got %q\nwant %q", c.zone, c.name, rows, c.want)
		}
	}

	// No data file of an older snapshot is left on disk: the table directory holds exactly
	// the current snapshot's files, and every file that held p-2 is gone.
	tr := load(ZoneTrusted, "heart_rate")
	onDisk, current := parquetOnDisk(t, tr), currentFiles(t, tr)
	if !slices.Equal(onDisk, current) {
		t.Errorf("data files on disk %q, current snapshot %q", onDisk, current)
	}
	if len(tr.Metadata().Snapshots()) != 1 {
		t.Errorf("%d snapshots retained, want only the erase's", len(tr.Metadata().Snapshots()))
	}
	replaced := 0
	for _, f := range filesBefore {
		if !slices.Contains(current, f) {
			replaced++
		}
	}
	if replaced != 5 { // four mixed files rewritten, the p-2-only file dropped (per partition)
		t.Logf("files replaced: %d of %d", replaced, len(filesBefore))
	}
	if replaced == 0 {
		t.Error("no data file was replaced")
	}
	// The writer's stream watermark survives.
	if got := tr.Properties()[PropStreamSeq]; got != "104" {
		t.Errorf("stream watermark %q after erase, want 104", got)
	}

	// No manifest of the table still lists a removed file (with the subject as its
	// column bounds).
	fio, err := tr.FS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, snap := range tr.Metadata().Snapshots() {
		mans, err := snap.Manifests(fio)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mans {
			for e, err := range m.Entries(fio, false) {
				if err != nil {
					t.Fatal(err)
				}
				if f := "file://" + strings.TrimPrefix(e.DataFile().FilePath(), "file://"); !slices.Contains(current, f) {
					t.Errorf("manifest %s lists %s (status %v), not in the current snapshot", m.FilePath(), f, e.Status())
				}
			}
		}
	}

	// A second subject: the expired manifests name files the first erase deleted already.
	third, err := s.Erase(ctx, "p-3", EraseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, te := range third {
		if te.After != 0 {
			t.Errorf("erasing p-3 left %d rows in %s.%s", te.After, te.Zone, te.Name)
		}
	}
	var onlyP1 []string
	for _, r := range want {
		if strings.HasPrefix(r, "p-1|") {
			onlyP1 = append(onlyP1, r)
		}
	}
	if rows := tableRows(t, load(ZoneTrusted, "heart_rate")); len(onlyP1) != 40 || !slices.Equal(rows, onlyP1) {
		t.Errorf("trusted.heart_rate after erasing p-2 and p-3: %d rows, want the %d of p-1", len(rows), len(onlyP1))
	}

	// Erasing again finds nothing and changes nothing.
	again, err := s.Erase(ctx, "p-2", EraseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, te := range again {
		if te.Before != 0 || te.After != 0 || te.Rewritten != 0 {
			t.Errorf("second erase of %s.%s: %+v", te.Zone, te.Name, te)
		}
	}
	if _, err := s.Erase(ctx, " ", EraseOptions{}); err == nil {
		t.Error("erasing an empty subject succeeded")
	}
}

// TestEraseWhileWriting erases while another store on the same catalog (as a running
// serve's lake writer would) keeps appending to the same table: every appended row
// survives, and no row of the erased subject remains.
func TestEraseWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := eraseStore(t, dir)
	writer := eraseStore(t, dir)
	var rows [][]any
	for i := range 90 {
		rows = append(rows, eraseTrustedRow(i, eraseSubject(i)))
	}
	appendWithSeq(t, writer, ZoneTrusted, "heart_rate", eraseTrustedCols, rows, 1, ColTime)

	const appends = 25
	var wg sync.WaitGroup
	wg.Add(1)
	errc := make(chan error, 1)
	go func() {
		defer wg.Done()
		for n := range appends {
			row := [][]any{eraseTrustedRow(1000+n, "p-1")}
			for attempt := 0; ; attempt++ { // the writer retries a failed commit on a reloaded table
				tb, err := writer.ensure(ctx, ZoneTrusted, "heart_rate", schemaOf(eraseTrustedCols), ColTime)
				if err == nil {
					var rec arrow.RecordBatch
					if rec, err = buildRows(tb, eraseTrustedCols, row); err == nil {
						_, err = writer.commitAppend(ctx, ZoneTrusted, "heart_rate", tb, []arrow.RecordBatch{rec}, uint64(2+n))
						rec.Release()
					}
				}
				if err == nil {
					break
				}
				if attempt > 200 {
					errc <- err
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	res, err := s.Erase(ctx, "p-2", EraseOptions{})
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatalf("concurrent append: %v", err)
	default:
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Before != 30 || res[0].After != 0 {
		t.Fatalf("erase: %+v", res)
	}
	t.Logf("erase took %d attempt(s)", res[0].Attempts)
	tb, err := s.Load(ctx, ZoneTrusted, "heart_rate")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, r := range tableRows(t, tb) {
		counts[strings.SplitN(r, "|", 2)[0]]++
	}
	if counts["p-1"] != 30+appends || counts["p-3"] != 30 || counts["p-2"] != 0 {
		t.Errorf("rows per subject after erase during appends: %v", counts)
	}
	if got := tb.Properties()[PropStreamSeq]; got != fmt.Sprint(1+appends) {
		t.Errorf("stream watermark %q, want %d", got, 1+appends)
	}
}

// TestPurgeStream deletes the subject's batches from the ingest stream, but only those every
// consumer has acknowledged.
func TestPurgeStream(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	conn, err := stream.Connect(ctx, log, stream.ConnOptions{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	// Six batches: 1 p-1 only; 2 p-1 and p-2; 3 p-2 only; 4 a rejected payload of p-2;
	// 5 bytes that are not JSON naming p-2; 6 p-2 (not yet consumed).
	batches := [][]string{
		{`{"subject":"p-1","device":"d","kind":"heart_rate","time":1795428000000,"values":{"bpm":70}}`},
		{`{"subject":"p-1","device":"d","kind":"heart_rate","time":1795428001000,"values":{"bpm":70}}`,
			`{"subject":"p-2","device":"d","kind":"heart_rate","time":1795428001000,"values":{"bpm":71}}`},
		{`{"subject":"p-2","device":"d","kind":"heart_rate","time":1795428002000,"values":{"bpm":72}}`},
		{`{"subject":"p-2","device":"d","kind":"heart_rate","time":1795428003000,"values":{"bpm":900}}`},
		{`{"subject":"p-2","device":"d"`},
		{`{"subject":"p-2","device":"d","kind":"heart_rate","time":1795428005000,"values":{"bpm":75}}`},
	}
	for i, recs := range batches {
		b := &stream.Batch{Source: stream.SourceHTTP, Received: time.Now()}
		for _, raw := range recs {
			r, errs := p.Parse([]byte(raw))
			if errs != nil {
				b.Entries = append(b.Entries, stream.Entry{Errors: errs, Raw: []byte(raw)})
				continue
			}
			b.Entries = append(b.Entries, stream.Entry{Identity: r.Identity(), Reading: &r, Raw: []byte(raw)})
		}
		if _, err := conn.Publish(ctx, b); err != nil {
			t.Fatalf("batch %d: %v", i+1, err)
		}
	}
	// A consumer (the lake writer) has acknowledged the first five messages.
	s, err := conn.JS.Stream(ctx, stream.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: ConsumerName, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(5, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range msgs.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}

	dry, err := PurgeStream(ctx, conn.JS, "p-2", true)
	if err != nil {
		t.Fatal(err)
	}
	want := StreamPurge{Stream: stream.IngestStream, Scanned: 6, Matched: 5, Deleted: 0, Pending: 1}
	if len(dry) == 0 || dry[0] != want {
		t.Fatalf("dry run: %+v, want %+v", dry, want)
	}
	res, err := PurgeStream(ctx, conn.JS, "p-2", false)
	if err != nil {
		t.Fatal(err)
	}
	want.Deleted = 4
	if len(res) == 0 || res[0] != want {
		t.Fatalf("purge: %+v, want %+v", res, want)
	}
	for seq := uint64(1); seq <= 6; seq++ {
		_, err := s.GetMsg(ctx, seq)
		gone := errors.Is(err, jetstream.ErrMsgNotFound)
		if err != nil && !gone {
			t.Fatal(err)
		}
		if wantGone := seq >= 2 && seq <= 5; gone != wantGone {
			t.Errorf("message %d: deleted %v, want %v", seq, gone, wantGone)
		}
	}
	if _, err := PurgeStream(ctx, conn.JS, "", false); err == nil {
		t.Error("purging an empty subject succeeded")
	}
}

func TestPayloadHolds(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want bool
	}{
		{`{"subject":"p-2"}`, true},
		{`{"subject":"p-22"}`, false},
		{`[{"subject":"p-1"},{"subject":"p-2"}]`, true},
		{`[{"subject":"p-1"}]`, false},
		{`{"subject":"p-2"`, true}, // not JSON: the quoted subject anywhere
		{`{"device":"p-2"}`, false},
		{`{"subject":2}`, false},
		{``, false},
	} {
		if got := payloadHolds([]byte(c.raw), "p-2"); got != c.want {
			t.Errorf("payloadHolds(%s) = %v, want %v", c.raw, got, c.want)
		}
	}
}

func FuzzMessageHolds(f *testing.F) {
	f.Add([]byte("{\"v\":1}\n{\"id\":\"x\",\"reading\":{\"subject\":\"p-2\"},\"raw\":{\"subject\":\"p-2\"}}\n"), "p-2")
	f.Add([]byte("{\"v\":1}\n{\"errors\":[],\"raw_text\":\"{\\\"subject\\\":\\\"p-2\\\"\"}\n"), "p-2")
	f.Add([]byte(`[{"subject":"a"}]`), "a")
	f.Fuzz(func(t *testing.T, data []byte, subject string) {
		// Must not panic. Without escapes in the message, a match needs the subject's bytes.
		for _, name := range []string{stream.IngestStream, stream.MQTTStream} {
			got := messageHolds(name, data, subject)
			if got && subject != "" && !bytes.Contains(data, []byte(subject)) && !bytes.Contains(data, []byte{'\\'}) {
				t.Errorf("%s: matched %q in %q", name, subject, data)
			}
		}
	})
}
