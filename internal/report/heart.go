// Package report draws the heart-rate report of one subject: the charts people make of their
// wearable data (distribution, weekday spread, daily mean and resting heart rate, readings
// coloured by Isolation Forest verdict) as PNG files, and an HTML page that shows them with a
// summary table.
package report

import (
	"encoding/csv"
	"errors"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/pulselake/pulselake/internal/anomaly"
)

// Reading is one heart-rate reading.
type Reading struct {
	Time time.Time
	BPM  float64
}

// HeartOptions configure Heart.
type HeartOptions struct {
	Subject string
	// Contamination and Seed of the Isolation Forest (scikit-learn's contamination and
	// random_state; defaults 0.08 and 1). The forest is fitted on the readings' heart rates.
	Contamination float64
	Seed          uint64
	// RestingQuantile defines a day's resting heart rate: that quantile of the day's readings
	// (default 0.1, the 10th percentile, a robust stand-in for the lowest sustained rate).
	RestingQuantile float64
}

// Day is one calendar day (UTC) of the report.
type Day struct {
	Date      string // YYYY-MM-DD
	Readings  int
	Mean      float64
	Resting   float64
	Min, Max  float64
	Anomalies int
}

// Summary is what the report shows in numbers.
type Summary struct {
	Subject       string
	Readings      int
	First, Last   time.Time
	Mean, Median  float64
	Min, Max      float64
	Anomalies     int
	Contamination float64
	Seed          uint64
	Days          []Day
	Weekdays      [7]int // readings per weekday, Monday first
	Files         []string
}

// Chart file names.
const (
	FileDistribution = "heart-rate-distribution.png"
	FileWeekday      = "heart-rate-by-weekday.png"
	FileDaily        = "heart-rate-daily.png"
	FileAnomalies    = "heart-rate-anomalies.png"
	FileHTML         = "index.html"
)

var weekdayNames = [7]string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}

// mondayFirst maps time.Weekday (Sunday = 0) to Monday = 0.
func mondayFirst(d time.Weekday) int { return (int(d) + 6) % 7 }

// Heart writes the charts and index.html for readings (any order) into dir.
func Heart(readings []Reading, dir string, o HeartOptions) (*Summary, error) {
	if len(readings) < 2 {
		return nil, fmt.Errorf("the report needs at least 2 heart-rate readings, got %d", len(readings))
	}
	if o.Contamination == 0 {
		o.Contamination = 0.08
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.RestingQuantile == 0 {
		o.RestingQuantile = 0.1
	}
	if !(o.RestingQuantile > 0 && o.RestingQuantile < 1) {
		return nil, fmt.Errorf("resting quantile must be in (0, 1), got %g", o.RestingQuantile)
	}
	rs := slices.Clone(readings)
	slices.SortStableFunc(rs, func(a, b Reading) int { return a.Time.Compare(b.Time) })
	for i := range rs {
		rs[i].Time = rs[i].Time.UTC()
		if v := rs[i].BPM; math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("reading at %s has no finite heart rate", rs[i].Time.Format(time.RFC3339))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the report directory: %w", err)
	}

	X := make([]float64, len(rs))
	for i, r := range rs {
		X[i] = r.BPM
	}
	anomalous, err := isolationVerdicts(X, o)
	if err != nil {
		return nil, err
	}
	s := &Summary{Subject: o.Subject, Readings: len(rs), First: rs[0].Time, Last: rs[len(rs)-1].Time,
		Contamination: o.Contamination, Seed: o.Seed}
	byWeekday := summarize(s, rs, X, anomalous, o.RestingQuantile)

	title := "Heart rate"
	if o.Subject != "" {
		title += " of " + o.Subject
	}
	span := rs[0].Time.Format("2 Jan 2006") + " – " + rs[len(rs)-1].Time.Format("2 Jan 2006")
	charts := []struct {
		file string
		draw func() (*plot.Plot, error)
		w, h vg.Length
	}{
		{FileDistribution, func() (*plot.Plot, error) { return distribution(X, s, title+": distribution, "+span) }, 8 * vg.Inch, 5 * vg.Inch},
		{FileWeekday, func() (*plot.Plot, error) { return weekdays(byWeekday, title+" by weekday, "+span) }, 8 * vg.Inch, 5 * vg.Inch},
		{FileDaily, func() (*plot.Plot, error) {
			return daily(s.Days, o.RestingQuantile, title+": daily mean and resting, "+span)
		}, 11 * vg.Inch, 5 * vg.Inch},
		{FileAnomalies, func() (*plot.Plot, error) {
			return verdicts(rs, anomalous, s, title+" by Isolation Forest verdict, "+span)
		}, 11 * vg.Inch, 5 * vg.Inch},
	}
	for _, c := range charts {
		p, err := c.draw()
		if err != nil {
			return nil, fmt.Errorf("drawing %s: %w", c.file, err)
		}
		if err := p.Save(c.w, c.h, filepath.Join(dir, c.file)); err != nil {
			return nil, fmt.Errorf("writing %s: %w", c.file, err)
		}
		s.Files = append(s.Files, c.file)
	}
	if err := writeHTML(filepath.Join(dir, FileHTML), s); err != nil {
		return nil, err
	}
	s.Files = append(s.Files, FileHTML)
	return s, nil
}

// isolationVerdicts flags the anomalous heart rates of X with scikit-learn's Isolation
// Forest (decision_function < 0) of o's contamination and seed.
func isolationVerdicts(X []float64, o HeartOptions) ([]bool, error) {
	f, err := anomaly.NewIsolationForest(anomaly.IForestOptions{Contamination: o.Contamination, Seed: o.Seed})
	if err != nil {
		return nil, err
	}
	scores, err := f.FitScoreSamples(X, 1, nil)
	if err != nil {
		return nil, err
	}
	anomalous := make([]bool, len(X))
	for i, sc := range scores {
		anomalous[i] = sc-f.Offset() < 0
	}
	return anomalous, nil
}

// summarize fills in the numbers of s from the readings rs (in time order, UTC), their heart
// rates X and verdicts: overall, per day and per weekday; it returns the heart rates of each
// weekday (Monday first).
func summarize(s *Summary, rs []Reading, X []float64, anomalous []bool, restingQ float64) (byWeekday [7][]float64) {
	for _, a := range anomalous {
		if a {
			s.Anomalies++
		}
	}
	sorted := slices.Clone(X)
	slices.Sort(sorted)
	s.Min, s.Max, s.Median = sorted[0], sorted[len(sorted)-1], quantile(sorted, 0.5)
	s.Mean = mean(X)
	for i := 0; i < len(rs); {
		date := rs[i].Time.Format(time.DateOnly)
		j := i
		for j < len(rs) && rs[j].Time.Format(time.DateOnly) == date {
			j++
		}
		vals := slices.Clone(X[i:j])
		slices.Sort(vals)
		d := Day{Date: date, Readings: j - i, Mean: mean(X[i:j]), Resting: quantile(vals, restingQ), Min: vals[0], Max: vals[len(vals)-1]}
		for k := i; k < j; k++ {
			if anomalous[k] {
				d.Anomalies++
			}
		}
		s.Days = append(s.Days, d)
		i = j
	}
	for _, r := range rs {
		w := mondayFirst(r.Time.Weekday())
		byWeekday[w] = append(byWeekday[w], r.BPM)
		s.Weekdays[w]++
	}
	return byWeekday
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// quantile of sorted values with linear interpolation (numpy's default).
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}

var (
	colBlue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	colOrange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	colRed    = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	colGrey   = color.RGBA{R: 90, G: 90, B: 90, A: 255}
	colNormal = color.NRGBA{R: 31, G: 119, B: 180, A: 90}
)

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = 13
	p.Title.Padding = 6
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = 10
	p.Add(plotter.NewGrid())
	return p
}

func distribution(X []float64, s *Summary, title string) (*plot.Plot, error) {
	p := newPlot(title, "Heart rate (bpm)", "Readings")
	// 2 bpm bins over the whole range.
	lo, hi := math.Floor(s.Min), math.Ceil(s.Max)
	bins := max(1, int(math.Ceil((hi-lo)/2)))
	h, err := plotter.NewHist(plotter.Values(X), bins)
	if err != nil {
		return nil, err
	}
	h.FillColor = colBlue
	h.LineStyle.Color = color.White
	h.LineStyle.Width = vg.Points(0.3)
	p.Add(h)
	peak := 0.0
	for _, b := range h.Bins {
		peak = max(peak, b.Weight)
	}
	for _, m := range []struct {
		x     float64
		name  string
		col   color.Color
		dash  []vg.Length
		label string
	}{
		{s.Mean, "mean", colRed, nil, fmt.Sprintf("mean %.1f bpm", s.Mean)},
		{s.Median, "median", colOrange, []vg.Length{vg.Points(4), vg.Points(3)}, fmt.Sprintf("median %.1f bpm", s.Median)},
	} {
		l, err := plotter.NewLine(plotter.XYs{{X: m.x, Y: 0}, {X: m.x, Y: peak * 1.05}})
		if err != nil {
			return nil, err
		}
		l.Color, l.Width, l.Dashes = m.col, vg.Points(1.5), m.dash
		p.Add(l)
		p.Legend.Add(m.label, l)
	}
	p.Legend.Add(fmt.Sprintf("%d readings, 2 bpm bins", s.Readings), h)
	p.Y.Min = 0
	return p, nil
}

func weekdays(by [7][]float64, title string) (*plot.Plot, error) {
	p := newPlot(title, "Weekday", "Heart rate (bpm)")
	w := vg.Points(28)
	names := make([]string, 7)
	for i, vals := range by {
		names[i] = fmt.Sprintf("%s\nn = %d", weekdayNames[i][:3], len(vals))
		if len(vals) == 0 {
			continue
		}
		b, err := plotter.NewBoxPlot(w, float64(i), plotter.Values(vals))
		if err != nil {
			return nil, err
		}
		b.FillColor = color.NRGBA{R: 31, G: 119, B: 180, A: 70}
		b.BoxStyle.Color = colBlue
		b.MedianStyle.Color = colRed
		b.MedianStyle.Width = vg.Points(1.5)
		b.WhiskerStyle.Color = colGrey
		b.CapWidth = w / 2
		b.GlyphStyle.Radius = vg.Points(1)
		b.GlyphStyle.Color = color.NRGBA{R: 90, G: 90, B: 90, A: 60}
		p.Add(b)
	}
	p.NominalX(names...)
	p.X.Label.Text = "Weekday (UTC); box: quartiles, red: median, whiskers: 1.5 IQR, dots: beyond"
	return p, nil
}

func daily(days []Day, restingQ float64, title string) (*plot.Plot, error) {
	p := newPlot(title, "Day (UTC)", "Heart rate (bpm)")
	means := make(plotter.Values, len(days))
	rest := make(plotter.Values, len(days))
	names := make([]string, len(days))
	for i, d := range days {
		means[i], rest[i] = d.Mean, d.Resting
		t, _ := time.Parse(time.DateOnly, d.Date)
		names[i] = t.Format("02 Jan")
		if len(days) > 16 && i%2 == 1 {
			names[i] = "" // every other label on long reports
		}
	}
	w := vg.Points(max(3, min(14, 300/float64(len(days)))))
	bm, err := plotter.NewBarChart(means, w)
	if err != nil {
		return nil, err
	}
	bm.Color, bm.LineStyle.Width, bm.Offset = colBlue, 0, -w/2
	br, err := plotter.NewBarChart(rest, w)
	if err != nil {
		return nil, err
	}
	br.Color, br.LineStyle.Width, br.Offset = colOrange, 0, w/2
	p.Add(bm, br)
	p.Legend.Add("daily mean", bm)
	p.Legend.Add(fmt.Sprintf("resting (%gth percentile of the day)", restingQ*100), br)
	p.NominalX(names...)
	p.Y.Min = 0
	top := 0.0
	for _, d := range days {
		top = max(top, d.Mean)
	}
	p.Y.Max = top * 1.25 // room for the legend
	return p, nil
}

func verdicts(rs []Reading, anomalous []bool, s *Summary, title string) (*plot.Plot, error) {
	p := newPlot(title, "Time (UTC)", "Heart rate (bpm)")
	var normal, odd plotter.XYs
	for i, r := range rs {
		xy := plotter.XY{X: float64(r.Time.Unix()), Y: r.BPM}
		if anomalous[i] {
			odd = append(odd, xy)
		} else {
			normal = append(normal, xy)
		}
	}
	for _, part := range []struct {
		xys   plotter.XYs
		col   color.Color
		r     vg.Length
		label string
	}{
		{normal, colNormal, vg.Points(0.8), fmt.Sprintf("normal (%d)", len(normal))},
		{odd, colRed, vg.Points(1.3), fmt.Sprintf("anomaly (%d, contamination %g)", len(odd), s.Contamination)},
	} {
		if len(part.xys) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(part.xys)
		if err != nil {
			return nil, err
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: part.col, Radius: part.r, Shape: draw.CircleGlyph{}}
		p.Add(sc)
		legend := *sc
		legend.GlyphStyle.Radius = vg.Points(3)
		legend.GlyphStyle.Color = opaque(part.col)
		p.Legend.Add(part.label, &legend)
	}
	p.X.Tick.Marker = plot.TimeTicks{Format: "02 Jan", Ticker: dayTicks{}}
	p.Y.Max = s.Max + (s.Max-s.Min)*0.2 // room for the legend
	return p, nil
}

func opaque(c color.Color) color.Color {
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	n.A = 255
	return n
}

// dayTicks puts major ticks on midnights (UTC), at most about 12 of them.
type dayTicks struct{}

func (dayTicks) Ticks(lo, hi float64) []plot.Tick {
	const day = 86400
	n := (hi - lo) / day
	every := max(1, int(math.Ceil(n/12)))
	var ts []plot.Tick
	for t := math.Ceil(lo/day) * day; t <= hi; t += day {
		d := int(t / day)
		tk := plot.Tick{Value: t}
		if d%every == 0 {
			tk.Label = "x" // TimeTicks replaces it with the date
		}
		ts = append(ts, tk)
	}
	return ts
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"f1":   func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"pct":  func(a, b int) string { return strconv.FormatFloat(100*float64(a)/float64(b), 'f', 2, 64) },
	"ts":   func(t time.Time) string { return t.Format("2006-01-02 15:04:05") },
	"wday": func(i int) string { return weekdayNames[i] },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Heart-rate report{{with .Subject}}: {{.}}{{end}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1rem 0} td,th{padding:.25rem .8rem;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f4f6f8}
img{max-width:100%;border:1px solid #e3e3e3;margin:.5rem 0 1.5rem}
</style></head><body>
<h1>Heart-rate report{{with .Subject}}: {{.}}{{end}}</h1>
<p class="sub">{{ts .First}} – {{ts .Last}} UTC · generated by pulselake report heart</p>
<h2>Summary</h2>
<table id="summary">
<tr><th>Readings</th><td id="readings">{{.Readings}}</td></tr>
<tr><th>Days</th><td id="days">{{len .Days}}</td></tr>
<tr><th>Mean (bpm)</th><td id="mean">{{f1 .Mean}}</td></tr>
<tr><th>Median (bpm)</th><td id="median">{{f1 .Median}}</td></tr>
<tr><th>Minimum (bpm)</th><td id="min">{{f1 .Min}}</td></tr>
<tr><th>Maximum (bpm)</th><td id="max">{{f1 .Max}}</td></tr>
<tr><th>Isolation Forest anomalies (contamination {{.Contamination}}, seed {{.Seed}})</th><td id="anomalies">{{.Anomalies}} ({{pct .Anomalies .Readings}} %)</td></tr>
</table>
<h2>Distribution</h2>
<img src="heart-rate-distribution.png" alt="Histogram of heart rate">
<h2>By weekday</h2>
<img src="heart-rate-by-weekday.png" alt="Box plot of heart rate per weekday">
<table id="weekdays"><tr><th>Weekday</th><th>Readings</th></tr>
{{range $i, $n := .Weekdays}}<tr><td>{{wday $i}}</td><td>{{$n}}</td></tr>
{{end}}</table>
<h2>Daily mean and resting heart rate</h2>
<img src="heart-rate-daily.png" alt="Bar chart of daily mean and resting heart rate">
<h2>Readings by Isolation Forest verdict</h2>
<img src="heart-rate-anomalies.png" alt="Heart-rate readings over time, anomalies in red">
<h2>Days</h2>
<table id="daily"><tr><th>Day (UTC)</th><th>Readings</th><th>Mean</th><th>Resting</th><th>Min</th><th>Max</th><th>Anomalies</th></tr>
{{range .Days}}<tr><td>{{.Date}}</td><td>{{.Readings}}</td><td>{{f1 .Mean}}</td><td>{{f1 .Resting}}</td><td>{{f1 .Min}}</td><td>{{f1 .Max}}</td><td>{{.Anomalies}}</td></tr>
{{end}}</table>
</body></html>
`))

func writeHTML(path string, s *Summary) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the report page: %w", err)
	}
	if err := page.Execute(f, s); err != nil {
		f.Close()
		return fmt.Errorf("writing the report page: %w", err)
	}
	return f.Close()
}

// MaxCSVRows bounds ReadFitbitCSV (a year at 5 s is 6.3 million rows).
const MaxCSVRows = 20_000_000

// ReadFitbitCSV reads a Fitbit heart-rate export: a header naming a time column ("time",
// "timestamp", "datetime" or "date") and a heart-rate column ("hr", "bpm", "value" or
// "heart_rate"), and optionally an id column. Times are RFC 3339 or "YYYY-MM-DD HH:MM:SS"
// (taken as UTC). With subject set and an id column present, only that id's rows are kept.
func ReadFitbitCSV(r io.Reader, subject string) ([]Reading, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the CSV is empty; want a header like id,time,hr")
		}
		return nil, fmt.Errorf("reading the CSV header: %w", err)
	}
	ti, hi, ii := -1, -1, -1
	for i, h := range header {
		switch strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))) {
		case "time", "timestamp", "datetime", "date":
			ti = i
		case "hr", "bpm", "value", "heart_rate", "heartrate":
			hi = i
		case "id", "subject", "user":
			ii = i
		}
	}
	if ti < 0 || hi < 0 {
		return nil, fmt.Errorf("the CSV header %q needs a time column (time, timestamp) and a heart-rate column (hr, bpm, value)", strings.Join(header, ","))
	}
	var out []Reading
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("CSV line %d: %w", line, err)
		}
		if ii >= 0 && subject != "" && rec[ii] != subject {
			continue
		}
		t, err := parseTime(rec[ti])
		if err != nil {
			return nil, fmt.Errorf("CSV line %d: time %q: want RFC 3339 or YYYY-MM-DD HH:MM:SS", line, rec[ti])
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rec[hi]), 64)
		if err != nil || !(v > 0 && v < 400) {
			return nil, fmt.Errorf("CSV line %d: heart rate %q: want a number of beats per minute", line, rec[hi])
		}
		if len(out) == MaxCSVRows {
			return nil, fmt.Errorf("the CSV has more than %d rows; give a shorter period", MaxCSVRows)
		}
		out = append(out, Reading{Time: t, BPM: v})
	}
	return out, nil
}

func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.DateTime, "2006-01-02T15:04:05", time.RFC3339Nano, "1/2/2006 3:04:05 PM"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("bad time")
}
