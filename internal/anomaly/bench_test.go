package anomaly

import (
	"bytes"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// syntheticHR returns n heart-rate-like values at a 5 s step: a daily cycle plus noise, with
// anomalies (spikes and drops) injected at a rate of about 1%; labels marks them.
func syntheticHR(n int, seed uint64) (values []float64, labels []bool) {
	r := rand.New(rand.NewPCG(seed, 1))
	values = make([]float64, n)
	labels = make([]bool, n)
	for i := range values {
		day := 2 * math.Pi * float64(i) / (86400 / 5)
		v := 70 + 12*math.Sin(day) + r.NormFloat64()*4
		if r.Float64() < 0.01 {
			labels[i] = true
			if r.IntN(2) == 0 {
				v += 40 + r.Float64()*40
			} else {
				v -= 25 + r.Float64()*10
			}
		}
		values[i] = math.Round(v*10) / 10
	}
	return values, labels
}

func syntheticCSV(n int) []byte {
	values, _ := syntheticHR(n, 7)
	var b bytes.Buffer
	b.Grow(n * 32)
	b.WriteString("timestamp,value\n")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	line := make([]byte, 0, 64)
	for i, v := range values {
		line = t0.Add(time.Duration(i)*5*time.Second).AppendFormat(line[:0], "2006-01-02 15:04:05")
		line = append(line, ',')
		line = strconv.AppendFloat(line, v, 'f', -1, 64)
		line = append(line, '\n')
		b.Write(line)
	}
	return b.Bytes()
}

// BenchmarkIForestFitScore1M fits 100 trees on a 1M-row, 1-feature series and scores every row
// (the work of `detect --method iforest`), on one goroutine.
func BenchmarkIForestFitScore1M(b *testing.B) {
	X, _ := syntheticHR(1_000_000, 3)
	dst := make([]float64, len(X))
	b.ReportAllocs()
	for b.Loop() {
		f, _ := NewIsolationForest(IForestOptions{Contamination: 0.08, Seed: 1, Workers: 1})
		if _, err := f.FitScoreSamples(X, 1, dst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(X))*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkHoltWinters runs Graphite's holtWintersAnalysis with bands and aberration.
func BenchmarkHoltWinters(b *testing.B) {
	X, _ := syntheticHR(1_000_000, 3)
	for i := 0; i < len(X); i += 97 {
		X[i] = math.NaN()
	}
	var res HoltWintersResult
	_ = HoltWintersAnalysis(X, HoltWintersOptions{SeasonLength: 17280}, &res)
	b.ReportAllocs()
	for b.Loop() {
		if err := HoltWintersAnalysis(X, HoltWintersOptions{SeasonLength: 17280}, &res); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(X))*float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkDetect1M is `detect` end to end on a 1M-row NAB CSV held in memory: parse, detect,
// write.
func BenchmarkDetect1M(b *testing.B) {
	in := syntheticCSV(1_000_000)
	for _, m := range []struct {
		method string
		sets   []string
	}{
		{"iforest", []string{"contamination=0.08", "seed=1", "n_jobs=1"}},
		{"holt-winters", nil},
		{"cv", []string{"window=720"}},
		{"timeshift", []string{"shift=1d"}},
	} {
		b.Run(m.method, func(b *testing.B) {
			cfg, err := ParseDetectConfig(m.method, m.sets)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if err := RunDetect(cfg, bytes.NewReader(in), io.Discard); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(1e6*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkReadCSV1M parses a 1M-row NAB CSV.
func BenchmarkReadCSV1M(b *testing.B) {
	in := syntheticCSV(1_000_000)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := ReadCSV(bytes.NewReader(in), ReadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
