package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/catalog"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/pipeline"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/secret"
	"github.com/pulselake/pulselake/internal/simulate/stedi"
	"github.com/pulselake/pulselake/internal/stream"
)

// These tests run the example pipelines end to end: the real SQL session (DuckDB) over a
// real lake (Iceberg tables in a temporary warehouse), the real secret store (in an embedded
// NATS server), landing tables registered as crawled files.

type lakeEnv struct {
	dataDir string
	lake    lake.Config
	store   *lake.Store
	secrets *secret.Store
	runner  *pipeline.Runner
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newLakeEnv(tb testing.TB) *lakeEnv {
	tb.Helper()
	ctx := context.Background()
	log := quiet()
	env := &lakeEnv{dataDir: tb.TempDir()}
	env.lake = env.lake.WithDefaults(env.dataDir)
	st, err := lake.Open(ctx, log, env.lake)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	env.store = st
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: filepath.Join(env.dataDir, "stream")})
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := stream.Connect(ctx, log, stream.ConnOptions{Server: srv})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(); srv.Shutdown(context.Background()) })
	kv, err := conn.KV(ctx, secret.Bucket, "test secrets")
	if err != nil {
		tb.Fatal(err)
	}
	master, _, err := secret.LoadMasterKey(env.dataDir, func(string) string { return "" })
	if err != nil {
		tb.Fatal(err)
	}
	if env.secrets, err = secret.Open(ctx, log, nil, kv, secret.Options{MasterKey: master}); err != nil {
		tb.Fatal(err)
	}
	env.runner, err = pipeline.NewRunner(log, nil, pipeline.Options{
		Open: func(ctx context.Context) (pipeline.Session, error) {
			return query.OpenSession(ctx, log, env.engineOptions())
		},
		Secrets: env.secrets,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

func (env *lakeEnv) engineOptions() query.Options {
	return query.Options{Lake: env.lake, DataDir: env.dataDir, Store: env.store}
}

// register crawls the files under dir into the table zone.name, as `pulselake catalog crawl`
// does.
func (env *lakeEnv) register(tb testing.TB, zone, name, dir string) {
	tb.Helper()
	if _, err := catalog.Crawl(context.Background(), env.dataDir, catalog.Options{Source: dir, Zone: zone, Name: name}); err != nil {
		tb.Fatal(err)
	}
}

// run runs a project and fails the test on any error unless failures are expected.
func (env *lakeEnv) run(tb testing.TB, dir string, names ...string) *pipeline.Report {
	tb.Helper()
	p, err := pipeline.LoadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	rep, err := env.runner.Run(context.Background(), p, names)
	if err != nil {
		tb.Fatal(err)
	}
	return rep
}

// query reads the lake through a fresh engine, as `pulselake query` does.
func (env *lakeEnv) query(tb testing.TB, q string) *query.Result {
	tb.Helper()
	eng, err := query.Open(context.Background(), quiet(), nil, env.engineOptions())
	if err != nil {
		tb.Fatal(err)
	}
	defer eng.Close()
	res, err := eng.Query(context.Background(), q, query.Limits{MaxRows: 10_000_000, Timeout: time.Minute})
	if err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
	return res
}

func (env *lakeEnv) snapshot(tb testing.TB, table string) int64 {
	tb.Helper()
	zone, name, _ := strings.Cut(table, ".")
	t, err := env.store.Load(context.Background(), zone, name)
	if err != nil {
		tb.Fatal(err)
	}
	return t.CurrentSnapshot().SnapshotID
}

func (env *lakeEnv) key(tb testing.TB) []byte {
	tb.Helper()
	k, err := env.secrets.Get(context.Background(), pipeline.PseudonymizeKeySecret)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// generateStedi writes the STEDI sources and registers each (linked into a folder of its
// own) as a landing table. It returns the folder of the generated files.
func (env *lakeEnv) generateStedi(tb testing.TB, customers int) string {
	tb.Helper()
	src := filepath.Join(tb.TempDir(), "stedi")
	if _, err := stedi.Generate(src, stedi.Options{Customers: customers, Seed: 7}); err != nil {
		tb.Fatal(err)
	}
	for name, f := range map[string]string{"customer": stedi.CustomerFile, "step_trainer": stedi.StepTrainerFile, "accelerometer": stedi.AccelerometerFile} {
		dir := filepath.Join(src, "landing", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.Link(filepath.Join(src, f), filepath.Join(dir, f)); err != nil {
			tb.Fatal(err)
		}
		env.register(tb, "landing", name, dir)
	}
	return src
}

func ms(v any) int64 { return v.(time.Time).UnixMilli() }

func num(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	}
	panic(fmt.Sprintf("not a number: %v (%T)", v, v))
}

func columns(res *query.Result) string { return strings.Join(res.Columns, ",") }

const stediDir = "../../examples/stedi/pipeline"

func TestStediExampleEndToEnd(t *testing.T) {
	env := newLakeEnv(t)
	src := env.generateStedi(t, 300)
	rep := env.run(t, stediDir)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	want := expectStedi(t, src, env.key(t))
	rows := map[string]int64{}
	for _, m := range rep.Models {
		rows[m.Model] = m.Rows
	}

	res := env.query(t, "SELECT email, serial_number, share_with_research_as_of FROM trusted.customer_trusted")
	if len(res.Rows) != len(want.customerTrusted) || rows["trusted.customer_trusted"] != int64(len(res.Rows)) {
		t.Fatalf("customer_trusted: %d rows (reported %d), want %d", len(res.Rows), rows["trusted.customer_trusted"], len(want.customerTrusted))
	}
	for _, r := range res.Rows {
		email := r[0].(string)
		if want.customerTrusted[email] != r[1] || want.consentAt[email] != ms(r[2]) {
			t.Fatalf("customer_trusted row %v: want serial %s consent %d", r, want.customerTrusted[email], want.consentAt[email])
		}
	}

	res = env.query(t, "SELECT email, reading_time, x, y, z FROM trusted.accelerometer_trusted")
	if len(res.Rows) != len(want.accelerometerTrusted) {
		t.Fatalf("accelerometer_trusted: %d rows, want %d", len(res.Rows), len(want.accelerometerTrusted))
	}
	for _, r := range res.Rows {
		a, ok := want.accelerometerTrusted[accKey(r[0].(string), ms(r[1]))]
		if !ok || a.X != num(r[2]) || a.Y != num(r[3]) || a.Z != num(r[4]) {
			t.Fatalf("accelerometer_trusted row %v: want %+v (present %v)", r, a, ok)
		}
	}

	res = env.query(t, "SELECT * FROM curated.customer_curated")
	if got := columns(res); got != "subject,serial_number,registration_date,share_with_research_as_of" {
		t.Fatalf("customer_curated columns %s", got)
	}
	if len(res.Rows) != len(want.customerCurated) {
		t.Fatalf("customer_curated: %d rows, want %d", len(res.Rows), len(want.customerCurated))
	}
	for _, r := range res.Rows {
		if serial, ok := want.customerCurated[r[0].(string)]; !ok || serial != r[1] {
			t.Fatalf("customer_curated row %v: pseudonym unknown or serial %q", r, serial)
		}
	}

	res = env.query(t, "SELECT serial_number, reading_time, distance_from_object FROM trusted.step_trainer_trusted")
	if len(res.Rows) != len(want.stepTrainerTrusted) {
		t.Fatalf("step_trainer_trusted: %d rows, want %d", len(res.Rows), len(want.stepTrainerTrusted))
	}
	for _, r := range res.Rows {
		d, ok := want.stepTrainerTrusted[accKey(r[0].(string), ms(r[1]))]
		if !ok || float64(d) != num(r[2]) {
			t.Fatalf("step_trainer_trusted row %v: want distance %d (present %v)", r, d, ok)
		}
	}

	res = env.query(t, "SELECT * FROM curated.machine_learning_curated")
	if got := columns(res); got != "reading_time,serial_number,distance_from_object,x,y,z" {
		t.Fatalf("machine_learning_curated columns %s", got)
	}
	if len(res.Rows) != len(want.mlCurated) {
		t.Fatalf("machine_learning_curated: %d rows, want %d", len(res.Rows), len(want.mlCurated))
	}
	for _, r := range res.Rows {
		w, ok := want.mlCurated[ms(r[0])]
		if !ok || w[1] != num(r[2]) || w[2] != num(r[3]) || w[3] != num(r[4]) || w[4] != num(r[5]) {
			t.Fatalf("machine_learning_curated row %v: want %v (present %v)", r, w, ok)
		}
	}

	// The run is recorded, one row per model.
	res = env.query(t, "SELECT model, status, rows FROM ops.pipeline_runs ORDER BY model")
	if len(res.Rows) != 5 {
		t.Fatalf("ops.pipeline_runs: %v", res.Rows)
	}
	for _, r := range res.Rows {
		if r[1] != "ok" || r[2] != rows[r[0].(string)] {
			t.Fatalf("run record %v, reported rows %d", r, rows[r[0].(string)])
		}
	}

	// A second run gives the same tables: pseudonyms are stable, the key is kept.
	before := env.query(t, "SELECT subject FROM curated.customer_curated ORDER BY subject").Rows
	if err := env.run(t, stediDir).Err(); err != nil {
		t.Fatal(err)
	}
	after := env.query(t, "SELECT subject FROM curated.customer_curated ORDER BY subject").Rows
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatal("pseudonyms changed between runs")
	}
	if n := env.query(t, "SELECT count(DISTINCT run_id) FROM ops.pipeline_runs").Rows[0][0]; n != int64(2) {
		t.Fatalf("%v runs recorded, want 2", n)
	}
}

func TestDailyHealthExampleEndToEnd(t *testing.T) {
	ctx := context.Background()
	env := newLakeEnv(t)
	d := genHealth(3, 4, 6)
	st := env.store
	base := []lake.Column{{Name: "subject", Type: lake.String}, {Name: "device", Type: lake.String}, {Name: "time", Type: lake.Timestamp}}
	var sleep, hr, steps [][]any
	for _, s := range d.sleep {
		sleep = append(sleep, []any{s.subject, "watch", s.start, s.stage, float64(s.duration)})
	}
	for _, h := range d.hr {
		hr = append(hr, []any{h.subject, "watch", h.at, h.bpm})
	}
	for _, s := range d.steps {
		steps = append(steps, []any{s.subject, "watch", s.at, float64(s.count)})
	}
	for _, w := range []struct {
		table string
		cols  []lake.Column
		rows  [][]any
	}{
		{"sleep", append(base[:3:3], lake.Column{Name: "stage", Type: lake.String}, lake.Column{Name: "duration_s", Type: lake.Float64}), sleep},
		{"heart_rate", append(base[:3:3], lake.Column{Name: "bpm", Type: lake.Float64}), hr},
		{"steps", append(base[:3:3], lake.Column{Name: "count", Type: lake.Float64}), steps},
	} {
		if err := st.AppendRows(ctx, lake.ZoneTrusted, w.table, w.cols, w.rows); err != nil {
			t.Fatal(err)
		}
	}
	diaryDir := filepath.Join(t.TempDir(), "diary")
	if err := os.MkdirAll(diaryDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeDiary(t, filepath.Join(diaryDir, "diary.csv"), d)
	env.register(t, "landing", "diary", diaryDir)

	rep := env.run(t, "../../examples/daily-health/pipeline")
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	want := expectDaily(d)
	res := env.query(t, "SELECT * FROM curated.daily_health")
	if got := columns(res); got != "subject,day,main_sleep_minutes,nap_minutes,naps,avg_heart_rate,resting_heart_rate,steps,worked" {
		t.Fatalf("daily_health columns %s", got)
	}
	if len(res.Rows) != len(want) || rep.Models[0].Rows != int64(len(want)) {
		t.Fatalf("daily_health: %d rows (reported %d), want %d", len(res.Rows), rep.Models[0].Rows, len(want))
	}
	// Rounded to one decimal in SQL: within 0.05 of the exact value.
	near := func(got any, want float64) bool { return got != nil && math.Abs(num(got)-want) <= 0.05+1e-9 }
	for _, r := range res.Rows {
		k := r[0].(string) + "|" + r[1].(time.Time).Format("2006-01-02")
		w := want[k]
		bad := w == nil
		if !bad {
			bad = w.hasSleep != (r[2] != nil) || w.hasSleep && (!near(r[2], w.mainSleep) || !near(r[3], w.naps) || r[4] != w.napCount)
			bad = bad || w.hasHR != (r[5] != nil) || w.hasHR && !near(r[5], w.avgHR)
			bad = bad || w.hasResting != (r[6] != nil) || w.hasResting && !near(r[6], w.restingHR)
			bad = bad || w.hasSteps != (r[7] != nil) || w.hasSteps && r[7] != w.steps
			bad = bad || w.hasWorked != (r[8] != nil) || w.hasWorked && r[8] != w.worked
		}
		if bad {
			t.Fatalf("daily_health row %v\nwant %+v", r, w)
		}
	}
	// The generator's cases are all there: naps, a day whose 03:00 hour is too sparse.
	var naps, rested int
	for _, w := range want {
		if w.napCount > 0 {
			naps++
		}
		if w.hasHR && w.hasResting {
			rested++
		}
	}
	if naps == 0 || rested == 0 {
		t.Fatalf("generated data lacks naps (%d) or resting rates (%d)", naps, rested)
	}
}

// writeModels writes a pipeline folder.
func writeModels(t *testing.T, models map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, sql := range models {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestFailuresKeepTheOldTables(t *testing.T) {
	env := newLakeEnv(t)
	src := env.generateStedi(t, 100)
	if err := env.run(t, stediDir).Err(); err != nil {
		t.Fatal(err)
	}
	tables := []string{"trusted.customer_trusted", "trusted.accelerometer_trusted", "curated.customer_curated"}
	snaps := map[string]int64{}
	counts := map[string]any{}
	for _, tb := range tables {
		snaps[tb] = env.snapshot(t, tb)
		counts[tb] = env.query(t, "SELECT count(*) FROM "+tb).Rows[0][0]
	}

	// The fulfilment defect: consenting customers share serial numbers, so an assertion that
	// serial numbers are unique fails, and shows serial numbers the test finds shared in the
	// source itself.
	owners := map[string]int{}
	for _, serial := range expectStedi(t, src, env.key(t)).customerTrusted {
		owners[serial]++
	}
	shared := 0
	for _, n := range owners {
		if n > 1 {
			shared++
		}
	}
	if shared == 0 {
		t.Fatal("generated consenting customers share no serial number")
	}
	stediSQL := func(name string) string {
		b, err := os.ReadFile(filepath.Join(stediDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	dir := writeModels(t, map[string]string{
		"trusted.customer_trusted.sql":      "-- expect: unique(serial_number)\n" + stediSQL("trusted.customer_trusted.sql"),
		"trusted.accelerometer_trusted.sql": stediSQL("trusted.accelerometer_trusted.sql"),
		"curated.customer_curated.sql":      stediSQL("curated.customer_curated.sql"),
	})
	rep := env.run(t, dir)
	var ae *pipeline.AssertionError
	err := rep.Err()
	if err == nil || !errors.As(err, &ae) {
		t.Fatalf("want an assertion failure, got %v", err)
	}
	if ae.Offending != int64(shared) {
		t.Fatalf("%d shared serial numbers reported, the source has %d:\n%v", ae.Offending, shared, err)
	}
	if len(ae.Rows) != min(shared, 5) {
		t.Fatalf("%d offending rows shown, want %d", len(ae.Rows), min(shared, 5))
	}
	for _, r := range ae.Rows {
		if n := owners[r[0].(string)]; n < 2 || r[1] != int64(n) {
			t.Fatalf("offending row %v: the serial number has %d consenting owners", r, n)
		}
	}
	if !strings.Contains(err.Error(), "unique(serial_number) failed") || !strings.Contains(err.Error(), ae.Rows[0][0].(string)) {
		t.Fatalf("message does not show the offending rows:\n%v", err)
	}
	for i, want := range []pipeline.Status{pipeline.StatusFailed, pipeline.StatusSkipped, pipeline.StatusSkipped} {
		if rep.Models[i].Status != want {
			t.Fatalf("model %s: %s, want %s", rep.Models[i].Model, rep.Models[i].Status, want)
		}
	}
	for _, tb := range tables {
		if env.snapshot(t, tb) != snaps[tb] || env.query(t, "SELECT count(*) FROM "+tb).Rows[0][0] != counts[tb] {
			t.Fatalf("%s changed although its model failed or was skipped", tb)
		}
	}

	// A model whose SELECT fails (a misspelt column) leaves its table as it was too.
	dir = writeModels(t, map[string]string{
		"curated.customer_curated.sql": "SELECT pseudonymize(email) AS subject, serial_numbr FROM trusted.customer_trusted",
	})
	rep = env.run(t, dir)
	if err := rep.Err(); err == nil || !strings.Contains(err.Error(), "serial_numbr") {
		t.Fatalf("want a binder error naming the column, got %v", err)
	}
	if env.snapshot(t, "curated.customer_curated") != snaps["curated.customer_curated"] {
		t.Fatal("curated.customer_curated changed although its model failed")
	}
	if n := env.query(t, "SELECT count(*) FROM ops.pipeline_runs WHERE status <> 'ok'").Rows[0][0]; n != int64(4) {
		t.Fatalf("%v failed or skipped models recorded, want 4", n)
	}
}

func TestIncrementalMerge(t *testing.T) {
	env := newLakeEnv(t)
	src := filepath.Join(t.TempDir(), "events")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	type event struct {
		ID    int64   `json:"id"`
		Batch string  `json:"batch"`
		Value float64 `json:"value"`
	}
	writeBatch := func(file string, evs []event) {
		var b strings.Builder
		for _, e := range evs {
			j, _ := json.Marshal(e)
			b.Write(append(j, '\n'))
		}
		if err := os.WriteFile(filepath.Join(src, file), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The model reads only the newest batch of the landing table, as a daily export would.
	dir := writeModels(t, map[string]string{
		"trusted.events.sql": "-- incremental: id\n-- expect: unique(id)\n" +
			"SELECT id, batch, value FROM landing.events WHERE batch = (SELECT max(batch) FROM landing.events)",
	})
	want := map[int64]event{}
	var first, second []event
	for i := range int64(50) {
		first = append(first, event{i, "1", float64(i)})
	}
	for i := int64(30); i < 80; i++ { // 30..49 update, 50..79 are new
		second = append(second, event{i, "2", float64(i) * 10})
	}
	for _, evs := range [][]event{first, second} {
		for _, e := range evs {
			want[e.ID] = e
		}
	}
	writeBatch("1.json", first)
	env.register(t, "landing", "events", src) // the second batch arrives later, uncrawled
	rep := env.run(t, dir)
	if err := rep.Err(); err != nil || rep.Models[0].Rows != 50 {
		t.Fatalf("first run: %v rows %d", err, rep.Models[0].Rows)
	}
	writeBatch("2.json", second)
	rep = env.run(t, dir)
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if rep.Models[0].New != 50 || rep.Models[0].Rows != int64(len(want)) {
		t.Fatalf("second run: %d new rows, %d in table; want 50 and %d", rep.Models[0].New, rep.Models[0].Rows, len(want))
	}
	res := env.query(t, "SELECT id, batch, value FROM trusted.events")
	if len(res.Rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(res.Rows), len(want))
	}
	for _, r := range res.Rows {
		w := want[r[0].(int64)]
		if r[1] != w.Batch || num(r[2]) != w.Value {
			t.Fatalf("row %v, want %+v", r, w)
		}
	}
}

// BenchmarkStediExample runs the STEDI pipeline on ten times the generator's default size
// (10 000 customers) and, as the reference, on the default size, and reports each model's
// wall time (SELECT, assertions and Iceberg commit).
func BenchmarkStediExample(b *testing.B) {
	for _, customers := range []int{1000, 10_000} {
		b.Run(fmt.Sprintf("customers=%d", customers), func(b *testing.B) {
			env := newLakeEnv(b)
			env.generateStedi(b, customers)
			total := map[string]time.Duration{}
			rows := map[string]int64{}
			var models []string
			b.ResetTimer()
			for range b.N {
				rep := env.run(b, stediDir)
				if err := rep.Err(); err != nil {
					b.Fatal(err)
				}
				models = models[:0]
				for _, m := range rep.Models {
					total[m.Model] += m.Duration
					rows[m.Model] = m.Rows
					models = append(models, m.Model)
				}
			}
			for _, m := range models {
				b.ReportMetric(float64(total[m].Milliseconds())/float64(b.N), m+"-ms")
				b.ReportMetric(float64(rows[m]), m+"-rows")
			}
		})
	}
}
