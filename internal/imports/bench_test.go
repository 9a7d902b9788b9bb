package imports

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/ingest"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
)

// writeBenchExport writes an Apple Health export.xml of n records: heart rate with a
// metadata child (the Watch) and steps (the iPhone), as in a real export.
func writeBenchExport(tb testing.TB, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<HealthData locale=\"en_US\">\n")
	base := time.Date(2021, 1, 1, 0, 0, 0, 0, time.FixedZone("", -4*3600))
	const layout = "2006-01-02 15:04:05 -0700"
	for i := range n {
		if i%4 == 3 {
			s, e := base.Add(time.Duration(i)*time.Minute).Format(layout), base.Add(time.Duration(i+1)*time.Minute).Format(layout)
			fmt.Fprintf(w, ` <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Alice’s iPhone" sourceVersion="16.1" device="&lt;&lt;HKDevice: 0x2834&gt;, name:iPhone, manufacturer:Apple Inc., model:iPhone, hardware:iPhone14,2, software:16.1&gt;" unit="count" creationDate="%s" startDate="%s" endDate="%s" value="%d"/>
`, e, s, e, i%120)
			continue
		}
		t := base.Add(time.Duration(i) * 5 * time.Second).Format(layout)
		fmt.Fprintf(w, ` <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Alice’s Apple Watch" sourceVersion="9.1" device="&lt;&lt;HKDevice: 0x2838&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,1, software:9.1&gt;" unit="count/min" creationDate="%s" startDate="%s" endDate="%s" value="%d">
  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>
 </Record>
`, t, t, t, 55+i%60)
	}
	w.WriteString("</HealthData>\n")
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkImportAppleHealth imports an Apple Health export into the embedded stream as
// `pulselake ingest` does (parser, validation, de-duplication, envelopes, fsync'd publish).
// Profile with -cpuprofile; docs/benchmarks.md has the 1 GB figures of bench/import.
func BenchmarkImportAppleHealth(b *testing.B) {
	const records = 200_000
	xml := filepath.Join(b.TempDir(), "export.xml")
	writeBenchExport(b, xml, records)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	kinds, err := reading.NewRegistry()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		srv, err := stream.StartServer(log, stream.ServerOptions{Dir: filepath.Join(b.TempDir(), fmt.Sprint(i))})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		conn, err := stream.Connect(ctx, log, stream.ConnOptions{Server: srv, Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		if err := conn.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		in := ingest.New(log, prometheus.NewRegistry(), kinds, conn.Publish, ingest.Options{})
		b.StartTimer()
		res, err := in.Import(ctx, []string{xml}, ingest.ImportOptions{Subject: "bench", Format: FormatAppleHealth, Exports: Exports()})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if res[0].Accepted != records {
			b.Fatalf("accepted %d of %d records (%d duplicates, %d rejected)", res[0].Accepted, records, res[0].Duplicates, len(res[0].Rejected))
		}
		conn.Close()
		srv.Shutdown(ctx)
		b.StartTimer()
	}
	b.ReportMetric(float64(records*b.N)/b.Elapsed().Seconds(), "records/s")
}
