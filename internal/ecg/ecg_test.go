package ecg

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulselake/pulselake/internal/ecg/wfdb"
)

func TestAAMIClass(t *testing.T) {
	for _, tc := range []struct {
		label string
		want  Class
		ok    bool
	}{
		{"N", ClassN, true}, {"L", ClassN, true}, {"R", ClassN, true}, {"e", ClassN, true}, {"j", ClassN, true},
		{"A", ClassS, true}, {"a", ClassS, true}, {"J", ClassS, true}, {"S", ClassS, true},
		{"V", ClassV, true}, {"E", ClassV, true}, {"F", ClassF, true},
		{"/", ClassQ, true}, {"f", ClassQ, true}, {"Q", ClassQ, true},
		{"!", 0, false}, {"+", 0, false}, {"~", 0, false},
	} {
		got, ok := AAMIClass(tc.label)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("AAMIClass(%q) = %v, %v; want %v, %v", tc.label, got, ok, tc.want, tc.ok)
		}
	}
}

func TestEvaluateMetrics(t *testing.T) {
	var c Confusion
	c[ClassN][ClassN] = 90
	c[ClassN][ClassV] = 10
	c[ClassV][ClassV] = 30
	c[ClassS][ClassN] = 10
	e := c.Evaluate([]string{"x"})
	if e.Beats != 140 || e.Accuracy != 120.0/140 {
		t.Fatalf("beats %d accuracy %v", e.Beats, e.Accuracy)
	}
	n := e.Classes["N"]
	if n.Sensitivity != 0.9 || n.PPV != 0.9 || n.Support != 100 {
		t.Fatalf("N: %+v", n)
	}
	v := e.Classes["V"]
	if v.Sensitivity != 1 || v.PPV != 0.75 {
		t.Fatalf("V: %+v", v)
	}
	// S is present with F1 0; F and Q are absent from reference and predictions.
	want := (0.9 + 0 + 2*0.75/1.75) / 3
	if d := e.MacroF1 - want; d > 1e-12 || d < -1e-12 {
		t.Fatalf("macro-F1 %v, want %v", e.MacroF1, want)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var shape map[string]any
	if err := json.Unmarshal(b, &shape); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"records", "beats", "accuracy", "macro_f1", "classes", "confusion"} {
		if _, ok := shape[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if conf := shape["confusion"].([]any); len(conf) != 5 || len(conf[0].([]any)) != 5 {
		t.Errorf("confusion is not 5x5: %s", b)
	}
	var tab bytes.Buffer
	if err := e.WriteTable(&tab); err != nil || !strings.Contains(tab.String(), "macro-F1") {
		t.Fatalf("table: %v\n%s", err, tab.String())
	}
}

func TestCutWindow(t *testing.T) {
	x := make([]float64, 2000)
	for i := range x {
		x[i] = float64(i % 360)
	}
	var w [WindowLen]float32
	CutWindow(&w, x, 360, 0, 1.0) // 1.2 s at 125 Hz = 150 samples
	if w[0] != 0 || w[149] == 0 || w[150] != 0 || w[186] != 0 {
		t.Fatalf("window %v", w)
	}
	for _, v := range w {
		if v < 0 || v > 1 {
			t.Fatalf("value %v outside 0..1", v)
		}
	}
}

// TestTrainEvalSubset runs the whole pipeline on three records: load beats, train, save,
// load, evaluate on a random held-out share; and checks determinism.
func TestTrainEvalSubset(t *testing.T) {
	dir := needData(t)
	beats, err := LoadBeats(dir, []string{"208", "209", "220"})
	if err != nil {
		t.Fatal(err)
	}
	train, test := SplitRandom(beats, 0.2, 7)
	opt := TrainOptions{Rounds: 30, Seed: 3}
	m, err := Train(context.Background(), train, opt)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.bin")
	if err := SaveModel(path, m); err != nil {
		t.Fatal(err)
	}
	m2, err := LoadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	e := EvaluateBeats(m2, test).Evaluate([]string{"208", "209", "220"})
	t.Logf("subset: %d test beats, accuracy %.4f, macro-F1 %.4f", e.Beats, e.Accuracy, e.MacroF1)
	if e.Accuracy < 0.97 {
		t.Errorf("accuracy %.4f on a random split of 208, 209, 220; want >= 0.97", e.Accuracy)
	}
	for _, c := range []string{"N", "S", "V"} {
		if e.Classes[c].F1 < 0.85 {
			t.Errorf("class %s: %+v", c, e.Classes[c])
		}
	}
	// Same seed, same data: byte-identical model file.
	m3, err := Train(context.Background(), train, opt)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if _, err := m.WriteTo(&a); err != nil {
		t.Fatal(err)
	}
	if _, err := m3.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("training twice with one seed gave different models")
	}
}

// TestDefaultModel checks that the embedded model loads and, on two of its own training
// records, reproduces the reference labels (a sanity check, not an evaluation).
func TestDefaultModel(t *testing.T) {
	m, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Meta.Records) != 22 {
		t.Errorf("default model trained on %d records, want the 22 of DS1", len(m.Meta.Records))
	}
	dir := needData(t)
	e, _, err := EvaluateRecords(m, dir, []string{"119", "208"}, PeaksDetected)
	if err != nil {
		t.Fatal(err)
	}
	if e.Accuracy < 0.98 {
		t.Errorf("default model accuracy %.4f on training records 119 and 208", e.Accuracy)
	}
}

func TestBeatStream(t *testing.T) {
	dir := needData(t)
	// Agreement floors: the default model was trained on both records, on the beats BeatStream
	// cuts from them (detected R peaks matched to the annotations within 150 ms), so this
	// measures how the streaming path reproduces what it was trained on.
	floor := map[string]float64{"101": 0.95, "208": 0.95}
	for _, name := range []string{"101", "208"} {
		ref, err := RecordBeats(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		x := recordSignal(t, dir, name)
		s := NewBeatStream(360)
		var got []StreamBeat
		for _, v := range x {
			got = s.Push(v, got)
		}
		var det, refPk []int64
		for _, b := range got {
			det = append(det, b.Sample)
		}
		for _, b := range ref {
			refPk = append(refPk, b.Sample)
		}
		mr := MatchBeats(refPk, det, 54)
		t.Logf("record %s: %d stream beats, %+v", name, len(got), mr)
		if mr.Sensitivity() < 0.99 || mr.PPV() < 0.97 {
			t.Errorf("record %s: stream beats Se %.4f +P %.4f", name, mr.Sensitivity(), mr.PPV())
		}
		m, err := DefaultModel()
		if err != nil {
			t.Fatal(err)
		}
		// Classes of stream beats agree with the reference for most matched beats (every beat
		// matched within 150 ms, however far its detected R peak is from the annotated one).
		agree, n := 0, 0
		for r, d := range matchPeaks(refPk, det, 54) {
			if d < 0 {
				continue
			}
			n++
			if m.ClassifyWindow(&got[d].Samples, got[d].RR).Class == ref[r].Class {
				agree++
			}
		}
		t.Logf("record %s: %d of %d stream beats classified as the reference", name, agree, n)
		if float64(agree) < floor[name]*float64(n) {
			t.Errorf("record %s: %d of %d stream beats classified as the reference", name, agree, n)
		}
	}
}

func recordSignal(t *testing.T, dir, name string) []float64 {
	t.Helper()
	rec, err := wfdb.ReadRecord(dir, name, "")
	if err != nil {
		t.Fatal(err)
	}
	return physical(rec, 0)
}

func TestClassifyFile(t *testing.T) {
	m, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	flat := strings.TrimSuffix(strings.Repeat("0.5,", WindowLen), ",")
	csvPath := filepath.Join(dir, "b.csv")
	os.WriteFile(csvPath, []byte("h\n"+flat+"\n"+flat+",0.8,0.8,0.8,0.8\n"), 0o644)
	ndPath := filepath.Join(dir, "b.ndjson")
	os.WriteFile(ndPath, []byte(`{"samples":[`+flat+`],"rr":{"pre":0.8,"post":0.8,"local":0.8,"average":0.8}}`+"\n"+
		`{"kind":"ecg_beat","values":{"samples":[`+flat+`],"label":"V"}}`+"\n"), 0o644)
	for _, p := range []string{csvPath, ndPath} {
		var out bytes.Buffer
		n, err := ClassifyFile(m, p, &out)
		if err != nil || n != 2 {
			t.Fatalf("%s: %d beats, %v", p, n, err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		var cb ClassifiedBeat
		if err := json.Unmarshal([]byte(lines[1]), &cb); err != nil || cb.Index != 1 || len(cb.Probs) != 5 {
			t.Fatalf("%s: %q %v", p, lines[1], err)
		}
	}
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte(strings.Repeat("2,", WindowLen-1)+"2\n"), 0o644)
	if _, err := ClassifyFile(m, bad, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "outside 0..1") {
		t.Fatalf("out-of-range samples: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "101.hea")); err == nil {
		var out bytes.Buffer
		n, err := ClassifyFile(m, filepath.Join(dataDir, "101"), &out)
		if err != nil || n < 1800 {
			t.Fatalf("record 101: %d beats, %v", n, err)
		}
	}
}

func FuzzReadModel(f *testing.F) {
	m, err := DefaultModel()
	if err != nil {
		f.Fatal(err)
	}
	small := &Model{Version: ModelVersion, NumFeatures: NumFeatures, ens: []*ensemble{{Base: m.ens[0].Base, Trees: m.ens[0].Trees[:3]}}}
	var b bytes.Buffer
	if _, err := small.WriteTo(&b); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	// With the linear model and the supraventricular gate in each of its scopes.
	for _, scope := range []gateScope{gateEveryBeat, gateRuns, gateRunsOnsets} {
		lin := *m.lin
		lin.Gate, lin.GateScope = 0.5, scope
		small.lin = &lin
		b.Reset()
		if _, err := small.WriteTo(&b); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	for _, name := range []string{"testdata/model_v1.bin", "testdata/model_v2.bin"} { // older versions
		if old, err := os.ReadFile(name); err == nil {
			f.Add(old)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadModel(bytes.NewReader(data))
		if err != nil {
			return
		}
		var w [WindowLen]float32
		m.ClassifyWindow(&w, RRFeatures{Pre: 1}) // must terminate without panicking
	})
}
