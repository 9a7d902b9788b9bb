package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"
)

// Zones a model may write. landing holds data as received and quarantine what was rejected;
// pipelines read them but never write them.
var writableZones = map[string]bool{"trusted": true, "curated": true, "ops": true}

// knownZones are the lake's namespaces; a qualified name in another schema is not a lake table.
var knownZones = map[string]bool{"landing": true, "trusted": true, "curated": true, "quarantine": true, "ops": true}

// DefaultZone is the zone of an unqualified table name in SQL (SPEC §5).
const DefaultZone = "trusted"

// RunsTable is the table every run appends its record to; no model may write it.
const RunsTable = "ops.pipeline_runs"

// ExpectKind is the kind of a data-quality assertion.
type ExpectKind string

const (
	ExpectUnique  ExpectKind = "unique"   // no two rows share the columns' values (NULLs included)
	ExpectNotNull ExpectKind = "not_null" // no row has NULL in any of the columns
	ExpectRows    ExpectKind = "rows"     // the row count is within [Min, Max]
)

// Expectation is one `-- expect:` line of a model.
type Expectation struct {
	Kind    ExpectKind
	Columns []string // unique, not_null
	Min     int64    // rows
	Max     int64    // rows; -1 for no upper bound
	Text    string   // as written
	Line    int
}

// Model is one SQL file: a SELECT whose result becomes the table zone.table.
type Model struct {
	Name        string // zone.table
	Zone, Table string
	Path        string
	SQL         string   // the file's text
	Incremental []string // merge key columns; nil means replace the whole table
	Expects     []Expectation
	Schedule    string   // cron expression from `-- schedule:`, "" if none
	Description string   // from `-- description:`
	Reads       []string // zone.table names the SELECT reads, sorted (CTE names excluded)
	Deps        []string // the subset of Reads that other models of the project produce, sorted
}

// Project is a loaded folder of models.
type Project struct {
	Dir    string
	Models map[string]*Model // by name
	Order  []string          // dependency order: every model after the models it reads
}

var fileRE = regexp.MustCompile(`^([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\.sql$`)

var directiveRE = regexp.MustCompile(`^--\s*([A-Za-z_]+)\s*:\s*(.*?)\s*$`)

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// LoadErrors collects every problem found in a project, each prefixed with file:line.
type LoadErrors []error

func (e LoadErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

// ErrCycle is wrapped by the error for a dependency cycle.
var ErrCycle = errors.New("dependency cycle")

// LoadDir reads every *.sql file in dir (not its subfolders), validates the models and orders
// them. It reports all problems at once.
func LoadDir(dir string) (*Project, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading pipeline folder: %w", err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".sql") {
			files = append(files, e.Name())
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no <zone>.<table>.sql files in %s", dir)
	}
	srcs := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("reading model: %w", err)
		}
		srcs[f] = string(data)
	}
	p, err := Parse(srcs)
	if p != nil {
		p.Dir = dir
		for _, m := range p.Models {
			m.Path = filepath.Join(dir, m.Path)
		}
	}
	if err != nil {
		var le LoadErrors
		if errors.As(err, &le) {
			for i, e := range le {
				le[i] = fmt.Errorf("%s/%w", dir, e)
			}
		}
		return nil, err
	}
	return p, nil
}

// Parse builds a project from file names and their contents (the pure part of LoadDir).
func Parse(files map[string]string) (*Project, error) {
	var errs LoadErrors
	p := &Project{Models: map[string]*Model{}}
	names := make([]string, 0, len(files))
	for f := range files {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		m, merrs := parseModel(f, files[f])
		errs = append(errs, merrs...)
		if m != nil {
			p.Models[m.Name] = m
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for _, m := range p.Models {
		for _, r := range m.Reads {
			if _, ok := p.Models[r]; ok && r != m.Name {
				m.Deps = append(m.Deps, r)
			}
		}
	}
	order, err := topoOrder(p.Models)
	if err != nil {
		return nil, err
	}
	p.Order = order
	return p, nil
}

func parseModel(file, src string) (*Model, LoadErrors) {
	var errs LoadErrors
	fail := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", file, line, fmt.Sprintf(format, args...)))
	}
	mm := fileRE.FindStringSubmatch(file)
	if mm == nil {
		fail(1, "a model file is named <zone>.<table>.sql in lower case (letters, digits, _), e.g. curated.daily_health.sql")
		return nil, errs
	}
	m := &Model{Name: mm[1] + "." + mm[2], Zone: mm[1], Table: mm[2], Path: file, SQL: src}
	if !writableZones[m.Zone] {
		fail(1, "zone %q cannot be written by a model; use trusted, curated or ops", m.Zone)
	}
	if m.Name == RunsTable {
		fail(1, "%s is where pipeline runs are recorded; choose another name", RunsTable)
	}
	m.parseDirectives(src, fail)
	toks, err := scanSQL(src)
	if err == nil {
		err = checkSingleSelect(toks)
	}
	if err != nil {
		line := 1
		var se *sqlError
		if errors.As(err, &se) {
			line = se.line
		}
		fail(line, "%v", err)
		return m, errs
	}
	m.findReads(toks, fail)
	return m, errs
}

// parseDirectives reads the model's directives: the "-- key: value" comment lines before the
// first SQL line.
func (m *Model) parseDirectives(src string, fail func(line int, format string, args ...any)) {
	for i, line := range strings.Split(src, "\n") {
		ln := i + 1
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "--") {
			break
		}
		d := directiveRE.FindStringSubmatch(line)
		if d == nil {
			continue // a prose comment
		}
		key, val := strings.ToLower(d[1]), d[2]
		switch key {
		case "incremental":
			if m.Incremental != nil {
				fail(ln, "incremental given twice")
			}
			cols, err := columnList(val)
			if err != nil {
				fail(ln, "incremental: %v", err)
			}
			m.Incremental = cols
		case "expect":
			e, err := parseExpect(val)
			if err != nil {
				fail(ln, "%v", err)
				continue
			}
			e.Line = ln
			m.Expects = append(m.Expects, e)
		case "schedule":
			if _, err := ParseSchedule(val); err != nil {
				fail(ln, "schedule %q: %v", val, err)
			}
			m.Schedule = val
		case "description":
			m.Description = val
		default:
			fail(ln, "unknown directive %q; known: incremental, expect, schedule, description (write prose comments without a leading \"word:\")", d[1])
		}
	}
}

// findReads records the lake tables the model's query reads (sorted), leaving out common
// table expressions and other schemas; a model other than an incremental one may not read
// its own table.
func (m *Model) findReads(toks []token, fail func(line int, format string, args ...any)) {
	refs, ctes := tableRefs(toks)
	seen := map[string]bool{}
	for _, r := range refs {
		if r.Zone == "" {
			if ctes[r.Table] {
				continue
			}
			r.Zone = DefaultZone
		}
		if !knownZones[r.Zone] {
			continue // another schema (e.g. a DuckDB built-in); not a lake table
		}
		name := r.Zone + "." + r.Table
		if name == m.Name && m.Incremental == nil {
			fail(r.Line, "%s reads itself; only an incremental model may read its previous table", m.Name)
		}
		if !seen[name] {
			seen[name] = true
			m.Reads = append(m.Reads, name)
		}
	}
	sort.Strings(m.Reads)
}

// columnList parses "a, b" into column names.
func columnList(s string) ([]string, error) {
	var cols []string
	for _, c := range strings.Split(s, ",") {
		c = strings.TrimSpace(c)
		if !identRE.MatchString(c) {
			return nil, fmt.Errorf("%q is not a column name", c)
		}
		cols = append(cols, strings.ToLower(c))
	}
	return cols, nil
}

var (
	funcExpectRE    = regexp.MustCompile(`^(unique|not_null)\s*\(\s*(.*?)\s*\)$`)
	betweenExpectRE = regexp.MustCompile(`^rows\s+between\s+(\d+)\s+and\s+(\d+)$`)
	cmpExpectRE     = regexp.MustCompile(`^rows\s*(>=|<=|=|>|<)\s*(\d+)$`)
)

// parseExpect parses the text after "-- expect:".
func parseExpect(s string) (Expectation, error) {
	s = strings.TrimSpace(s)
	e := Expectation{Text: s}
	low := strings.ToLower(s)
	if m := funcExpectRE.FindStringSubmatch(low); m != nil {
		cols, err := columnList(m[2])
		if err != nil {
			return e, fmt.Errorf("expect %s: %v", s, err)
		}
		e.Kind, e.Columns = ExpectKind(m[1]), cols
		return e, nil
	}
	if m := betweenExpectRE.FindStringSubmatch(low); m != nil {
		lo, _ := strconv.ParseInt(m[1], 10, 64)
		hi, _ := strconv.ParseInt(m[2], 10, 64)
		if lo > hi {
			return e, fmt.Errorf("expect %s: lower bound above upper bound", s)
		}
		e.Kind, e.Min, e.Max = ExpectRows, lo, hi
		return e, nil
	}
	if m := cmpExpectRE.FindStringSubmatch(low); m != nil {
		v, _ := strconv.ParseInt(m[2], 10, 64)
		e.Kind, e.Min, e.Max = ExpectRows, 0, -1
		switch m[1] {
		case ">=":
			e.Min = v
		case ">":
			e.Min = v + 1
		case "<=":
			e.Max = v
		case "<":
			if v == 0 {
				return e, fmt.Errorf("expect %s: no row count is below 0", s)
			}
			e.Max = v - 1
		case "=":
			e.Min, e.Max = v, v
		}
		return e, nil
	}
	return e, fmt.Errorf("expect %q: want unique(col, ...), not_null(col, ...), rows between N and M, or rows >= N (also >, <=, <, =)", s)
}

// ParseSchedule parses a cron expression: five fields (minute hour day month weekday), or a
// descriptor such as @hourly, @daily or @every 10m; optionally prefixed by CRON_TZ=Zone.
func ParseSchedule(expr string) (cron.Schedule, error) {
	return cron.ParseStandard(expr)
}

// topoOrder sorts models so each comes after the models it depends on. Among models whose
// dependencies are met it takes names in alphabetical order, so the order is deterministic.
// A cycle is an error naming it: "a → b → a".
func topoOrder(models map[string]*Model) ([]string, error) {
	indeg := map[string]int{}
	users := map[string][]string{}
	for name, m := range models {
		indeg[name] += 0
		for _, d := range m.Deps {
			indeg[name]++
			users[d] = append(users[d], name)
		}
	}
	var ready []string
	for name, d := range indeg {
		if d == 0 {
			ready = append(ready, name)
		}
	}
	var order []string
	for len(ready) > 0 {
		sort.Strings(ready)
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, u := range users[n] {
			indeg[u]--
			if indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	if len(order) == len(models) {
		return order, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrCycle, findCycle(models, indeg))
}

// findCycle returns one cycle among the models left with unmet dependencies, starting at the
// alphabetically first of them, as "a → b → a".
func findCycle(models map[string]*Model, indeg map[string]int) string {
	var left []string
	for n, d := range indeg {
		if d > 0 {
			left = append(left, n)
		}
	}
	sort.Strings(left)
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var path []string
	var found []string
	var visit func(n string) bool
	visit = func(n string) bool {
		color[n] = grey
		path = append(path, n)
		for _, d := range models[n].Deps { // sorted, so the cycle found is deterministic
			switch color[d] {
			case grey:
				for i, p := range path {
					if p == d {
						found = append(append([]string{}, path[i:]...), d)
						return true
					}
				}
			case white:
				if visit(d) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		color[n] = black
		return false
	}
	for _, n := range left {
		if color[n] == white && visit(n) {
			break
		}
	}
	// Deps point upstream; print the cycle in data-flow order (a feeds b feeds a).
	for i, j := 0, len(found)-1; i < j; i, j = i+1, j-1 {
		found[i], found[j] = found[j], found[i]
	}
	return strings.Join(found, " → ")
}

// Select returns the named models plus, with upstream, every model they depend on
// (transitively), in dependency order. Unknown names are an error listing the known ones.
func (p *Project) Select(names []string, upstream bool) ([]string, error) {
	if len(names) == 0 {
		return p.Order, nil
	}
	want := map[string]bool{}
	var add func(n string)
	add = func(n string) {
		if want[n] {
			return
		}
		want[n] = true
		if upstream {
			for _, d := range p.Models[n].Deps {
				add(d)
			}
		}
	}
	for _, n := range names {
		if _, ok := p.Models[n]; !ok {
			if _, ok := p.Models[DefaultZone+"."+n]; ok && !strings.Contains(n, ".") {
				n = DefaultZone + "." + n
			} else {
				return nil, fmt.Errorf("no model %q in %s; models: %s", n, p.Dir, strings.Join(p.Order, ", "))
			}
		}
		add(n)
	}
	var out []string
	for _, n := range p.Order {
		if want[n] {
			out = append(out, n)
		}
	}
	return out, nil
}
