package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/imports"
	"github.com/pulselake/pulselake/internal/ingest"
	"github.com/pulselake/pulselake/internal/reading"
)

func newIngestCmd(g *globals) *cobra.Command {
	var subject, format, timezone string
	cmd := &cobra.Command{
		Use:   "ingest [--format apple-health|google-takeout|fhir] [--subject S] FILE|DIR...",
		Short: "Import readings from files: NDJSON, JSON arrays, CSV (generic, Fitbit heart rate, home blood-pressure logs), WFDB records (.hea), Apple Health exports and Google Takeout archives",
		Long: `Import readings from files. Exports of wearable apps are detected by their contents, or named
with --format: an Apple Health export (export.zip or export.xml) or a Google Takeout archive of
Fitbit data (Takeout.zip or its folder); they need --subject. FHIR R4 Observations (a Bundle
.json, Bulk Data .ndjson, or a folder of them) carry their subject. Importing again stores
nothing twice.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := checkConfig(g)
			if err != nil {
				return err
			}
			if subject != "" {
				if err := reading.CheckIdent("--subject", subject); err != nil {
					return usageError{err}
				}
			}
			var loc *time.Location
			if timezone != "" {
				if loc, err = time.LoadLocation(timezone); err != nil {
					return usageError{fmt.Errorf("--timezone %q is not an IANA time zone name such as Europe/Berlin", timezone)}
				}
			}
			kinds, err := cfg.Registry()
			if err != nil {
				return err
			}
			if os.Getenv("GOMEMLIMIT") == "" {
				// A multi-gigabyte export streams through: keep the heap (the embedded stream
				// server's caches included) near ingestMemoryLimit rather than letting it
				// double between collections.
				debug.SetMemoryLimit(ingestMemoryLimit)
			}
			if path := os.Getenv("PULSELAKE_CPUPROFILE"); path != "" {
				stop, err := startCPUProfile(path)
				if err != nil {
					return err
				}
				defer stop()
			}
			log := newLogger(cfg, g.stderr)
			conn, closeConn, err := app.Dial(cmd.Context(), log, g.dataDir, cfg)
			if err != nil {
				return err
			}
			defer closeConn()
			if err := conn.Setup(cmd.Context()); err != nil {
				return err
			}
			in := ingest.New(log, prometheus.NewRegistry(), kinds, conn.Publish, ingest.Options{
				MaxBatch: cfg.Ingest.MaxBatch, DedupWindow: cfg.Ingest.DedupWindow.D(), DedupMaxEntries: min(cfg.Ingest.DedupMaxEntries, ingestDedupMax),
			})
			if err := in.Recover(cmd.Context(), conn); err != nil {
				return err
			}
			fhirFormat, err := app.FHIRExport(cfg)
			if err != nil {
				return err
			}
			prog := newImportProgress(g.stderr)
			results, err := in.Import(cmd.Context(), args, ingest.ImportOptions{
				Subject: subject, Format: format, Exports: append(imports.Exports(), fhirFormat), Location: loc, Progress: prog.update,
			})
			prog.finish()
			for _, r := range results {
				fmt.Fprintf(g.stdout, "%s: %d accepted, %d duplicates, %d rejected\n", r.Path, r.Accepted, r.Duplicates, len(r.Rejected)+r.MoreRejected)
				for i, rej := range r.Rejected {
					if i == 5 {
						fmt.Fprintf(g.stdout, "  ... %d more (all kept in quarantine)\n", len(r.Rejected)+r.MoreRejected-5)
						break
					}
					fmt.Fprintf(g.stdout, "  record %d: %s %s: %s\n", rej.Index, rej.Code, rej.Path, rej.Message)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&subject, "subject", "", "subject of the readings of files that name none (exports, home blood-pressure logs)")
	cmd.Flags().StringVar(&format, "format", "", "export format: apple-health, google-takeout or fhir (default: detected from the contents)")
	cmd.Flags().StringVar(&timezone, "timezone", "", "IANA time zone of export times written without an offset (legacy Fitbit data) when the archive's Profile.csv names none (default UTC)")
	return cmd
}

// startCPUProfile writes a CPU profile of the import to path until stop is called
// (PULSELAKE_CPUPROFILE, for profiling the importer; see docs/benchmarks.md).
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("PULSELAKE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("PULSELAKE_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// ingestDedupMax caps the identities pulselake ingest remembers for de-duplication
// (ingest.dedup_max_entries when lower; 0 turns it off). An export's records are stored
// once by the lake's identity de-duplication whatever the window holds, and a re-run is
// recognised there too: the window only spares the stream a record repeated within it.
// Two million identities (serve's default once) cost an import of a 1 GB export a quarter of
// its CPU in map look-ups and 20 MB more RSS than this (docs/benchmarks.md, "Imports").
const ingestDedupMax = 500_000

// ingestMemoryLimit is the soft limit of the Go heap of pulselake ingest (GOMEMLIMIT
// overrides it); docs/benchmarks.md, "Imports", measures the trade.
const ingestMemoryLimit = 176 << 20

// importProgress shows an export's import: a progress bar by bytes read, with rate and ETA,
// on a terminal; otherwise a plain line every plainEvery.
type importProgress struct {
	w        io.Writer
	tty      bool
	bar      *progressbar.ProgressBar
	path     string
	start    time.Time
	lastLine time.Time
	last     ingest.ImportProgress
}

const plainEvery = 10 * time.Second

func newImportProgress(w io.Writer) *importProgress {
	f, ok := w.(*os.File)
	return &importProgress{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *importProgress) update(ip ingest.ImportProgress) {
	if ip.Path != p.path {
		p.finish()
		p.path, p.start, p.lastLine = ip.Path, time.Now(), time.Now()
		if p.tty {
			p.bar = progressbar.NewOptions64(ip.BytesTotal, progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(ip.Format), progressbar.OptionShowBytes(true), progressbar.OptionSetPredictTime(true),
				progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionFullWidth(),
				progressbar.OptionShowDescriptionAtLineEnd())
		}
	}
	p.last = ip
	if p.bar != nil {
		_ = p.bar.Set64(ip.Bytes)
		p.bar.Describe(fmt.Sprintf("%s: %d records", ip.Format, ip.Records))
		return
	}
	if time.Since(p.lastLine) >= plainEvery {
		p.lastLine = time.Now()
		p.line()
	}
}

func (p *importProgress) line() {
	ip := p.last
	el := time.Since(p.start).Seconds()
	pct, eta := 0.0, "?"
	if ip.BytesTotal > 0 {
		pct = 100 * float64(ip.Bytes) / float64(ip.BytesTotal)
	}
	if ip.Bytes > 0 && el > 0 {
		eta = time.Duration(float64(ip.BytesTotal-ip.Bytes) / (float64(ip.Bytes) / el) * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "%s (%s): %.0f%% of %.1f MiB, %d records (%.0f/s), ETA %s\n", ip.Path, ip.Format, pct,
		float64(ip.BytesTotal)/(1<<20), ip.Records, float64(ip.Records)/max(el, 1e-9), eta)
}

func (p *importProgress) finish() {
	if p.path == "" {
		return
	}
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
		p.bar = nil
	} else {
		p.line()
	}
	p.path = ""
}
