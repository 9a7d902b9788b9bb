package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/token"
)

func TestBucketFor(t *testing.T) {
	for _, tc := range []struct {
		span   time.Duration
		points int
		want   time.Duration
	}{
		{15 * time.Minute, 900, time.Second},
		{time.Hour, 1000, 5 * time.Second},
		{24 * time.Hour, 1000, 2 * time.Minute},
		{7 * 24 * time.Hour, 1000, 15 * time.Minute},
		{30 * 24 * time.Hour, 1000, time.Hour},
		{400 * 24 * time.Hour, 100, 97 * time.Hour},
	} {
		got := bucketFor(tc.span, tc.points)
		if got != tc.want {
			t.Errorf("bucketFor(%s, %d) = %s, want %s", tc.span, tc.points, got, tc.want)
		}
		if n := int(math.Ceil(float64(tc.span) / float64(got))); n > tc.points {
			t.Errorf("bucketFor(%s, %d) = %s makes %d buckets", tc.span, tc.points, got, n)
		}
	}
}

func TestThresholds(t *testing.T) {
	reg, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	bp, _ := reg.Kind("blood_pressure")
	hr, _ := reg.Kind("heart_rate")
	rs := []rules.Rule{
		{Name: "crisis", Kind: "blood_pressure", When: "systolic >= 180 || diastolic >= 120", Severity: "critical"},
		{Name: "low", Kind: "blood_pressure", When: "90 > systolic && pulse > 0"},
		{Name: "brady", Kind: "heart_rate", When: "count(bpm, 5m) >= 3 && avg(bpm, 5m) < 50"},
		{Name: "other kind", Kind: "spo2", When: "percent < 90"},
		{Name: "not a number", Kind: "blood_pressure", When: "systolic > diastolic"},
	}
	got := fmt.Sprint(thresholds(rs, bp))
	want := "[{crisis critical systolic systolic >= 180} {crisis critical diastolic diastolic >= 120} {low  systolic systolic < 90} {low  pulse pulse > 0}]"
	if got != want {
		t.Errorf("blood pressure thresholds:\n got %s\nwant %s", got, want)
	}
	got = fmt.Sprint(thresholds(rs, hr))
	// count(bpm, 5m) is a number of readings, not a heart rate: no line.
	want = "[{brady  bpm avg(bpm, 5m) < 50}]"
	if got != want {
		t.Errorf("heart rate thresholds:\n got %s\nwant %s", got, want)
	}
}

// BenchmarkSubjectSeries7Days answers GET /v1/subjects/{id}/series for a 7-day range of one
// subject (every panel of the patient view) from a lake of 10,000,000 rows: heart rate of
// 100 subjects over 30 days (one reading every 26 s) and SpO2 (one every 4 min). Set
// PULSELAKE_BENCH_DIR to keep the lake between runs.
func BenchmarkSubjectSeries7Days(b *testing.B) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := os.Getenv("PULSELAKE_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	st, err := lake.Open(ctx, log, lake.Config{}.WithDefaults(dir))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	kinds, _ := reading.NewRegistry()
	const subjects, days = 100, 30
	end := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	if names, _ := st.TableNames(ctx, lake.ZoneTrusted); len(names) == 0 {
		writeSeries(b, st, kinds, "heart_rate", "bpm", 9_000_000, subjects, days, end)
		writeSeries(b, st, kinds, "spo2", "percent", 1_000_000, subjects, days, end)
	}
	eng, err := query.Open(ctx, log, nil, query.Options{DataDir: dir, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	api := &subjectsAPI{engine: eng, kinds: kinds, now: time.Now,
		alerts: func(token.Token, string) []alert.Alert { return nil }, rules: rules.DefaultRules}
	url := "/v1/subjects/p-0042/series?from=" + strconv.FormatInt(end.Add(-7*24*time.Hour).UnixMilli(), 10) + "&to=" + strconv.FormatInt(end.UnixMilli(), 10)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/subjects/{id}/series", func(w http.ResponseWriter, r *http.Request) { api.series(w, r, token.Token{Scope: token.ScopeRead}) })
	var n int
	cpu0 := cpuTime()
	for b.Loop() {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", url, nil))
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
		var body struct {
			Series map[string]struct{ T []int64 }
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			b.Fatal(err)
		}
		n = len(body.Series["heart_rate"].T)
	}
	// CPU time (every thread, DuckDB's included) tells the cost apart from the machine's load.
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
	if n < 600 || n > 1000 {
		b.Fatalf("%d heart-rate buckets for 7 days, want 600-1000", n)
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeSeries appends rows of a one-field kind to the lake: subjects readings at a steady
// pace over days ending at end, in chunks of a million.
func writeSeries(b *testing.B, st *lake.Store, kinds *reading.Registry, name, field string, rows, subjects, days int, end time.Time) {
	kind, _ := kinds.Kind(name)
	cols := lake.TrustedColumns(kind)
	per := rows / subjects
	step := time.Duration(int64(days) * int64(24*time.Hour) / int64(per))
	start := end.Add(-time.Duration(days) * 24 * time.Hour)
	const chunk = 1_000_000
	batch := make([][]any, 0, chunk)
	for k := 0; k < rows; k++ {
		s, i := k%subjects, k/subjects
		at := start.Add(time.Duration(i) * step)
		row := []any{fmt.Sprintf("p-%04d", s), fmt.Sprintf("dev-%04d", s), at}
		for _, f := range kind.Fields {
			if f.Name == field {
				row = append(row, 60+20*math.Sin(float64(i)/500)+float64(s%10))
			} else {
				row = append(row, nil)
			}
		}
		batch = append(batch, append(row, fmt.Sprintf("%032x", k), at, "http"))
		if len(batch) == chunk || k == rows-1 {
			if err := st.AppendRows(context.Background(), lake.ZoneTrusted, name, cols, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}
