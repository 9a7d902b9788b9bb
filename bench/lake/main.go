// Command lake benchmarks pulselake's lake on one machine, each part beside its reference
// measured in the same run:
//
//   - write: readings already stored in the ingest stream (batch envelopes of 1,000) are
//     consumed by the lake writer into Iceberg tables (Parquet, zstd); readings/s from the
//     first fetch to the last commit.
//
//   - query: a daily per-device aggregate over N blood-pressure rows of trusted.blood_pressure
//     through the query engine (catalog lookup, views over the current snapshot), beside
//     DuckDB reading the same Parquet files directly.
//
//   - freshness: `pulselake serve` as a separate process; one reading posted every 50 ms;
//     how long until each is visible to `SELECT` through POST /v1/query.
//
//     go run ./bench/lake -part write -readings 2000000
//     go run ./bench/lake -part query -rows 10000000
//     go run ./bench/lake -part freshness -bin ./pulselake -duration 30s
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // the reference: DuckDB on the Parquet files directly

	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

func main() {
	part := flag.String("part", "write", "write, query or freshness")
	readings := flag.Int("readings", 2_000_000, "write: readings to write")
	rows := flag.Int("rows", 10_000_000, "query: blood-pressure rows")
	devices := flag.Int("devices", 1000, "query: devices")
	bin := flag.String("bin", "", "freshness: the pulselake binary")
	duration := flag.Duration("duration", 30*time.Second, "freshness: how long to post")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured part")
	flag.StringVar(&memprofile, "memprofile", "", "write: write an allocation profile of the lake writer")
	flag.StringVar(&heapprofile, "heapprofile", "", "write: write a heap profile at the writer's peak heap")
	flag.String("keep", "", "use this data directory and keep it (to query it afterwards)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		check(err)
		profile = f
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	keep := flag.Lookup("keep").Value.String()
	dir, err := os.MkdirTemp("", "pulselake-bench-lake-")
	check(err)
	if keep != "" {
		dir = keep
		check(os.MkdirAll(dir, 0o755))
	} else {
		defer os.RemoveAll(dir)
	}
	fmt.Printf("machine: %d CPUs, %s/%s, %s; %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	switch *part {
	case "write":
		benchWrite(log, dir, *readings)
	case "query":
		benchQuery(log, dir, *rows, *devices)
	case "freshness":
		if *bin == "" {
			fmt.Fprintln(os.Stderr, "-bin is required: go build -o pulselake ./cmd/pulselake")
			os.Exit(2)
		}
		benchFreshness(dir, *bin, *duration)
	default:
		fmt.Fprintln(os.Stderr, "-part: want write, query or freshness")
		os.Exit(2)
	}
}

func check(err error) {
	if err != nil {
		_, file, line, _ := runtime.Caller(1)
		fmt.Fprintf(os.Stderr, "%s:%d: %v\n", filepath.Base(file), line, err)
		os.Exit(1)
	}
}

// benchWrite fills the ingest stream, then times the lake writer draining it.
func benchWrite(log *slog.Logger, dir string, n int) {
	ctx := context.Background()
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: filepath.Join(dir, "stream")})
	check(err)
	defer srv.Shutdown(ctx)
	conn, err := stream.Connect(ctx, log, stream.ConnOptions{Server: srv, Name: "bench"})
	check(err)
	defer conn.Close()
	check(conn.Setup(ctx))
	reg, err := reading.NewRegistry()
	check(err)
	fillStream(ctx, conn, reading.NewParser(reg), n)
	lc := lake.Config{FlushInterval: yamlconf.Duration(5 * time.Second), CompactInterval: -1}
	lc = lc.WithDefaults(dir)
	wlog := log
	if os.Getenv("BENCH_DEBUG") != "" {
		wlog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := lake.New(wlog, nil, lake.Options{Config: lc, DataDir: dir, Conn: conn, Registry: reg, FetchBatch: 1024})
	check(err)
	runtime.GC() // the fill's garbage is not the writer's
	if profile != nil {
		check(pprof.StartCPUProfile(profile))
		defer pprof.StopCPUProfile()
	}
	t0, cpu0 := time.Now(), cpuTime()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	heapPeak := watchHeapPeak()
	w.Stop() // drain everything in the stream, flushing at 64 MiB, then return
	check(<-done)
	el, cpu := time.Since(t0), cpuTime()-cpu0
	peak := heapPeak()
	if memprofile != "" {
		f, err := os.Create(memprofile)
		check(err)
		check(pprof.Lookup("allocs").WriteTo(f, 0))
		f.Close()
	}
	size := dirSize(filepath.Join(dir, "lake"))
	fmt.Printf("lake write: %d readings in %.2f s = %.0f readings/s into trusted, landing (raw) and Parquet; CPU %.2f s (%.2f µs/reading); warehouse %.1f MB (%.1f bytes/reading); Go heap in use at most %.0f MB\n",
		n, el.Seconds(), float64(n)/el.Seconds(), cpu.Seconds(), cpu.Seconds()*1e6/float64(n), float64(size)/1e6, float64(size)/float64(n), float64(peak)/1e6)
}

// fillStream publishes n readings to the ingest stream in batches of 1,000, alternating
// blood pressure and heart rate over 500 subjects, 100 ms apart.
func fillStream(ctx context.Context, conn *stream.Conn, p *reading.Parser, n int) {
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	fmt.Printf("filling the stream with %d readings (blood pressure and heart rate, batches of 1,000)...\n", n)
	for b := 0; b < n/1000; b++ {
		batch := stream.Batch{Source: stream.SourceHTTP, Received: time.Now()}
		for i := range 1000 {
			k := b*1000 + i
			at := start.Add(time.Duration(k) * 100 * time.Millisecond).UnixMilli()
			var raw string
			if k%2 == 0 {
				raw = fmt.Sprintf(`{"subject":"p-%d","device":"bp-%d","kind":"blood_pressure","time":%d,"values":{"systolic":%d,"diastolic":%d,"pulse":%d}}`,
					k%500, k%500, at, 100+rng.IntN(60), 60+rng.IntN(30), 55+rng.IntN(40))
			} else {
				raw = fmt.Sprintf(`{"subject":"p-%d","device":"hr-%d","kind":"heart_rate","time":%d,"values":{"bpm":%d}}`, k%500, k%500, at, 50+rng.IntN(90))
			}
			r, errs := p.Parse([]byte(raw))
			if len(errs) > 0 {
				check(errs)
			}
			batch.Entries = append(batch.Entries, stream.Entry{Identity: r.Identity(), Reading: &r, Raw: []byte(raw)})
		}
		_, err := conn.Publish(ctx, &batch)
		check(err)
	}
}

// watchHeapPeak samples the Go heap in use every 20 ms (writing a heap profile at each new
// peak when -heapprofile is set) until the returned func is called; that returns the peak.
func watchHeapPeak() func() uint64 {
	peak := make(chan uint64)
	go func() {
		var max uint64
		var ms runtime.MemStats
		for {
			select {
			case peak <- max:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > max {
					max = ms.HeapInuse
					if heapprofile != "" {
						f, err := os.Create(heapprofile)
						check(err)
						check(pprof.Lookup("heap").WriteTo(f, 0))
						f.Close()
					}
				}
			}
		}
	}()
	return func() uint64 { return <-peak }
}

// cpuTime is the CPU time (user and system) the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

const dailyAggregate = `SELECT device, date_trunc('day', time) AS day, count(*) AS n, avg(systolic) AS systolic, avg(diastolic) AS diastolic, max(systolic) AS max_systolic
FROM %s GROUP BY ALL ORDER BY device, day`

// benchQuery writes rows blood-pressure rows, then times the daily per-device aggregate
// through the engine and directly on the Parquet files.
func benchQuery(log *slog.Logger, dir string, rows, devices int) {
	ctx := context.Background()
	lc := lake.Config{}
	lc = lc.WithDefaults(dir)
	st, err := lake.Open(ctx, log, lc)
	check(err)
	defer st.Close()
	kinds, err := reading.NewRegistry()
	check(err)
	kind, _ := kinds.Kind("blood_pressure")
	writeBloodPressure(ctx, st, kind, rows, devices)

	eng, err := query.Open(ctx, log, nil, query.Options{DataDir: dir, Store: st})
	check(err)
	defer eng.Close()
	t, err := st.Load(ctx, lake.ZoneTrusted, "blood_pressure")
	check(err)
	files, err := lake.DataFiles(ctx, t)
	check(err)
	var lits []string
	for _, f := range files {
		lits = append(lits, "'"+strings.TrimPrefix(f, "file://")+"'")
	}
	direct, err := sql.Open("duckdb", "")
	check(err)
	defer direct.Close()
	directSQL := fmt.Sprintf(dailyAggregate, "read_parquet(["+strings.Join(lits, ",")+"])")
	engineSQL := fmt.Sprintf(dailyAggregate, "blood_pressure")
	const runs = 5
	// Engine and direct runs alternate, so drift in the machine's load hits both alike.
	var te, td []float64
	var nEngine, nDirect int
	for range runs {
		t0 := time.Now()
		res, err := eng.Query(ctx, engineSQL, query.Limits{MaxRows: 1_000_000})
		check(err)
		te = append(te, time.Since(t0).Seconds())
		nEngine = len(res.Rows)
		t0 = time.Now()
		nDirect = countRows(ctx, direct, directSQL)
		td = append(td, time.Since(t0).Seconds())
	}
	sort.Float64s(te)
	sort.Float64s(td)
	fmt.Printf("daily per-device aggregate over %d rows in %d files (%d result rows; direct %d):\n", rows, len(files), nEngine, nDirect)
	fmt.Printf("  pulselake query engine: median %.3f s (min %.3f, max %.3f)\n", te[runs/2], te[0], te[runs-1])
	fmt.Printf("  DuckDB on the Parquet files directly: median %.3f s (min %.3f, max %.3f)\n", td[runs/2], td[0], td[runs-1])
	fmt.Printf("  overhead ratio: %.2f\n", te[runs/2]/td[runs/2])
}

// writeBloodPressure appends rows trusted blood-pressure rows to st, spread over devices
// and 90 days, in chunks of a million.
func writeBloodPressure(ctx context.Context, st *lake.Store, kind *reading.Kind, rows, devices int) {
	cols := lake.TrustedColumns(kind)
	rng := rand.New(rand.NewPCG(5, 6))
	start := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	step := time.Duration(int64(90*24*time.Hour) / int64(rows/devices)) // 90 days per device
	fmt.Printf("writing %d blood-pressure rows (%d devices, 90 days)...\n", rows, devices)
	t0 := time.Now()
	const chunk = 1_000_000
	for c := 0; c < rows; c += chunk {
		batch := make([][]any, 0, chunk)
		for k := c; k < min(c+chunk, rows); k++ {
			d := k % devices
			at := start.Add(time.Duration(k/devices) * step)
			row := []any{fmt.Sprintf("p-%04d", d), fmt.Sprintf("bp-%04d", d), at}
			for _, f := range kind.Fields {
				switch f.Name {
				case "systolic":
					row = append(row, float64(100+rng.IntN(70)))
				case "diastolic":
					row = append(row, float64(60+rng.IntN(35)))
				case "pulse":
					row = append(row, float64(50+rng.IntN(50)))
				default:
					row = append(row, nil)
				}
			}
			row = append(row, fmt.Sprintf("%032x", k), at, "http")
			batch = append(batch, row)
		}
		check(st.AppendRows(ctx, lake.ZoneTrusted, "blood_pressure", cols, batch))
	}
	fmt.Printf("written in %.1f s\n", time.Since(t0).Seconds())
}

// countRows runs q on db and returns the number of result rows.
func countRows(ctx context.Context, db *sql.DB, q string) int {
	rs, err := db.QueryContext(ctx, q)
	check(err)
	defer rs.Close()
	n := 0
	for rs.Next() {
		n++
	}
	check(rs.Err())
	return n
}

var (
	profile     *os.File
	memprofile  string
	heapprofile string
)

const benchToken = "plk_bench-admin-token-0123456789abcdef"

// benchFreshness measures post → queryable through a separate serve process.
func benchFreshness(dir, bin string, d time.Duration) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "serve", "--data", dir, "--http", addr, "--mqtt", "off")
	cmd.Env = append(os.Environ(), "PULSELAKE_ADMIN_TOKEN="+benchToken)
	cmd.Stderr = io.Discard
	check(cmd.Start())
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	base := "http://" + addr
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 600 {
			check(fmt.Errorf("serve not ready"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	posted := map[int]time.Time{}
	seen := map[int]time.Duration{}
	stop := time.Now().Add(d)
	next := 0
	postTick := time.NewTicker(50 * time.Millisecond)
	pollTick := time.NewTicker(100 * time.Millisecond)
	defer postTick.Stop()
	defer pollTick.Stop()
	for len(seen) < len(posted) || time.Now().Before(stop) {
		select {
		case <-postTick.C:
			if time.Now().After(stop) {
				continue
			}
			body := fmt.Sprintf(`{"subject":"fresh","device":"f-1","kind":"heart_rate","time":%d,"values":{"bpm":%d}}`,
				time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(next)*time.Second).UnixMilli(), 60+next%60)
			req, _ := http.NewRequest(http.MethodPost, base+"/v1/readings", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+benchToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			check(err)
			resp.Body.Close()
			if resp.StatusCode == 202 {
				posted[next] = time.Now()
			}
			next++
		case <-pollTick.C:
			n := countFresh(base)
			now := time.Now()
			for i := 0; i < n; i++ {
				if _, ok := seen[i]; !ok {
					if at, ok := posted[i]; ok {
						seen[i] = now.Sub(at)
					}
				}
			}
			if time.Since(stop) > 30*time.Second {
				check(fmt.Errorf("%d of %d readings never became visible", len(posted)-len(seen), len(posted)))
			}
		}
	}
	var lat []float64
	for _, v := range seen {
		lat = append(lat, v.Seconds())
	}
	sort.Float64s(lat)
	pct := func(p float64) float64 { return lat[int(p*float64(len(lat)-1))] }
	fmt.Printf("freshness (POST accepted → visible to SELECT via POST /v1/query; flush interval 5 s, poll every 100 ms) over %d readings: p50 %.2f s, p99 %.2f s, max %.2f s\n",
		len(lat), pct(0.5), pct(0.99), lat[len(lat)-1])
}

// countFresh returns how many readings of the benchmark subject are queryable.
func countFresh(base string) int {
	body, _ := json.Marshal(map[string]string{"sql": "SELECT count(*) FROM heart_rate WHERE subject = 'fresh'"})
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+benchToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var res struct{ Rows [][]float64 }
	if json.NewDecoder(resp.Body).Decode(&res) != nil || len(res.Rows) != 1 {
		return 0
	}
	return int(res.Rows[0][0])
}
