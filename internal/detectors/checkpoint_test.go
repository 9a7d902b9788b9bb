package detectors

import (
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/anomaly"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/stream"
)

func testBucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := stream.Connect(context.Background(), log, stream.ConnOptions{Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); srv.Shutdown(context.Background()) })
	kv, err := conn.KV(context.Background(), Bucket, "test")
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// stateRunner is a runner on kv (nil: none) recording its rows.
func stateRunner(t *testing.T, specs []anomaly.DetectorSpec, kv jetstream.KeyValue, now *time.Time) (*Runner, *[][]any) {
	t.Helper()
	ds, errs := anomaly.CompileDetectors(specs, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	rows := &[][]any{}
	r, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), Options{Detectors: ds, State: kv,
		Now: func() time.Time { return *now },
		Out: Outputs{Row: func(_ string, _ []lake.Column, row []any) { *rows = append(*rows, row) }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r, rows
}

var checkpointSpecs = []anomaly.DetectorSpec{
	{Name: "hr-online", Kind: "heart_rate", Value: "bpm", Method: "online"},
	{Name: "hr-hw", Kind: "heart_rate", Value: "bpm", Method: "holt-winters", Params: anomaly.Params{Set: &anomaly.HoltWintersParams{Seasonality: anomaly.Duration(time.Hour)}}, Baseline: "device"},
	{Name: "hr-cv", Kind: "heart_rate", Value: "bpm", Method: "cv", Params: anomaly.Params{Set: &anomaly.CVParams{Window: "20m", Threshold: new(0.08)}}},
	{Name: "hr-shift", Kind: "heart_rate", Value: "bpm", Method: "timeshift", Params: anomaly.Params{Set: &anomaly.TimeShiftParams{Shift: anomaly.Duration(30 * time.Minute), Threshold: new(0.3)}}},
	{Name: "hr-if", Kind: "heart_rate", Value: "bpm", Method: "iforest", Params: anomaly.Params{Set: &anomaly.IForestParams{Window: "64", MinFit: new(32), RefitEvery: new(100000), NEstimators: new(20)}}},
}

// checkpointFeed is a minute series for two subjects with spikes every 41 minutes.
func checkpointFeed(t0 time.Time, n int) []struct {
	subject string
	at      time.Time
	bpm     float64
} {
	rng := rand.New(rand.NewPCG(3, 5))
	var out []struct {
		subject string
		at      time.Time
		bpm     float64
	}
	for i := range n {
		for j, s := range []string{"ann", "bob"} {
			v := 60 + 10*float64(j) + 5*math.Sin(float64(i)/10) + rng.NormFloat64()
			if i%41 == 40 {
				v += 50
			}
			out = append(out, struct {
				subject string
				at      time.Time
				bpm     float64
			}{s, t0.Add(time.Duration(i) * time.Minute), v})
		}
	}
	return out
}

// waitFits waits until every Isolation Forest of r has its first fit (fits run in the
// background), so two runners score alike.
func waitFits(t *testing.T, r *Runner) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ready := true
		r.mu.Lock()
		for _, s := range r.dets {
			for el := s.lru.Front(); el != nil; el = el.Next() {
				if f, ok := el.Value.(*baseline).det.(*anomaly.StreamIForest); ok && !f.Ready() {
					ready = false
				}
			}
		}
		r.mu.Unlock()
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("isolation forest not fitted after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCheckpointRestore: a runner checkpoints to a KV bucket mid-series and stops; a new
// runner restores and scores the rest of the series exactly like a runner that never stopped
// (every method, per-subject and per-device baselines), and lists the firing alert; a second
// checkpoint with nothing new writes nothing, and one after Close purges nothing.
func TestCheckpointRestore(t *testing.T) {
	kv := testBucket(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	now := t0
	feed := checkpointFeed(t0, 300)
	cut := 2 * 200 // both subjects' first 200 minutes
	whole, wholeRows := stateRunner(t, checkpointSpecs, nil, &now)
	first, _ := stateRunner(t, checkpointSpecs, kv, &now)
	for i, f := range feed[:cut] {
		now = f.at.Add(time.Second)
		whole.Observe(ctx, hr(f.subject, "w1", f.at, f.bpm))
		first.Observe(ctx, hr(f.subject, "w1", f.at, f.bpm))
		if i == 2*40 {
			waitFits(t, whole)
			waitFits(t, first)
		}
	}
	firing := first.Alerts(alert.StateFiring)
	if len(firing) == 0 {
		t.Fatal("fixture: no alert firing at the checkpoint")
	}
	if err := first.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	writes := counterValue(first.ck.mWrites)
	if want := float64(2*len(checkpointSpecs) + len(firing)); writes != want {
		t.Errorf("first checkpoint wrote %v entries, want %v (a baseline per subject and detector, and the alerts)", writes, want)
	}
	if err := first.Checkpoint(ctx); err != nil || counterValue(first.ck.mWrites) != writes {
		t.Errorf("a checkpoint with nothing new wrote %v entries (%v)", counterValue(first.ck.mWrites)-writes, err)
	}
	first.Close()
	// A checkpoint after Close (which dropped the baselines) must not purge them.
	if err := first.Checkpoint(ctx); err != nil || float64(len(bucketKeys(t, kv))) != writes {
		t.Fatalf("after Close a checkpoint left %d entries of %v (%v)", len(bucketKeys(t, kv)), writes, err)
	}

	second, secondRows := stateRunner(t, checkpointSpecs, kv, &now)
	if err := second.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if as := second.Alerts(alert.StateFiring); len(as) != len(firing) {
		t.Errorf("after restore %d alerts firing, want %d", len(as), len(firing))
	}
	*wholeRows = (*wholeRows)[:0]
	for _, f := range feed[cut:] {
		now = f.at.Add(time.Second)
		whole.Observe(ctx, hr(f.subject, "w1", f.at, f.bpm))
		second.Observe(ctx, hr(f.subject, "w1", f.at, f.bpm))
	}
	if len(*wholeRows) == 0 {
		t.Fatal("fixture: no anomaly after the cut")
	}
	if len(*secondRows) != len(*wholeRows) {
		t.Fatalf("restored runner flagged %d readings, uninterrupted %d", len(*secondRows), len(*wholeRows))
	}
	methods := map[any]bool{}
	for i, w := range *wholeRows {
		s := (*secondRows)[i]
		// time, detector, subject, value, score
		for _, c := range []int{0, 1, 3, 6, 8} {
			if w[c] != s[c] {
				t.Fatalf("row %d column %d: uninterrupted %v, restored %v", i, c, w, s)
			}
		}
		methods[w[2]] = true
	}
	if len(methods) < 4 {
		t.Errorf("only %v flagged after the cut: the comparison covers too few methods", methods)
	}
}

// TestCheckpointDiscardsMismatch: a baseline saved by a detector whose parameters changed is
// not restored (it starts afresh) and its entry is purged; so is one of a detector no longer
// configured.
func TestCheckpointDiscardsMismatch(t *testing.T) {
	kv := testBucket(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	now := t0
	specs := []anomaly.DetectorSpec{
		{Name: "hr-cv", Kind: "heart_rate", Value: "bpm", Method: "cv", Params: anomaly.Params{Set: &anomaly.CVParams{Window: "20m", Threshold: new(0.08)}}},
		{Name: "hr-old", Kind: "heart_rate", Value: "bpm", Method: "online"},
	}
	r, _ := stateRunner(t, specs, kv, &now)
	for _, f := range checkpointFeed(t0, 50) {
		r.Observe(ctx, hr(f.subject, "w1", f.at, f.bpm))
	}
	if err := r.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	r.Close()
	changed := []anomaly.DetectorSpec{{Name: "hr-cv", Kind: "heart_rate", Value: "bpm", Method: "cv", Params: anomaly.Params{Set: &anomaly.CVParams{Window: "10m", Threshold: new(0.08)}}}}
	r2, _ := stateRunner(t, changed, kv, &now)
	if err := r2.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if n := r2.dets[0].lru.Len(); n != 0 {
		t.Errorf("%d baselines restored from states of another window", n)
	}
	if v := counterValue(r2.ck.mRestored.WithLabelValues("discarded")); v != 4 {
		t.Errorf("%v entries discarded, want 4", v)
	}
	for _, k := range bucketKeys(t, kv) {
		if k[0] == 'b' { // alerts stay: they resolve as those of a removed detector do
			t.Errorf("discarded baseline %s left in the bucket", k)
		}
	}
}

// TestCheckpointErase: erasing a subject removes its baselines and alerts from memory and the
// bucket (before and after counts), leaves the other subject's, and a restore brings back only
// the other subject; EraseState alone (no serve running) does the same.
func TestCheckpointErase(t *testing.T) {
	kv := testBucket(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	now := t0
	specs := []anomaly.DetectorSpec{{Name: "hr-shift", Kind: "heart_rate", Value: "bpm", Method: "timeshift",
		Params: anomaly.Params{Set: &anomaly.TimeShiftParams{Shift: anomaly.Duration(2 * time.Minute), Threshold: new(0.3)}}, Baseline: "device"}}
	r, _ := stateRunner(t, specs, kv, &now)
	for _, subj := range []string{"ann", "bob", "cat"} {
		for i, v := range []float64{70, 70, 70, 200} {
			at := t0.Add(time.Duration(i) * time.Minute)
			now = at.Add(time.Second)
			r.Observe(ctx, hr(subj, "w1", at, v))
		}
	}
	r.Observe(ctx, hr("ann", "w2", t0, 70))
	if err := r.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := bucketKeys(t, kv); len(keys) != 7 { // 4 baselines, 3 alerts
		t.Fatalf("fixture: bucket holds %v", keys)
	}
	if b, a, _, err := r.EraseCheckpoint(ctx, "ann", true); err != nil || b != 3 || a != 3 {
		t.Errorf("dry run: %d %d %v", b, a, err)
	}
	if _, _, _, err := r.EraseSubject(ctx, "ann", false); err != nil {
		t.Fatal(err)
	}
	if b, a, _, err := r.EraseCheckpoint(ctx, "ann", false); err != nil || b != 3 || a != 0 {
		t.Errorf("erase: before %d after %d (%v), want 3 and 0", b, a, err)
	}
	if err := r.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if b, a, err := EraseState(ctx, kv, "ann", false); err != nil || b != 0 || a != 0 {
		t.Errorf("the checkpoint after the erasure wrote the subject back: %d %d %v", b, a, err)
	}
	if b, a, err := EraseState(ctx, kv, "bob", false); err != nil || b != 2 || a != 0 {
		t.Errorf("EraseState(bob): %d %d %v, want 2 0", b, a, err)
	}
	r.Close()
	r2, _ := stateRunner(t, specs, kv, &now)
	if err := r2.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if as := r2.Alerts(""); len(as) != 1 || as[0].Subject != "cat" {
		t.Errorf("restored alerts %+v, want cat's only", as)
	}
	if n := r2.dets[0].lru.Len(); n != 1 {
		t.Errorf("restored %d baselines, want cat's only", n)
	}
}

func bucketKeys(t *testing.T, kv jetstream.KeyValue) []string {
	t.Helper()
	var keys []string
	if err := eachEntry(context.Background(), kv, ">", func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}
