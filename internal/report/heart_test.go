package report

import (
	"encoding/csv"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const fitbitCSV = "../../../shared/data/fitbit-heartrate-1user.csv"

// TestHeartOnFitbitExport writes the report of the real Fitbit export and checks the page's
// numbers against a separate pass over the CSV.
func TestHeartOnFitbitExport(t *testing.T) {
	f, err := os.Open(fitbitCSV)
	if err != nil {
		t.Skipf("real Fitbit export not found at %s (needs ../shared/data beside the checkout): %v", fitbitCSV, err)
	}
	rs, err := ReadFitbitCSV(f, "2022484408")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := Heart(rs, dir, HeartOptions{Subject: "2022484408"})
	if err != nil {
		t.Fatal(err)
	}

	// Independent pass: plain encoding/csv, string dates, float sums.
	raw, _ := os.ReadFile(fitbitCSV)
	recs, err := csv.NewReader(strings.NewReader(string(raw))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	recs = recs[1:]
	perDay := map[string]int{}
	var weekday [7]int
	sum, lo, hi := 0.0, math.Inf(1), math.Inf(-1)
	for _, r := range recs {
		v, _ := strconv.ParseFloat(r[2], 64)
		sum += v
		lo, hi = min(lo, v), max(hi, v)
		perDay[r[1][:10]]++
		tm, _ := time.Parse("2006-01-02 15:04:05", r[1])
		weekday[(int(tm.Weekday())+6)%7]++
	}
	html, err := os.ReadFile(filepath.Join(dir, FileHTML))
	if err != nil {
		t.Fatal(err)
	}
	cell := func(id string) string {
		m := regexp.MustCompile(`id="` + id + `">([^<]*)<`).FindSubmatch(html)
		if m == nil {
			t.Fatalf("no %s in the page", id)
		}
		return string(m[1])
	}
	if got := cell("readings"); got != strconv.Itoa(len(recs)) {
		t.Errorf("readings %s, want %d", got, len(recs))
	}
	if got := cell("days"); got != strconv.Itoa(len(perDay)) {
		t.Errorf("days %s, want %d", got, len(perDay))
	}
	if got := cell("mean"); got != strconv.FormatFloat(sum/float64(len(recs)), 'f', 1, 64) {
		t.Errorf("mean %s, want %.1f", got, sum/float64(len(recs)))
	}
	if cell("min") != strconv.FormatFloat(lo, 'f', 1, 64) || cell("max") != strconv.FormatFloat(hi, 'f', 1, 64) {
		t.Errorf("min/max %s/%s, want %g/%g", cell("min"), cell("max"), lo, hi)
	}
	// Daily rows: date and count of every day.
	rows := regexp.MustCompile(`<tr><td>(\d{4}-\d\d-\d\d)</td><td>(\d+)</td>.*<td>(\d+)</td></tr>`).FindAllSubmatch(html, -1)
	if len(rows) != len(perDay) {
		t.Fatalf("%d daily rows, want %d", len(rows), len(perDay))
	}
	dayAnomalies := 0
	for _, r := range rows {
		if n, _ := strconv.Atoi(string(r[2])); n != perDay[string(r[1])] {
			t.Errorf("day %s: %d readings, want %d", r[1], n, perDay[string(r[1])])
		}
		n, _ := strconv.Atoi(string(r[3]))
		dayAnomalies += n
	}
	wrows := regexp.MustCompile(`<tr><td>([A-Z][a-z]+day)</td><td>(\d+)</td></tr>`).FindAllSubmatch(html, -1)
	for i, r := range wrows {
		if n, _ := strconv.Atoi(string(r[2])); n != weekday[i] || string(r[1]) != weekdayNames[i] {
			t.Errorf("weekday row %s %s, want %s %d", r[1], r[2], weekdayNames[i], weekday[i])
		}
	}
	// Anomalies: the page's count is the days' sum, and contamination 0.08 flags at most 8 %
	// (ties at the offset, heart rates are integers here, keep it a little under).
	anomalies, _ := strconv.Atoi(strings.Fields(cell("anomalies"))[0])
	if anomalies != dayAnomalies || anomalies != s.Anomalies {
		t.Errorf("anomalies %d, days sum %d, summary %d", anomalies, dayAnomalies, s.Anomalies)
	}
	if frac := float64(anomalies) / float64(len(recs)); frac > 0.08 || frac < 0.06 {
		t.Errorf("flagged fraction %.4f, want about 0.08", frac)
	}
	for _, name := range []string{FileDistribution, FileWeekday, FileDaily, FileAnomalies} {
		pf, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(pf)
		pf.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 300 {
			t.Errorf("%s is %v", name, b)
		}
		if !strings.Contains(string(html), `src="`+name+`"`) {
			t.Errorf("the page does not show %s", name)
		}
	}
}

// TestHeartHandComputed: day statistics of a small series computed by hand.
func TestHeartHandComputed(t *testing.T) {
	t0 := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC) // a Monday
	var rs []Reading
	for i, v := range []float64{60, 70, 80, 90, 100} {
		rs = append(rs, Reading{Time: t0.Add(time.Duration(i) * time.Hour), BPM: v})
	}
	rs = append(rs, Reading{Time: t0.Add(24 * time.Hour), BPM: 50}, Reading{Time: t0.Add(25 * time.Hour), BPM: 54})
	s, err := Heart(rs, t.TempDir(), HeartOptions{Subject: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Days) != 2 {
		t.Fatalf("days %+v", s.Days)
	}
	// Day 1: mean 80; 10th percentile of 60..100 at position 0.4 → 64.
	if d := s.Days[0]; d.Date != "2026-11-02" || d.Readings != 5 || d.Mean != 80 || math.Abs(d.Resting-64) > 1e-12 || d.Min != 60 || d.Max != 100 {
		t.Errorf("day 1 %+v", d)
	}
	// Day 2: mean 52; position 0.1 between 50 and 54 → 50.4.
	if d := s.Days[1]; d.Readings != 2 || d.Mean != 52 || math.Abs(d.Resting-50.4) > 1e-12 {
		t.Errorf("day 2 %+v", d)
	}
	if s.Weekdays != [7]int{5, 2, 0, 0, 0, 0, 0} || s.Median != 70 || math.Abs(s.Mean-504.0/7) > 1e-12 {
		t.Errorf("summary %+v", s)
	}
	if _, err := Heart(rs[:1], t.TempDir(), HeartOptions{}); err == nil {
		t.Error("one reading accepted")
	}
}

func TestReadFitbitCSVErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"a,b\n1,2\n", "needs a time column"},
		{"id,time,hr\n1,yesterday,70\n", "line 2: time"},
		{"id,time,hr\n1,2016-04-12 11:21:00,fast\n", "line 2: heart rate"},
	} {
		_, err := ReadFitbitCSV(strings.NewReader(c.in), "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
	rs, err := ReadFitbitCSV(strings.NewReader("id,time,hr\n1,2016-04-12 11:21:00,70\n2,2016-04-12 11:21:05,80\n"), "2")
	if err != nil || len(rs) != 1 || rs[0].BPM != 80 {
		t.Errorf("subject filter: %v %v", rs, err)
	}
}

func FuzzReadFitbitCSV(f *testing.F) {
	f.Add("id,time,hr\n1,2016-04-12 11:21:00,97\n")
	f.Add("time,bpm\n2026-11-02T08:00:00Z,61.5\n")
	f.Add("\"id\",\"time\",\"hr\"\n\"1\",\"2016-04-12 11:21:00\",\"97\"\n")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := ReadFitbitCSV(strings.NewReader(in), "")
		if err != nil {
			return
		}
		for _, r := range rs {
			if !(r.BPM > 0 && r.BPM < 400) || r.Time.Location() != time.UTC {
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}
