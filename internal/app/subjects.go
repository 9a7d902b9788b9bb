package app

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/detectors"
	"github.com/pulselake/pulselake/internal/ecgstream"
	"github.com/pulselake/pulselake/internal/httpapi"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/token"
)

// The subject API behind the dashboard's patient view (docs/dashboard.md): GET /v1/subjects
// lists subjects with their latest status, GET /v1/subjects/{id}/series returns one subject's
// readings over a time range, downsampled in the query engine to at most a given number of
// buckets per series (min, mean and max per bucket), with the events of the same range.
// Every query of readings runs as the caller (query.CallerOf): the engine filters a
// subject-bound token's queries to its subject whatever the SQL, and the handlers refuse
// another subject's id before querying anything.

// Limits of the subject API.
const (
	defaultPoints    = 1000 // buckets per series when the request does not say
	maxPoints        = 2000
	maxSubjects      = 1000 // rows of GET /v1/subjects
	defaultSubjects  = 200
	maxRange         = 400 * 24 * time.Hour
	maxSegments      = 5000 // sleep segments in one answer
	maxEvents        = 500  // alerts and anomalies in one answer
	maxStripBeats    = 12   // ecg_beat readings in the ECG strip
	maxStripSeconds  = 10   // seconds of an ecg reading in the ECG strip
	subjectQueryTime = 20 * time.Second
	// parallelQueries bounds the queries one request runs at once (DuckDB parallelises each).
	parallelQueries = 3
	// restingWindow is the window whose mean heart rate counts toward the resting heart rate;
	// restingQuantile of a day's window means is its resting heart rate (a low, sustained
	// rate, as wearables report it, not the single lowest beat).
	restingWindow   = 5 * time.Minute
	restingQuantile = 0.1
)

// seriesKinds are the parts of the patient view a request may ask for; a built-in kind's
// name or, for the panels that are not one kind's readings, ecg and events.
var seriesKinds = []string{"heart_rate", "blood_pressure", "spo2", "steps", "sleep", "ecg", "events"}

// subjectsAPI serves the subject routes.
type subjectsAPI struct {
	engine *query.Engine
	kinds  *reading.Registry
	// alerts lists the alerts tok sees in a state; rules the loaded alert rules.
	alerts func(tok token.Token, state string) []alert.Alert
	rules  func() []rules.Rule
	now    func() time.Time
}

func newSubjectsAPI(n *node) *subjectsAPI {
	return &subjectsAPI{engine: n.lake.engine, kinds: n.kinds, alerts: n.alerting.alertsFor, rules: n.alerting.engine.Rules, now: time.Now}
}

// errSubjectRequest is a request the subject API cannot answer as asked (400 bad-request).
var errSubjectRequest = errors.New("bad request")

// Subject is one row of GET /v1/subjects.
type Subject struct {
	Subject      string    `json:"subject"`
	LastReading  time.Time `json:"last_reading"`
	Readings     int64     `json:"readings"`
	Kinds        []string  `json:"kinds"`
	FiringAlerts int       `json:"firing_alerts"`
}

// list serves GET /v1/subjects?q=text&limit=n: subjects whose id contains q (any case), the
// most recently heard from first. bound_subject names a subject-bound token's subject, for
// the dashboard to open its view.
func (a *subjectsAPI) list(w http.ResponseWriter, r *http.Request, tok token.Token) {
	limit, err := intParam(r, "limit", defaultSubjects, 1, maxSubjects)
	if err != nil {
		a.fail(w, err)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > 200 {
		a.fail(w, fmt.Errorf("%w: q is longer than 200 characters", errSubjectRequest))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), subjectQueryTime)
	defer cancel()
	tables, err := a.tables(ctx)
	if err != nil {
		a.fail(w, err)
		return
	}
	var parts []string
	for _, k := range a.kinds.Names() {
		if !tables[lake.ZoneTrusted+"."+k] {
			continue
		}
		where := ""
		if q != "" {
			where = " WHERE contains(lower(subject), lower(" + query.Literal(q) + "))"
		}
		parts = append(parts, "SELECT subject, max(time) AS last, count(*) AS n, "+query.Literal(k)+" AS kind FROM "+
			table(lake.ZoneTrusted, k)+where+" GROUP BY subject")
	}
	out := []Subject{}
	truncated := false
	if len(parts) > 0 {
		sql := "SELECT subject, max(last) AS last, sum(n)::BIGINT AS n, list(kind ORDER BY kind) AS kinds FROM (" +
			strings.Join(parts, " UNION ALL ") + ") GROUP BY subject ORDER BY last DESC, subject LIMIT " + strconv.Itoa(limit+1)
		res, err := a.engine.QueryAs(ctx, sql, query.Limits{MaxRows: limit + 1, Timeout: subjectQueryTime}, query.CallerOf(tok))
		if err != nil {
			a.fail(w, err)
			return
		}
		firing := map[string]int{}
		for _, al := range a.alerts(tok, "firing") {
			firing[al.Subject]++
		}
		for i, row := range res.Rows {
			if i == limit {
				truncated = true
				break
			}
			s := Subject{Subject: str(row[0]), LastReading: tm(row[1]), Readings: i64(row[2]), Kinds: strs(row[3])}
			s.FiringAlerts = firing[s.Subject]
			out = append(out, s)
		}
	}
	body := map[string]any{"subjects": out, "truncated": truncated}
	if tok.Bound() {
		body["bound_subject"] = tok.Subject
	}
	httpapi.WriteJSON(w, http.StatusOK, body)
}

// seriesRequest is a parsed GET /v1/subjects/{id}/series.
type seriesRequest struct {
	subject  string
	kinds    []string
	from, to time.Time
	bucket   time.Duration
	// offset is the viewer's UTC offset: days (steps per day, resting heart rate) are the
	// viewer's days.
	offset time.Duration
}

// series serves GET /v1/subjects/{id}/series?kinds=a,b&from=t&to=t&points=n&tz_offset=min.
// from and to are RFC 3339 times or Unix milliseconds (default: the last 24 hours); points
// bounds the buckets per series; tz_offset is the viewer's offset from UTC in minutes (east
// positive), for days.
func (a *subjectsAPI) series(w http.ResponseWriter, r *http.Request, tok token.Token) {
	req, err := a.parseSeries(r, tok)
	if err != nil {
		a.fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), subjectQueryTime)
	defer cancel()
	tables, err := a.tables(ctx)
	if err != nil {
		a.fail(w, err)
		return
	}
	c := query.CallerOf(tok)
	out := map[string]any{}
	var mu sync.Mutex
	set := func(k string, v any) { mu.Lock(); out[k] = v; mu.Unlock() }
	var jobs []func(context.Context) error
	for _, k := range req.kinds {
		switch k {
		case "ecg":
			jobs = append(jobs, func(ctx context.Context) error {
				v, err := a.ecgStrip(ctx, req, tables, c)
				set(k, v)
				return err
			})
		case "events":
			jobs = append(jobs, func(ctx context.Context) error {
				v, err := a.events(ctx, req, tables, c)
				set(k, v)
				return err
			})
		default:
			kind, _ := a.kinds.Kind(k)
			jobs = append(jobs, func(ctx context.Context) error {
				v, err := a.kindSeries(ctx, req, kind, tables, c)
				set(k, v)
				return err
			})
		}
	}
	if err := runJobs(ctx, parallelQueries, jobs); err != nil {
		a.fail(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"subject": req.subject, "from": req.from, "to": req.to, "bucket_seconds": req.bucket.Seconds(), "series": out,
	})
}

// runJobs runs jobs, at most n at once, and returns the first error.
func runJobs(ctx context.Context, n int, jobs []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, n)
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if errs[i] = job(ctx); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

func (a *subjectsAPI) parseSeries(r *http.Request, tok token.Token) (seriesRequest, error) {
	req := seriesRequest{subject: r.PathValue("id")}
	if req.subject == "" {
		return req, fmt.Errorf("%w: the path names no subject", errSubjectRequest)
	}
	if !tok.Sees(req.subject) {
		return req, errOtherSubject
	}
	qv := r.URL.Query()
	if ks := qv.Get("kinds"); ks != "" {
		for _, k := range strings.Split(ks, ",") {
			k = strings.TrimSpace(k)
			if !slices.Contains(seriesKinds, k) {
				if _, ok := a.kinds.Kind(k); !ok || k == "ecg_beat" {
					return req, fmt.Errorf("%w: unknown kind %q in kinds; use some of %s or another kind of reading with number values", errSubjectRequest, k, strings.Join(seriesKinds, ","))
				}
			}
			if !slices.Contains(req.kinds, k) {
				req.kinds = append(req.kinds, k)
			}
		}
	} else {
		req.kinds = seriesKinds
	}
	now := a.now()
	var err error
	if req.to, err = timeParam(qv.Get("to"), now); err != nil {
		return req, fmt.Errorf("%w: to: %v", errSubjectRequest, err)
	}
	if req.from, err = timeParam(qv.Get("from"), req.to.Add(-24*time.Hour)); err != nil {
		return req, fmt.Errorf("%w: from: %v", errSubjectRequest, err)
	}
	span := req.to.Sub(req.from)
	if span <= 0 || span > maxRange {
		return req, fmt.Errorf("%w: from must be before to, at most %d days apart", errSubjectRequest, int(maxRange.Hours()/24))
	}
	points, err := intParam(r, "points", defaultPoints, 10, maxPoints)
	if err != nil {
		return req, err
	}
	req.bucket = bucketFor(span, points)
	off, err := intParam(r, "tz_offset", 0, -14*60, 14*60)
	if err != nil {
		return req, err
	}
	req.offset = time.Duration(off) * time.Minute
	return req, nil
}

// bucketFor is the bucket width that splits span into at most points buckets: whole seconds,
// rounded up to a width people read (1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1, 2, 3,
// 6, 12 h, 1 d).
func bucketFor(span time.Duration, points int) time.Duration {
	min := time.Duration(math.Ceil(float64(span) / float64(points)))
	for _, b := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour} {
		if b >= min {
			return b
		}
	}
	return min.Truncate(time.Hour) + time.Hour
}

// errOtherSubject answers a subject-bound token that names another subject; it says nothing
// about whether that subject exists.
var errOtherSubject = errors.New("your token is bound to another subject; it shows only its own subject's data")

// fail writes err as an API error.
func (a *subjectsAPI) fail(w http.ResponseWriter, err error) {
	var broken *query.BrokenTableError
	switch {
	case errors.Is(err, errOtherSubject):
		httpapi.WriteError(w, http.StatusForbidden, "forbidden", err.Error())
	case errors.Is(err, errSubjectRequest):
		httpapi.WriteError(w, http.StatusBadRequest, "bad-request", err.Error())
	case errors.As(err, &broken), errors.Is(err, query.ErrUnavailable):
		w.Header().Set("Retry-After", "5")
		httpapi.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		httpapi.WriteError(w, http.StatusGatewayTimeout, "timeout", "the lake did not answer in time; ask for a shorter range")
	default:
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// tables returns the lake's tables by zone.name. Names only: the owner's query reads no rows.
func (a *subjectsAPI) tables(ctx context.Context) (map[string]bool, error) {
	res, err := a.engine.Query(ctx, "SELECT table_schema, table_name FROM information_schema.tables", query.Limits{MaxRows: 100000})
	if err != nil {
		return nil, fmt.Errorf("listing the lake's tables: %w", err)
	}
	out := map[string]bool{}
	for _, row := range res.Rows {
		out[str(row[0])+"."+str(row[1])] = true
	}
	return out, nil
}

func table(zone, name string) string { return query.Ident(zone) + "." + query.Ident(name) }

// rangeWhere selects the subject's rows of the request's range by column col.
func (req seriesRequest) rangeWhere(col string) string {
	return "subject = " + query.Literal(req.subject) + " AND " + query.Ident(col) + " >= " + query.TimestampLiteral(req.from) +
		" AND " + query.Ident(col) + " < " + query.TimestampLiteral(req.to)
}

// Buckets and days are integer arithmetic on Unix milliseconds: casts and time_bucket of a
// TIMESTAMPTZ go through the time-zone library for every row, several times slower.

// bucketMs is the start (Unix ms) of the width-wide bucket of the time column col.
func bucketMs(col string, width time.Duration) string {
	w := strconv.FormatInt(width.Milliseconds(), 10)
	return "(epoch_ms(" + query.Ident(col) + ") // " + w + ") * " + w
}

// dayMs is the viewer's day of ms (an expression in Unix ms), as its midnight in UTC (Unix ms).
func (req seriesRequest) dayMs(ms string) string {
	return "((" + ms + " + " + strconv.FormatInt(req.offset.Milliseconds(), 10) + ") // 86400000) * 86400000"
}

func (a *subjectsAPI) run(ctx context.Context, sql string, rows int, c query.Caller) (*query.Result, error) {
	return a.engine.QueryAs(ctx, sql, query.Limits{MaxRows: rows, Timeout: subjectQueryTime}, c)
}

// Buckets are a kind's readings downsampled: per bucket its start (Unix ms), the readings in
// it and, per number field, the min, mean and max.
type Buckets struct {
	T      []int64                          `json:"t"`
	N      []int64                          `json:"n"`
	Fields map[string]map[string][]*float64 `json:"fields"` // field → min|avg|max → values
	// Days are per-day figures: steps per day (count) and resting heart rate (bpm).
	Days map[string]any `json:"days,omitempty"`
	// Thresholds are the loaded alert rules' thresholds on the kind's fields.
	Thresholds []Threshold `json:"thresholds,omitempty"`
	// Segments are the sleep stages, in time order.
	Segments  *Segments `json:"segments,omitempty"`
	Truncated bool      `json:"truncated,omitempty"`
}

// Segments are sleep stages: start (Unix ms), stage and duration.
type Segments struct {
	T        []int64   `json:"t"`
	Stage    []string  `json:"stage"`
	Duration []float64 `json:"duration_s"`
}

func (a *subjectsAPI) kindSeries(ctx context.Context, req seriesRequest, k *reading.Kind, tables map[string]bool, c query.Caller) (*Buckets, error) {
	b := &Buckets{T: []int64{}, N: []int64{}, Fields: map[string]map[string][]*float64{}}
	var nums []string
	for _, f := range k.Fields {
		if f.Type == reading.Number {
			nums = append(nums, f.Name)
			b.Fields[f.Name] = map[string][]*float64{"min": {}, "avg": {}, "max": {}}
		}
	}
	b.Thresholds = thresholds(a.rules(), k)
	if !tables[lake.ZoneTrusted+"."+k.Name] {
		return b, nil
	}
	from := table(lake.ZoneTrusted, k.Name)
	if len(nums) > 0 {
		sel := []string{bucketMs("time", req.bucket) + " AS t", "count(*) AS n"}
		for _, f := range nums {
			id := query.Ident(f)
			sel = append(sel, "min("+id+")", "avg("+id+")", "max("+id+")")
		}
		res, err := a.run(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+from+" WHERE "+req.rangeWhere("time")+" GROUP BY 1 ORDER BY 1", maxPoints+2, c)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", k.Name, err)
		}
		for _, row := range res.Rows {
			b.T = append(b.T, i64(row[0]))
			b.N = append(b.N, i64(row[1]))
			for i, f := range nums {
				for j, agg := range []string{"min", "avg", "max"} {
					b.Fields[f][agg] = append(b.Fields[f][agg], f64(row[2+3*i+j]))
				}
			}
		}
		b.Truncated = res.Truncated
	}
	switch k.Name {
	case "steps":
		res, err := a.run(ctx, "SELECT "+req.dayMs("epoch_ms(time)")+" AS day, sum("+query.Ident("count")+") FROM "+from+" WHERE "+req.rangeWhere("time")+" GROUP BY 1 ORDER BY 1", 500, c)
		if err != nil {
			return nil, fmt.Errorf("reading steps per day: %w", err)
		}
		b.Days = dayColumns(res, "count")
	case "heart_rate":
		res, err := a.run(ctx, "SELECT day, quantile_cont(bpm, "+strconv.FormatFloat(restingQuantile, 'f', -1, 64)+") FROM ("+
			"SELECT "+req.dayMs("w")+" AS day, avg(bpm) AS bpm FROM (SELECT "+bucketMs("time", restingWindow)+" AS w, bpm FROM "+
			from+" WHERE "+req.rangeWhere("time")+") GROUP BY w) GROUP BY day ORDER BY day", 500, c)
		if err != nil {
			return nil, fmt.Errorf("reading the resting heart rate: %w", err)
		}
		b.Days = dayColumns(res, "resting_bpm")
	case "sleep":
		res, err := a.run(ctx, "SELECT epoch_ms(time), stage, duration_s FROM "+from+" WHERE "+req.rangeWhere("time")+" ORDER BY time", maxSegments, c)
		if err != nil {
			return nil, fmt.Errorf("reading sleep stages: %w", err)
		}
		s := &Segments{T: []int64{}, Stage: []string{}, Duration: []float64{}}
		for _, row := range res.Rows {
			s.T = append(s.T, i64(row[0]))
			s.Stage = append(s.Stage, str(row[1]))
			d := f64(row[2])
			s.Duration = append(s.Duration, deref(d))
		}
		b.Segments, b.Truncated = s, b.Truncated || res.Truncated
	}
	return b, nil
}

// dayColumns turns rows (day as Unix ms, value) into {"day": [...], name: [...]}.
func dayColumns(res *query.Result, name string) map[string]any {
	days, vals := []int64{}, []*float64{}
	for _, row := range res.Rows {
		days = append(days, i64(row[0]))
		vals = append(vals, f64(row[1]))
	}
	return map[string]any{"day": days, name: vals}
}

// Strip is an ECG strip: consecutive beats or seconds of one recording with the classes the
// classifier gave (ops.predictions) and the reference labels the readings carried.
type Strip struct {
	Device string `json:"device,omitempty"`
	// Fs is the sampling rate of samples; 0 for beats (each beat is 187 samples).
	Fs    float64 `json:"fs,omitempty"`
	Beats []Beat  `json:"beats"`
	// Samples is the recording of an ecg reading (Fs > 0).
	Samples []float64 `json:"samples,omitempty"`
	Start   int64     `json:"start,omitempty"` // Unix ms of Samples[0]
	// Counts are the beats of the range by class.
	Counts map[string]int64 `json:"counts"`
}

// Beat is one beat of a strip: its time (Unix ms), the class and score the classifier gave,
// the reference label if the reading had one and, for ecg_beat readings, its samples.
type Beat struct {
	T       int64     `json:"t"`
	Class   string    `json:"class,omitempty"`
	Score   *float64  `json:"score,omitempty"`
	Label   string    `json:"label,omitempty"`
	Samples []float64 `json:"samples,omitempty"`
}

func (a *subjectsAPI) ecgStrip(ctx context.Context, req seriesRequest, tables map[string]bool, c query.Caller) (*Strip, error) {
	s := &Strip{Beats: []Beat{}, Counts: map[string]int64{}}
	preds := tables[lake.ZoneOps+"."+ecgstream.PredictionsTable]
	predTable := table(lake.ZoneOps, ecgstream.PredictionsTable)
	if preds {
		res, err := a.run(ctx, "SELECT class, count(*) FROM "+predTable+" WHERE "+req.rangeWhere("beat_time")+" GROUP BY class", 20, c)
		if err != nil {
			return nil, fmt.Errorf("counting beats: %w", err)
		}
		for _, row := range res.Rows {
			s.Counts[str(row[0])] = i64(row[1])
		}
	}
	// The last beats of the range, from ecg_beat readings, with their predictions.
	if tables[lake.ZoneTrusted+".ecg_beat"] {
		join, cols := "", "NULL, NULL"
		if preds {
			join = " LEFT JOIN (SELECT source_id, any_value(class) AS class, any_value(score) AS score FROM " + predTable +
				" WHERE source_kind = 'ecg_beat' AND " + req.rangeWhere("beat_time") + " GROUP BY source_id) p ON p.source_id = b.id"
			cols = "p.class, p.score"
		}
		res, err := a.run(ctx, "SELECT * FROM (SELECT epoch_ms(b.time) AS t, b.device, b.label, b.samples, "+cols+" FROM "+
			table(lake.ZoneTrusted, "ecg_beat")+" b"+join+" WHERE b."+req.rangeWhere("time")+" ORDER BY b.time DESC LIMIT "+
			strconv.Itoa(maxStripBeats)+") ORDER BY t", maxStripBeats, c)
		if err != nil {
			return nil, fmt.Errorf("reading ECG beats: %w", err)
		}
		for _, row := range res.Rows {
			s.Device = str(row[1])
			s.Beats = append(s.Beats, Beat{T: i64(row[0]), Label: str(row[2]), Samples: floats(row[3]), Class: str(row[4]), Score: f64(row[5])})
		}
		if len(s.Beats) > 0 {
			return s, nil
		}
	}
	// Else the first seconds of the last ecg recording of the range, with its beats.
	if !tables[lake.ZoneTrusted+".ecg"] {
		return s, nil
	}
	res, err := a.run(ctx, "SELECT epoch_ms(time), device, fs, samples[1:CAST(fs AS INTEGER) * "+strconv.Itoa(maxStripSeconds)+"], time FROM "+
		table(lake.ZoneTrusted, "ecg")+" WHERE "+req.rangeWhere("time")+" ORDER BY time DESC LIMIT 1", 1, c)
	if err != nil {
		return nil, fmt.Errorf("reading the ECG recording: %w", err)
	}
	if len(res.Rows) == 0 {
		return s, nil
	}
	row := res.Rows[0]
	s.Start, s.Device, s.Samples = i64(row[0]), str(row[1]), floats(row[3])
	s.Fs = deref(f64(row[2]))
	if !preds || s.Fs <= 0 {
		return s, nil
	}
	start := tm(row[4])
	end := start.Add(time.Duration(float64(len(s.Samples)) / s.Fs * float64(time.Second)))
	res, err = a.run(ctx, "SELECT epoch_ms(beat_time), class, score, label FROM "+predTable+" WHERE subject = "+query.Literal(req.subject)+
		" AND device = "+query.Literal(s.Device)+" AND source_kind = 'ecg' AND beat_time >= "+query.TimestampLiteral(start)+
		" AND beat_time < "+query.TimestampLiteral(end)+" ORDER BY beat_time", 200, c)
	if err != nil {
		return nil, fmt.Errorf("reading the recording's beats: %w", err)
	}
	for _, row := range res.Rows {
		s.Beats = append(s.Beats, Beat{T: i64(row[0]), Class: str(row[1]), Score: f64(row[2]), Label: str(row[3])})
	}
	return s, nil
}

// Event is an alert state change or an anomaly on the patient view's time axis.
type Event struct {
	T        int64    `json:"t"`
	Type     string   `json:"type"` // alert or anomaly
	Name     string   `json:"name"` // rule or detector
	Kind     string   `json:"kind,omitempty"`
	State    string   `json:"state,omitempty"`
	Severity string   `json:"severity,omitempty"`
	Value    *float64 `json:"value,omitempty"`
	Score    *float64 `json:"score,omitempty"`
}

func (a *subjectsAPI) events(ctx context.Context, req seriesRequest, tables map[string]bool, c query.Caller) (map[string]any, error) {
	evs := []Event{}
	truncated := false
	if tables[lake.ZoneOps+".alerts"] {
		res, err := a.run(ctx, "SELECT epoch_ms(time), rule, kind, state, severity FROM "+table(lake.ZoneOps, "alerts")+" WHERE "+
			req.rangeWhere("time")+" AND state IN ('firing', 'resolved') ORDER BY time DESC", maxEvents, c)
		if err != nil {
			return nil, fmt.Errorf("reading alerts: %w", err)
		}
		for _, row := range res.Rows {
			evs = append(evs, Event{T: i64(row[0]), Type: "alert", Name: str(row[1]), Kind: str(row[2]), State: str(row[3]), Severity: str(row[4])})
		}
		truncated = res.Truncated
	}
	if tables[lake.ZoneOps+"."+detectors.AnomaliesTable] {
		res, err := a.run(ctx, "SELECT epoch_ms(time), detector, kind, value, score FROM "+table(lake.ZoneOps, detectors.AnomaliesTable)+" WHERE "+
			req.rangeWhere("time")+" ORDER BY time DESC", maxEvents, c)
		if err != nil {
			return nil, fmt.Errorf("reading anomalies: %w", err)
		}
		for _, row := range res.Rows {
			evs = append(evs, Event{T: i64(row[0]), Type: "anomaly", Name: str(row[1]), Kind: str(row[2]), Value: f64(row[3]), Score: f64(row[4])})
		}
		truncated = truncated || res.Truncated
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].T < evs[j].T })
	return map[string]any{"events": evs, "truncated": truncated}, nil
}

// Threshold is a comparison of a rule's condition between one of a kind's fields (or an
// aggregate of it, e.g. avg(bpm, 5m)) and a number: a line the patient view draws.
type Threshold struct {
	Rule     string  `json:"rule"`
	Severity string  `json:"severity,omitempty"`
	Field    string  `json:"field"`
	Expr     string  `json:"expr"` // the compared side as written: systolic, avg(bpm, 5m)
	Op       string  `json:"op"`
	Value    float64 `json:"value"`
}

// thresholds finds the comparisons with a number in the conditions (when) of the rules on k.
func thresholds(rs []rules.Rule, k *reading.Kind) []Threshold {
	var out []Threshold
	for _, r := range rs {
		if r.Kind != k.Name || r.When == "" {
			continue
		}
		src, err := rules.RewriteDurations(r.When)
		if err != nil {
			continue
		}
		tree, err := parser.Parse(src)
		if err != nil {
			continue // the rule engine reports its own errors
		}
		v := &thresholdVisitor{kind: k}
		ast.Walk(&tree.Node, v)
		for _, t := range v.found {
			t.Rule, t.Severity = r.Name, r.Severity
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

type thresholdVisitor struct {
	kind  *reading.Kind
	found []Threshold
}

// flipped is the operator with its sides swapped (100 < x is x > 100).
var flipped = map[string]string{">": "<", ">=": "<=", "<": ">", "<=": ">="}

func (v *thresholdVisitor) Visit(n *ast.Node) {
	b, ok := (*n).(*ast.BinaryNode)
	if !ok || flipped[b.Operator] == "" {
		return
	}
	if field, expr, ok := v.fieldOf(b.Left); ok {
		if num, ok := number(b.Right); ok {
			v.found = append(v.found, Threshold{Field: field, Expr: expr, Op: b.Operator, Value: num})
		}
		return
	}
	if field, expr, ok := v.fieldOf(b.Right); ok {
		if num, ok := number(b.Left); ok {
			v.found = append(v.found, Threshold{Field: field, Expr: expr, Op: flipped[b.Operator], Value: num})
		}
	}
}

// fieldOf reports the field of the kind that n is, or that a call of n aggregates (its first
// argument), and n as written.
func (v *thresholdVisitor) fieldOf(n ast.Node) (field, expr string, ok bool) {
	id, isID := n.(*ast.IdentifierNode)
	if c, isCall := n.(*ast.CallNode); isCall && len(c.Arguments) > 0 {
		id, isID = c.Arguments[0].(*ast.IdentifierNode)
	}
	if !isID {
		return "", "", false
	}
	for _, f := range v.kind.Fields {
		if f.Name == id.Value && f.Type == reading.Number {
			return f.Name, durationCall.ReplaceAllString(n.String(), "$1"), true
		}
	}
	return "", "", false
}

// durationCall is a duration literal as RewriteDurations wrote it: duration("5m").
var durationCall = regexp.MustCompile(`duration\("([0-9.a-z]+)"\)`)

func number(n ast.Node) (float64, bool) {
	switch x := n.(type) {
	case *ast.IntegerNode:
		return float64(x.Value), true
	case *ast.FloatNode:
		return x.Value, true
	case *ast.UnaryNode:
		if v, ok := number(x.Node); ok && x.Operator == "-" {
			return -v, true
		}
	}
	return 0, false
}

// Parameters.

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%w: %s must be a whole number from %d to %d", errSubjectRequest, name, lo, hi)
	}
	return n, nil
}

// timeParam parses an RFC 3339 time or Unix milliseconds; "" is def.
func timeParam(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 || ms > 1e14 {
			return time.Time{}, fmt.Errorf("%d is not a time in Unix milliseconds", ms)
		}
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time (2026-12-01T08:00:00Z) or Unix milliseconds, not %q", s)
	}
	return t, nil
}

// Result values.

func str(v any) string {
	s, _ := v.(string)
	return s
}

func i64(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int32:
		return int64(x)
	case float64:
		return int64(x)
	}
	return 0
}

func f64(v any) *float64 {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
		return &x
	case float32:
		f := float64(x)
		return &f
	case int64:
		f := float64(x)
		return &f
	}
	return nil
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

func tm(v any) time.Time {
	t, _ := v.(time.Time)
	return t
}

func strs(v any) []string {
	xs, _ := v.([]any)
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		out = append(out, str(x))
	}
	return out
}

func floats(v any) []float64 {
	xs, _ := v.([]any)
	out := make([]float64, 0, len(xs))
	for _, x := range xs {
		out = append(out, deref(f64(x)))
	}
	return out
}
