// Command anomalyeval scores every detect method on labelled series with the Numenta Anomaly
// Benchmark's scoring: generated series with documented anomaly types at several sampling steps,
// and real heart-rate and blood-pressure series with injected, labelled events. Each method's
// detection threshold is tuned per profile on the development seeds, as NAB tunes it on its
// corpus, and the table is reported on the separate test seeds.
//
//	go run ./bench/anomalyeval [-data ../shared/data] [-dev 1,2,3] [-test 11,12,13] [-v]
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/anomaly"
)

func main() {
	data := flag.String("data", "../shared/data", "directory with fitbit-heartrate-1user.csv and bp-home-readings.csv (the real series are left out when missing)")
	dev := flag.String("dev", "1,2,3", "development seeds: thresholds are tuned on them")
	test := flag.String("test", "11,12,13", "test seeds: the table is scored on them")
	verbose := flag.Bool("v", false, "also print the scores on the development seeds")
	flag.Parse()
	if err := run(*data, *dev, *test, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "anomalyeval:", err)
		os.Exit(1)
	}
}

var methods = []string{"online", "iforest", "holt-winters", "cv", "timeshift"}

// realData holds the real series the events are injected into.
type realData struct {
	hrT  []int64
	hrV  []float64
	bpT  []int64
	bpV  []float64
	note string
}

func loadReal(dir string) realData {
	var d realData
	var err error
	d.hrT, d.hrV, err = readColumn(filepath.Join(dir, "fitbit-heartrate-1user.csv"), "time", "hr")
	if err != nil {
		d.note += fmt.Sprintf("heart rate left out: %v\n", err)
	}
	d.bpT, d.bpV, err = readColumn(filepath.Join(dir, "bp-home-readings.csv"), "DateTime", "Sys.mmHg.")
	if err != nil {
		d.note += fmt.Sprintf("blood pressure left out: %v\n", err)
	}
	return d
}

const (
	hrChunk  = 8000 // rows of the heart-rate export per file
	hrFiles  = 4    // heart-rate files per seed
	bpEvents = 2
)

// corpus returns every labelled series of the seeds.
func corpus(seeds []uint64, real realData) []Series {
	var out []Series
	for _, seed := range seeds {
		for _, typ := range anomalyTypes {
			for _, st := range steps {
				out = append(out, generate(typ, st, seed))
			}
		}
		if len(real.hrV) >= 2*hrChunk {
			r := rand.New(rand.NewPCG(seed, 77))
			chunks := len(real.hrV) / hrChunk
			for _, c := range r.Perm(chunks)[:min(hrFiles, chunks)] {
				lo := c * hrChunk
				out = append(out, inject(fmt.Sprintf("heart rate/rows %d-%d", lo, lo+hrChunk-1), "heart rate",
					real.hrT[lo:lo+hrChunk], real.hrV[lo:lo+hrChunk], seed, perFile, realTypes, hrSize))
			}
		}
		if len(real.bpV) > 100 {
			out = append(out, inject("blood pressure", "blood pressure", real.bpT, real.bpV, seed, bpEvents,
				[]string{"spike", "dip", "level shift"}, bpSize))
		}
	}
	return out
}

// hrSize draws the size of an event injected into heart rate, in bpm.
func hrSize(typ string, r *rand.Rand) float64 {
	switch typ {
	case "spike":
		return 35 + 25*r.Float64()
	case "dip":
		return 25 + 10*r.Float64()
	case "level shift":
		return 15 + 10*r.Float64()
	}
	return 0
}

// bpSize draws the size of an event injected into systolic pressure, in mmHg.
func bpSize(typ string, r *rand.Rand) float64 {
	switch typ {
	case "spike":
		return 30 + 15*r.Float64()
	case "dip":
		return 25 + 10*r.Float64()
	case "level shift":
		return 15 + 10*r.Float64()
	}
	return 0
}

// methodConfig is the configuration each method runs with: its defaults, except iforest uses
// scikit-learn's contamination=auto, timeshift
// compares with a day earlier (the generated series have a daily cycle; 7d would find nothing
// to compare in most files) and cv's window is at least 12 points.
func methodConfig(method string, step time.Duration) (anomaly.DetectConfig, error) {
	var sets []string
	switch method {
	case "iforest":
		// scikit-learn's default threshold (detect's default too), as the published figures
		// were measured
		sets = []string{"seed=1", "contamination=auto"}
	case "timeshift":
		sets = []string{"shift=1d"}
	case "cv":
		if step > 0 && time.Hour/step < 12 {
			sets = []string{"window=12"}
		}
	}
	return anomaly.ParseDetectConfig(method, sets)
}

// scoreSeries runs a method over a series and returns its scores (0 where it gives none).
func scoreSeries(method string, s Series) ([]float64, time.Duration, error) {
	cfg, err := methodConfig(method, s.Step)
	if err != nil {
		return nil, 0, err
	}
	t := &anomaly.Table{Header: []string{"timestamp", "value"}, TimeName: "timestamp", ValueNames: []string{"value"},
		ValueIndex: []int{1}, Times: s.Times, Values: s.Values, LineNo: make([]int32, len(s.Times))}
	if method == "iforest" {
		// Isolation Forest needs every value: score the present rows.
		t = presentRows(t)
	}
	start := time.Now()
	cols, err := anomaly.Detect(cfg, t)
	took := time.Since(start)
	if err != nil {
		return nil, 0, fmt.Errorf("%s on %s: %w", method, s.Name, err)
	}
	out := make([]float64, len(s.Values))
	sc := cols[0].Values
	j := 0
	for i, v := range s.Values {
		if method == "iforest" {
			if math.IsNaN(v) {
				continue
			}
			out[i] = sc[j]
			j++
			continue
		}
		if !math.IsNaN(sc[i]) {
			out[i] = sc[i]
		}
	}
	return out, took, nil
}

func presentRows(t *anomaly.Table) *anomaly.Table {
	p := *t
	p.Times, p.Values, p.LineNo = nil, nil, nil
	for i, v := range t.Values {
		if !math.IsNaN(v) {
			p.Times = append(p.Times, t.Times[i])
			p.Values = append(p.Values, v)
			p.LineNo = append(p.LineNo, 0)
		}
	}
	return &p
}

// scored is a series with every method's scores.
type scored struct {
	Series
	scores map[string][]float64
}

func scoreAll(c []Series, took map[string]time.Duration) ([]scored, error) {
	out := make([]scored, len(c))
	for i, s := range c {
		out[i] = scored{Series: s, scores: map[string][]float64{}}
		for _, m := range methods {
			sc, d, err := scoreSeries(m, s)
			if err != nil {
				return nil, err
			}
			took[m] += d
			out[i].scores[m] = sc
		}
	}
	return out, nil
}

// candidates are the thresholds tried: quantiles of the method's scores past probation, from
// the median up, finer towards the top.
func candidates(c []scored, method string) []float64 {
	var all []float64
	for _, s := range c {
		all = append(all, s.scores[method][probation(len(s.Values)):]...)
	}
	slices.Sort(all)
	var out []float64
	for k := range 250 { // quantiles 1 - 0.5·0.95^k: 0.5 up to 1 - 1.4e-6
		q := 1 - 0.5*math.Pow(0.95, float64(k))
		out = append(out, all[int(q*float64(len(all)-1))])
	}
	out = append(out, all[len(all)-1], math.Nextafter(all[len(all)-1], math.Inf(1)))
	slices.Sort(out)
	return slices.Compact(out)
}

func total(c []scored, method string, thr float64, p Profile, group string) Score {
	var s Score
	for _, f := range c {
		if group == "" || f.Group == group {
			s.add(scoreFile(f.scores[method], f.Windows, thr, p))
		}
	}
	return s
}

// tune returns the threshold with the best total score on c.
func tune(c []scored, method string, p Profile) float64 {
	best, bestScore := 0.0, math.Inf(-1)
	for _, thr := range candidates(c, method) {
		if s := total(c, method, thr, p, "").Raw; s > bestScore {
			best, bestScore = thr, s
		}
	}
	return best
}

func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seed %q: %w", f, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func run(dataDir, devSeeds, testSeeds string, verbose bool) error {
	dev, err := parseSeeds(devSeeds)
	if err != nil {
		return err
	}
	test, err := parseSeeds(testSeeds)
	if err != nil {
		return err
	}
	real := loadReal(dataDir)
	fmt.Fprint(os.Stderr, real.note)
	took := map[string]time.Duration{}
	devSet, err := scoreAll(corpus(dev, real), took)
	if err != nil {
		return err
	}
	testC := corpus(test, real)
	testSet, err := scoreAll(testC, took)
	if err != nil {
		return err
	}
	thr := map[string][]float64{}
	for _, m := range methods {
		for _, p := range profiles {
			thr[m] = append(thr[m], tune(devSet, m, p))
		}
	}
	points := 0
	for _, s := range testC {
		points += len(s.Values)
	}
	fmt.Printf("NAB scores (0 = no detection, 100 = every window caught at its start), test seeds %s, %d files, %d points; thresholds tuned on dev seeds %s\n\n",
		testSeeds, len(testC), points, devSeeds)
	if verbose {
		fmt.Println("Development seeds:")
		table(devSet, thr)
		fmt.Println("\nTest seeds:")
	}
	table(testSet, thr)
	fmt.Printf("\nThresholds (standard, low FP, low FN):")
	for _, m := range methods {
		fmt.Printf(" %s %.4g/%.4g/%.4g;", m, thr[m][0], thr[m][1], thr[m][2])
	}
	fmt.Println()
	fmt.Printf("Scoring time (both seed sets, one goroutine):")
	for _, m := range methods {
		fmt.Printf(" %s %v;", m, took[m].Round(time.Millisecond))
	}
	fmt.Println()
	return nil
}

func table(c []scored, thr map[string][]float64) {
	fmt.Printf("| series | files | windows |")
	for _, m := range methods {
		fmt.Printf(" %s |", m)
	}
	fmt.Printf("\n|---|---:|---:|")
	for range methods {
		fmt.Printf("---:|")
	}
	fmt.Println()
	groups := append(slices.Clone(anomalyTypes), "heart rate", "blood pressure")
	row := func(label, group string, pi int) {
		files, windows := 0, 0
		for _, f := range c {
			if group == "" || f.Group == group {
				files++
				windows += len(f.Windows)
			}
		}
		if files == 0 {
			return
		}
		fmt.Printf("| %s | %d | %d |", label, files, windows)
		for _, m := range methods {
			s := total(c, m, thr[m][pi], profiles[pi], group)
			fmt.Printf(" %.1f (%d/%d/%d) |", s.Normalized(), s.TP, s.FP, s.FN)
		}
		fmt.Println()
	}
	for _, g := range groups {
		row(g, g, 0)
	}
	for pi, p := range profiles {
		row("**all, "+p.Name+"**", "", pi)
	}
}
