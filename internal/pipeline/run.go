package pipeline

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Session is a SQL session over the lake: every lake table is visible as zone.table at its
// current snapshot. Statements run one at a time.
type Session interface {
	// Exec runs a statement that returns no rows (CREATE TEMP TABLE, CREATE MACRO).
	Exec(ctx context.Context, sql string) error
	// Query runs a SELECT and returns its column names and rows (small results only).
	Query(ctx context.Context, sql string) (cols []string, rows [][]any, err error)
	// Exists reports whether the lake table zone.table exists.
	Exists(ctx context.Context, table string) (bool, error)
	// Replace atomically replaces the lake table's contents with the rows of query (creating
	// the table, or changing its schema, as needed), so that readers see either the old or
	// the new contents. Later statements of the session see the new contents.
	Replace(ctx context.Context, table, query string) error
	// Append adds the rows of query to the lake table, creating it if needed.
	Append(ctx context.Context, table, query string) error
	Close() error
}

// OpenSession opens a session over the lake.
type OpenSession func(ctx context.Context) (Session, error)

// Secrets is the part of the secret store the runner uses.
type Secrets interface {
	// Create stores value under name unless a value is already stored, and returns the
	// stored one.
	Create(ctx context.Context, name string, value []byte) (stored []byte, created bool, err error)
}

// PseudonymizeKeySecret names the secret holding the key of pseudonymize().
const PseudonymizeKeySecret = "pipeline.pseudonymize-key"

// Status of a model in a run.
type Status string

const (
	StatusOK      Status = "ok"
	StatusFailed  Status = "failed"
	StatusSkipped Status = "skipped" // a model it reads failed or was skipped
)

// ModelResult is what happened to one model in a run.
type ModelResult struct {
	Model    string
	Status   Status
	Rows     int64 // rows in the table after the run (ok only)
	New      int64 // rows the SELECT returned
	Duration time.Duration
	Err      error
}

// Report is the outcome of a run.
type Report struct {
	RunID   string
	Started time.Time
	Dir     string
	Models  []ModelResult
}

// Failed returns the results of models that failed or were skipped.
func (r *Report) Failed() []ModelResult {
	var out []ModelResult
	for _, m := range r.Models {
		if m.Status != StatusOK {
			out = append(out, m)
		}
	}
	return out
}

// Err summarises failures as one error, or nil when every model succeeded.
func (r *Report) Err() error {
	var errs []error
	for _, m := range r.Models {
		if m.Status == StatusFailed {
			errs = append(errs, fmt.Errorf("model %s: %w", m.Model, m.Err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	skipped := 0
	for _, m := range r.Models {
		if m.Status == StatusSkipped {
			skipped++
		}
	}
	return fmt.Errorf("%d model(s) failed, %d skipped; their tables were left as they were:\n%w", len(errs), skipped, errors.Join(errs...))
}

// Print writes one line per model: name, status, rows, time.
func (r *Report) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tSTATUS\tROWS\tTIME")
	for _, m := range r.Models {
		rows := "-"
		if m.Status == StatusOK {
			rows = fmt.Sprint(m.Rows)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Model, m.Status, rows, m.Duration.Round(time.Millisecond))
	}
	return tw.Flush()
}

// Options configures a Runner.
type Options struct {
	Open    OpenSession // required
	Secrets Secrets     // required for models that call pseudonymize()
	// ShowRows is how many offending rows an assertion failure shows (default 5).
	ShowRows int
	// Now returns the current time (default time.Now); tests fix it.
	Now func() time.Time
}

// Runner runs models against the lake. Runs are serialised: a Runner is safe for
// concurrent use, but a second Run waits for the first.
type Runner struct {
	log  *slog.Logger
	o    Options
	mu   sync.Mutex
	runs *prometheus.CounterVec
	dur  *prometheus.HistogramVec
	rows *prometheus.GaugeVec
}

// NewRunner returns a runner. reg may be nil.
func NewRunner(log *slog.Logger, reg prometheus.Registerer, o Options) (*Runner, error) {
	if o.Open == nil {
		return nil, errors.New("pipeline runner needs a way to open lake sessions")
	}
	if o.ShowRows <= 0 {
		o.ShowRows = 5
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Runner{
		log: log, o: o,
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_pipeline_model_runs_total", Help: "Model runs by outcome (ok, failed, skipped)."}, []string{"model", "status"}),
		dur:  prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pulselake_pipeline_model_duration_seconds", Help: "Wall time of a model run, including assertions and commit.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 8)}, []string{"model"}),
		rows: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pulselake_pipeline_model_rows", Help: "Rows in a model's table after its last successful run."}, []string{"model"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.runs, r.dur, r.rows} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering pipeline metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Temporary tables of a session. The prefix keeps them apart from anything a model names.
const (
	tmpResult = "__pulselake_result"
	tmpFinal  = "__pulselake_final"
)

// Run runs the named models of p (all when names is empty) in dependency order. A model
// whose SELECT, assertions or commit fail leaves its table as it was, and the models that
// read it are skipped. The report lists every selected model; Report.Err tells whether all
// succeeded. The returned error is for failures of the run itself (no session, no record).
func (r *Runner) Run(ctx context.Context, p *Project, names []string) (*Report, error) {
	order, err := p.Select(names, false)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &Report{RunID: newRunID(r.o.Now()), Started: r.o.Now().UTC(), Dir: p.Dir}
	s, err := r.o.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening lake session: %w", err)
	}
	defer s.Close()
	if r.usesPseudonymize(p, order) {
		if err := r.definePseudonymize(ctx, s); err != nil {
			return nil, err
		}
	}
	bad := map[string]bool{}
	for _, name := range order {
		m := p.Models[name]
		var res ModelResult
		var upstream []string
		for _, d := range m.Deps {
			if bad[d] {
				upstream = append(upstream, d)
			}
		}
		if len(upstream) > 0 {
			res = ModelResult{Model: name, Status: StatusSkipped, Err: fmt.Errorf("skipped: %s did not succeed", strings.Join(upstream, ", "))}
		} else {
			start := time.Now()
			res = r.runModel(ctx, s, m)
			res.Duration = time.Since(start)
		}
		if res.Status != StatusOK {
			bad[name] = true
		}
		rep.Models = append(rep.Models, res)
		r.runs.WithLabelValues(name, string(res.Status)).Inc()
		switch res.Status {
		case StatusOK:
			r.dur.WithLabelValues(name).Observe(res.Duration.Seconds())
			r.rows.WithLabelValues(name).Set(float64(res.Rows))
			r.log.Info("model done", "run", rep.RunID, "model", name, "rows", res.Rows, "new_rows", res.New, "duration", res.Duration.Round(time.Millisecond))
		case StatusFailed:
			r.log.Error("model failed; its table is unchanged", "run", rep.RunID, "model", name, "err", res.Err)
		default:
			r.log.Warn("model skipped", "run", rep.RunID, "model", name, "reason", res.Err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := r.record(ctx, s, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

func (r *Runner) usesPseudonymize(p *Project, order []string) bool {
	for _, n := range order {
		toks, _ := scanSQL(p.Models[n].SQL)
		for i, t := range toks {
			if t.is("pseudonymize") && i+1 < len(toks) && toks[i+1].punct("(") {
				return true
			}
		}
	}
	return false
}

// definePseudonymize defines the SQL macro pseudonymize(value): the hex HMAC-SHA256 of the
// value's text under a key kept in the secret store (created on first use), so the same
// value gives the same pseudonym in every run, and nobody without the key can compute one.
func (r *Runner) definePseudonymize(ctx context.Context, s Session) error {
	if r.o.Secrets == nil {
		return errors.New("pseudonymize() needs the secret store, which is not configured")
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return fmt.Errorf("generating pseudonymization key: %w", err)
	}
	key, created, err := r.o.Secrets.Create(ctx, PseudonymizeKeySecret, fresh)
	if err != nil {
		return fmt.Errorf("loading pseudonymization key: %w", err)
	}
	if created {
		r.log.Info("created the pseudonymization key in the secret store", "secret", PseudonymizeKeySecret)
	}
	if err := s.Exec(ctx, PseudonymizeMacro(key)); err != nil {
		return fmt.Errorf("defining pseudonymize(): %w", err)
	}
	return nil
}

// PseudonymizeMacro returns the DuckDB statement defining pseudonymize(value) as
// HMAC-SHA256 (RFC 2104) in SQL: sha256((K ⊕ opad) || sha256((K ⊕ ipad) || text)), with the
// key blocks precomputed here. The statement holds key material: never log it.
func PseudonymizeMacro(key []byte) string {
	const block = 64
	if len(key) > block {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	ipad, opad := make([]byte, block), make([]byte, block)
	copy(ipad, key)
	copy(opad, key)
	for i := range block {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	return fmt.Sprintf("CREATE OR REPLACE TEMP MACRO pseudonymize(v) AS "+
		"sha256(unhex('%s') || unhex(sha256(unhex('%s') || encode(CAST(v AS VARCHAR)))))",
		hex.EncodeToString(opad), hex.EncodeToString(ipad))
}

// Pseudonymize computes in Go what pseudonymize(value) computes in SQL for a text value.
func Pseudonymize(key []byte, value string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(value))
	return hex.EncodeToString(m.Sum(nil))
}

func (r *Runner) runModel(ctx context.Context, s Session, m *Model) ModelResult {
	res := ModelResult{Model: m.Name, Status: StatusFailed}
	body := strings.TrimSpace(m.SQL)
	body = strings.TrimSuffix(body, ";")
	if err := s.Exec(ctx, "CREATE OR REPLACE TEMP TABLE "+tmpResult+" AS "+body+"\n"); err != nil {
		res.Err = fmt.Errorf("running SELECT: %w", err)
		return res
	}
	defer func() {
		cctx := context.WithoutCancel(ctx)
		_ = s.Exec(cctx, "DROP TABLE IF EXISTS "+tmpResult)
		_ = s.Exec(cctx, "DROP TABLE IF EXISTS "+tmpFinal)
	}()
	n, err := count(ctx, s, tmpResult)
	if err != nil {
		res.Err = err
		return res
	}
	res.New = n
	final := tmpResult
	if m.Incremental != nil {
		exists, err := s.Exists(ctx, m.Name)
		if err != nil {
			res.Err = fmt.Errorf("looking up %s: %w", m.Name, err)
			return res
		}
		if exists {
			if err := s.Exec(ctx, mergeSQL(m)); err != nil {
				res.Err = fmt.Errorf("merging on %s: %w", strings.Join(m.Incremental, ", "), err)
				return res
			}
			final = tmpFinal
		}
	}
	total := n
	if final != tmpResult {
		if total, err = count(ctx, s, final); err != nil {
			res.Err = err
			return res
		}
	}
	if err := r.check(ctx, s, m, final, total); err != nil {
		res.Err = err
		return res
	}
	if err := s.Replace(ctx, m.Name, "SELECT * FROM "+final); err != nil {
		res.Err = fmt.Errorf("committing %s: %w", m.Name, err)
		return res
	}
	res.Status, res.Rows = StatusOK, total
	return res
}

// mergeSQL builds the merged table: the new rows, plus the old rows whose key no new row has.
// Keys compare with IS NOT DISTINCT FROM, so a NULL key part matches a NULL.
func mergeSQL(m *Model) string {
	var cond []string
	for _, k := range m.Incremental {
		cond = append(cond, fmt.Sprintf("n.%s IS NOT DISTINCT FROM o.%s", quoteIdent(k), quoteIdent(k)))
	}
	return fmt.Sprintf("CREATE OR REPLACE TEMP TABLE %s AS SELECT * FROM %s UNION ALL BY NAME "+
		"SELECT * FROM %s o WHERE NOT EXISTS (SELECT 1 FROM %s n WHERE %s)",
		tmpFinal, tmpResult, m.Name, tmpResult, strings.Join(cond, " AND "))
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func count(ctx context.Context, s Session, table string) (int64, error) {
	_, rows, err := s.Query(ctx, "SELECT count(*) FROM "+table)
	if err != nil {
		return 0, fmt.Errorf("counting rows: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return 0, errors.New("counting rows: no result")
	}
	return toInt(rows[0][0])
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	case uint64:
		return int64(x), nil
	case float64:
		return int64(x), nil
	}
	return 0, fmt.Errorf("unexpected count %v (%T)", v, v)
}

// AssertionError is a failed `-- expect:` line with some offending rows.
type AssertionError struct {
	Model     string
	Expect    Expectation
	Offending int64 // rows (not_null), duplicate keys (unique) or the row count (rows)
	Cols      []string
	Rows      [][]any
}

func (e *AssertionError) Error() string {
	var b strings.Builder
	switch e.Expect.Kind {
	case ExpectRows:
		hi := "∞"
		if e.Expect.Max >= 0 {
			hi = fmt.Sprint(e.Expect.Max)
		}
		fmt.Fprintf(&b, "line %d: expect %s failed: %d rows, want %d..%s", e.Expect.Line, e.Expect.Text, e.Offending, e.Expect.Min, hi)
		return b.String()
	case ExpectUnique:
		fmt.Fprintf(&b, "line %d: expect %s failed: %d duplicated values", e.Expect.Line, e.Expect.Text, e.Offending)
	default:
		fmt.Fprintf(&b, "line %d: expect %s failed: %d rows with NULL", e.Expect.Line, e.Expect.Text, e.Offending)
	}
	if len(e.Rows) > 0 {
		fmt.Fprintf(&b, "; first %d:\n", len(e.Rows))
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "    "+strings.Join(e.Cols, "\t"))
		for _, row := range e.Rows {
			cells := make([]string, len(row))
			for i, v := range row {
				cells[i] = formatCell(v)
			}
			fmt.Fprintln(tw, "    "+strings.Join(cells, "\t"))
		}
		tw.Flush()
	}
	return strings.TrimRight(b.String(), "\n")
}

func formatCell(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return hex.EncodeToString(x)
	}
	s := fmt.Sprint(v)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// check runs the model's assertions on the table about to be committed.
func (r *Runner) check(ctx context.Context, s Session, m *Model, table string, total int64) error {
	var failed []error
	for _, e := range m.Expects {
		ae := &AssertionError{Model: m.Name, Expect: e}
		var base, order string // the offending rows, and how to show the first of them
		switch e.Kind {
		case ExpectRows:
			if total >= e.Min && (e.Max < 0 || total <= e.Max) {
				continue
			}
			ae.Offending = total
		case ExpectUnique:
			cols := quoteAll(e.Columns)
			base = fmt.Sprintf("SELECT %s, count(*) AS copies FROM %s GROUP BY ALL HAVING count(*) > 1", cols, table)
			order = " ORDER BY copies DESC, " + cols
		case ExpectNotNull:
			var conds []string
			for _, c := range e.Columns {
				conds = append(conds, quoteIdent(c)+" IS NULL")
			}
			base = fmt.Sprintf("SELECT * FROM %s WHERE %s", table, strings.Join(conds, " OR "))
		}
		if base != "" {
			ok, err := r.offending(ctx, s, ae, base, order)
			if err != nil {
				return fmt.Errorf("line %d: checking %s: %w", e.Line, e.Text, err)
			}
			if ok {
				continue
			}
		}
		failed = append(failed, ae)
	}
	return errors.Join(failed...)
}

// offending counts the rows of base (the rows breaking an assertion) into ae and keeps the
// first ShowRows of them, in order; it reports whether there are none.
func (r *Runner) offending(ctx context.Context, s Session, ae *AssertionError, base, order string) (none bool, err error) {
	n, err := countQuery(ctx, s, base)
	if err != nil || n == 0 {
		return n == 0, err
	}
	ae.Offending = n
	ae.Cols, ae.Rows, err = s.Query(ctx, fmt.Sprintf("%s%s LIMIT %d", base, order, r.o.ShowRows))
	return false, err
}

func quoteAll(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quoteIdent(c)
	}
	return strings.Join(q, ", ")
}

func countQuery(ctx context.Context, s Session, q string) (int64, error) {
	_, rows, err := s.Query(ctx, "SELECT count(*) FROM ("+q+")")
	if err != nil {
		return 0, err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return 0, errors.New("no count")
	}
	return toInt(rows[0][0])
}

// record appends one row per model to ops.pipeline_runs.
func (r *Runner) record(ctx context.Context, s Session, rep *Report) error {
	ctx = context.WithoutCancel(ctx) // a cancelled run is recorded too
	var vals []string
	for _, m := range rep.Models {
		msg := ""
		if m.Err != nil {
			msg = m.Err.Error()
		}
		vals = append(vals, fmt.Sprintf("(%s, TIMESTAMP %s, %s, %s, %s, %d, %d, %d, %s)",
			sqlString(rep.RunID), sqlString(rep.Started.Format("2006-01-02 15:04:05.000000")), sqlString(rep.Dir), sqlString(m.Model),
			sqlString(string(m.Status)), m.Rows, m.New, m.Duration.Milliseconds(), sqlNullString(msg)))
	}
	if len(vals) == 0 {
		return nil
	}
	q := "SELECT run_id, started, dir, model, status, CAST(rows AS BIGINT) AS rows, CAST(new_rows AS BIGINT) AS new_rows, CAST(duration_ms AS BIGINT) AS duration_ms, CAST(error AS VARCHAR) AS error FROM (VALUES " +
		strings.Join(vals, ", ") + ") t(run_id, started, dir, model, status, rows, new_rows, duration_ms, error)"
	if err := s.Append(ctx, RunsTable, q); err != nil {
		return fmt.Errorf("recording the run in %s: %w", RunsTable, err)
	}
	return nil
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func sqlNullString(s string) string {
	if s == "" {
		return "NULL"
	}
	return sqlString(s)
}

func newRunID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
