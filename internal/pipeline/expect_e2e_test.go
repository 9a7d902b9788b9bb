package pipeline_test

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/pipeline"
	"github.com/pulselake/pulselake/internal/simulate/stedi"
)

// This file computes, in plain Go from the generated source files, what every table of the
// two example pipelines must contain. It shares no code with the SQL it checks.

func readJSONLines[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

type stediExpected struct {
	customerTrusted      map[string]string // email → serial number
	consentAt            map[string]int64  // email → consent epoch ms
	accelerometerTrusted map[string]stedi.Accelerometer
	customerCurated      map[string]string // pseudonym → serial number
	stepTrainerTrusted   map[string]int    // serial|time → distance
	mlCurated            map[int64][5]float64
}

func accKey(email string, ts int64) string { return email + "|" + strconv.FormatInt(ts, 10) }

func expectStedi(t *testing.T, dir string, key []byte) stediExpected {
	t.Helper()
	cust := readJSONLines[stedi.Customer](t, filepath.Join(dir, stedi.CustomerFile))
	steps := readJSONLines[stedi.StepTrainer](t, filepath.Join(dir, stedi.StepTrainerFile))
	acc := readJSONLines[stedi.Accelerometer](t, filepath.Join(dir, stedi.AccelerometerFile))
	e := stediExpected{customerTrusted: map[string]string{}, consentAt: map[string]int64{}, accelerometerTrusted: map[string]stedi.Accelerometer{},
		customerCurated: map[string]string{}, stepTrainerTrusted: map[string]int{}, mlCurated: map[int64][5]float64{}}
	latest := map[string]stedi.Customer{}
	for _, c := range cust {
		if l, ok := latest[c.Email]; !ok || c.LastUpdateDate > l.LastUpdateDate {
			latest[c.Email] = c
		}
	}
	for email, c := range latest {
		if c.ShareWithResearchAsOfDate != nil {
			e.customerTrusted[email] = c.SerialNumber
			e.consentAt[email] = *c.ShareWithResearchAsOfDate
		}
	}
	hasAcc := map[string]bool{}
	accAt := map[int64]stedi.Accelerometer{}
	for _, a := range acc {
		at, ok := e.consentAt[a.User]
		if !ok || a.Timestamp < at {
			continue
		}
		e.accelerometerTrusted[accKey(a.User, a.Timestamp)] = a
		hasAcc[a.User] = true
		accAt[a.Timestamp] = a
	}
	serials := map[string]bool{}
	for email, serial := range e.customerTrusted {
		if hasAcc[email] {
			e.customerCurated[pipeline.Pseudonymize(key, email)] = serial
			serials[serial] = true
		}
	}
	for _, s := range steps {
		if !serials[s.SerialNumber] {
			continue
		}
		e.stepTrainerTrusted[accKey(s.SerialNumber, s.SensorReadingTime)] = s.DistanceFromObject
		if a, ok := accAt[s.SensorReadingTime]; ok {
			e.mlCurated[s.SensorReadingTime] = [5]float64{0, float64(s.DistanceFromObject), a.X, a.Y, a.Z}
		}
	}
	if len(e.mlCurated) == 0 || len(e.customerCurated) == 0 {
		t.Fatal("generated data too small: the expected curated tables are empty")
	}
	return e
}

// Daily health: the generated readings and their expected daily table.

type sleepSeg struct {
	subject  string
	start    time.Time
	stage    string
	duration int64 // seconds
}

type hrReading struct {
	subject string
	at      time.Time
	bpm     float64
}

type stepReading struct {
	subject string
	at      time.Time
	count   int64
}

type dailyRow struct {
	mainSleep, naps   float64
	napCount          int64
	hasSleep          bool
	avgHR, restingHR  float64
	hasHR, hasResting bool
	steps             int64
	hasSteps          bool
	worked, hasWorked bool
}

type healthData struct {
	sleep []sleepSeg
	hr    []hrReading
	steps []stepReading
	diary [][3]string // subject, date, worked
}

func dayOf(t time.Time) string { return t.UTC().Format("2006-01-02") }

func expectDaily(d healthData) map[string]*dailyRow {
	out := map[string]*dailyRow{}
	row := func(subject, day string) *dailyRow {
		k := subject + "|" + day
		if out[k] == nil {
			out[k] = &dailyRow{}
		}
		return out[k]
	}
	// Sleep sessions: sort each subject's segments, split at gaps over 30 minutes.
	bySubject := map[string][]sleepSeg{}
	for _, s := range d.sleep {
		bySubject[s.subject] = append(bySubject[s.subject], s)
	}
	for subject, segs := range bySubject {
		sort.Slice(segs, func(i, j int) bool { return segs[i].start.Before(segs[j].start) })
		type session struct {
			start, end time.Time
			asleep     float64
		}
		var sessions []session
		var maxEnd time.Time
		for i, s := range segs {
			end := s.start.Add(time.Duration(s.duration) * time.Second)
			if i == 0 || s.start.After(maxEnd.Add(30*time.Minute)) {
				sessions = append(sessions, session{start: s.start})
			}
			cur := &sessions[len(sessions)-1]
			if end.After(cur.end) {
				cur.end = end
			}
			if s.stage != "wake" {
				cur.asleep += float64(s.duration) / 60
			}
			if end.After(maxEnd) {
				maxEnd = end
			}
		}
		byDay := map[string][]session{}
		for _, s := range sessions {
			byDay[dayOf(s.end)] = append(byDay[dayOf(s.end)], s)
		}
		for day, ss := range byDay {
			sort.Slice(ss, func(i, j int) bool {
				if ss[i].asleep != ss[j].asleep {
					return ss[i].asleep > ss[j].asleep
				}
				return ss[i].start.Before(ss[j].start)
			})
			r := row(subject, day)
			r.hasSleep, r.mainSleep, r.napCount = true, ss[0].asleep, int64(len(ss)-1)
			for _, s := range ss[1:] {
				r.naps += s.asleep
			}
		}
	}
	type hourAgg struct {
		sum float64
		n   int
	}
	hours := map[string]map[string]*hourAgg{} // subject|day → hour → agg
	for _, h := range d.hr {
		k := h.subject + "|" + dayOf(h.at)
		if hours[k] == nil {
			hours[k] = map[string]*hourAgg{}
		}
		hk := h.at.UTC().Truncate(time.Hour).Format(time.RFC3339)
		if hours[k][hk] == nil {
			hours[k][hk] = &hourAgg{}
		}
		hours[k][hk].sum += h.bpm
		hours[k][hk].n++
	}
	for k, hs := range hours {
		r := out[k]
		if r == nil {
			r = &dailyRow{}
			out[k] = r
		}
		var sum float64
		var n int
		rest := math.Inf(1)
		for _, a := range hs {
			sum += a.sum
			n += a.n
			if a.n >= 10 && a.sum/float64(a.n) < rest {
				rest = a.sum / float64(a.n)
			}
		}
		r.hasHR, r.avgHR = true, sum/float64(n)
		if !math.IsInf(rest, 1) {
			r.hasResting, r.restingHR = true, rest
		}
	}
	for _, s := range d.steps {
		r := row(s.subject, dayOf(s.at))
		r.hasSteps = true
		r.steps += s.count
	}
	for _, w := range d.diary {
		r := row(w[0], w[1])
		r.hasWorked, r.worked = true, w[2] == "true"
	}
	return out
}

// genHealth makes readings for a few subjects over several days: nights that cross midnight,
// naps, a session split by a short wake (same session) and one by a long gap (two sessions),
// heart rate every 5 minutes with a quiet night, steps every hour, a diary.
func genHealth(seed int64, subjects, days int) healthData {
	var d healthData
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	x := uint64(seed)
	rnd := func(n int) int { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return int(x % uint64(n)) }
	stages := []string{"light", "deep", "rem", "wake", "light", "asleep", "restless"}
	for s := range subjects {
		subject := "person-" + strconv.Itoa(s)
		for day := range days {
			d0 := base.AddDate(0, 0, day)
			// Night: starts 22:00-23:59 the day before, segments of 10-40 minutes.
			t := d0.Add(-2*time.Hour + time.Duration(rnd(120))*time.Minute)
			for range 12 + rnd(8) {
				dur := int64(600 + rnd(1800))
				d.sleep = append(d.sleep, sleepSeg{subject, t, stages[rnd(len(stages))], dur})
				gap := time.Duration(rnd(10)) * time.Minute // short gaps stay in the session
				t = t.Add(time.Duration(dur)*time.Second + gap)
			}
			if rnd(2) == 0 { // afternoon nap
				nap := d0.Add(14*time.Hour + time.Duration(rnd(60))*time.Minute)
				d.sleep = append(d.sleep, sleepSeg{subject, nap, "light", int64(900 + rnd(1800))})
			}
			for m := 0; m < 24*60; m += 5 {
				at := d0.Add(time.Duration(m) * time.Minute)
				bpm := 62 + float64(rnd(40))
				if at.Hour() < 6 {
					bpm = 48 + float64(rnd(10))
				}
				if day == 1 && at.Hour() == 3 && m%10 == 0 {
					continue // too few readings that hour: not a resting candidate
				}
				d.hr = append(d.hr, hrReading{subject, at, bpm})
			}
			for h := 7; h < 22; h++ {
				d.steps = append(d.steps, stepReading{subject, d0.Add(time.Duration(h)*time.Hour + 30*time.Minute), int64(rnd(1500))})
			}
			if day%3 != 2 {
				d.diary = append(d.diary, [3]string{subject, d0.Format("2006-01-02"), strconv.FormatBool(day%2 == 0)})
			}
		}
	}
	return d
}

func writeDiary(t *testing.T, path string, d healthData) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"subject", "date", "worked"})
	for _, r := range d.diary {
		_ = w.Write(r[:])
	}
	w.Flush()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
