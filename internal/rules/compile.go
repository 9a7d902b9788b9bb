package rules

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

// RuleSet is a compiled, validated list of rules.
type RuleSet struct {
	rules  []*compiled
	byKind map[string][]*compiled
	absent []*compiled
	window map[string]time.Duration // longest window per kind
	fields map[string][]string      // numeric value names per kind
}

// uses reports whether rules of the set evaluate readings of kind, with their values
// (conditions and windows; no-data rules need only a reading's subject, device and time).
func (s *RuleSet) uses(kind string) bool {
	return len(s.byKind[kind]) > 0 || s.window[kind] > 0
}

type templateT = template.Template

type compiled struct {
	Rule
	when, resolve  *vm.Program
	summary, descr *template.Template
	window         time.Duration
}

// Rules returns the rules of the set.
func (s *RuleSet) Rules() []Rule {
	out := make([]Rule, len(s.rules))
	for i, c := range s.rules {
		out[i] = c.Rule
	}
	return out
}

var (
	nameRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:\-]*$`)
	labelRe    = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	reserved   = map[string]bool{"alertname": true, "subject": true, "device": true, "kind": true, "severity": true}
	severities = map[string]bool{"critical": true, "warning": true, "info": true}
)

// windowFuncs are the aggregates over a window of the same subject and device.
var windowFuncs = map[string]bool{"avg": true, "min": true, "max": true, "count": true, "delta": true, "rate": true, "sum": true}

// seriesVar is the hidden variable through which window functions reach the readings.
const seriesVar = "__series"

// Compile validates rules against the kinds of reg and compiles them. It reports every
// problem at its YAML path ("rules[2].when").
func Compile(rules []Rule, reg *reading.Registry) (*RuleSet, yamlconf.Problems) {
	set := &RuleSet{byKind: map[string][]*compiled{}, window: map[string]time.Duration{}, fields: map[string][]string{}}
	var errs yamlconf.Problems
	seen := map[string]int{}
	for i, r := range rules {
		add := func(field, format string, args ...any) {
			path := fmt.Sprintf("rules[%d]", i)
			if field != "" {
				path += "." + field
			}
			errs.Add(path, format, args...)
		}
		n0 := len(errs)
		checkName(r.Name, i, seen, add)
		checkSettings(r, add)
		kind := lookUpKind(r.Kind, reg, add)
		c := compileRule(r, kind, add)
		if len(errs) > n0 {
			continue
		}
		set.add(c, kind)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}

// problemAdder records a problem at a field of the rule being compiled.
type problemAdder func(field, format string, args ...any)

// checkName checks the name of rules[i] and that no earlier rule in seen has it.
func checkName(name string, i int, seen map[string]int, add problemAdder) {
	switch {
	case name == "":
		add("name", "required")
	case !nameRe.MatchString(name):
		add("name", "%q: use letters, digits, '-', '_', '.' and ':'", name)
	default:
		if j, dup := seen[name]; dup {
			add("name", "%q is already the name of rules[%d]", name, j)
		}
		seen[name] = i
	}
}

// checkSettings checks the durations, severity and labels of r.
func checkSettings(r Rule, add problemAdder) {
	if r.For < 0 {
		add("for", "must not be negative")
	}
	if r.KeepFiringFor < 0 {
		add("keep_firing_for", "must not be negative")
	}
	if r.AbsentFor < 0 {
		add("absent_for", "must not be negative")
	}
	if r.Severity != "" && !severities[r.Severity] {
		add("severity", "want critical, warning or info, got %q", r.Severity)
	}
	for k := range r.Labels {
		if !labelRe.MatchString(k) {
			add("labels."+k, "label names are letters, digits and underscores")
		} else if reserved[k] {
			add("labels."+k, "%s is set by pulselake; choose another name", k)
		}
	}
}

// lookUpKind returns the kind named name, or nil when name is empty or unknown.
func lookUpKind(name string, reg *reading.Registry, add problemAdder) *reading.Kind {
	if name == "" {
		return nil
	}
	k, ok := reg.Kind(name)
	if !ok {
		add("kind", "unknown kind %q (known: %s)", name, strings.Join(reg.Names(), ", "))
	}
	return k
}

// compileRule compiles the conditions and templates of r; kind is nil when r names no known kind.
func compileRule(r Rule, kind *reading.Kind, add problemAdder) *compiled {
	c := &compiled{Rule: r}
	if r.AbsentFor > 0 {
		if r.When != "" || r.ResolveWhen != "" {
			add("when", "an absent_for rule fires on missing readings; it takes no when or resolve_when")
		}
	} else {
		if r.Kind == "" {
			add("kind", "required (the kind of reading the rule looks at)")
		}
		if r.When == "" {
			add("when", "required: a condition such as systolic >= 180 (or set absent_for for a no-data rule)")
		}
		if kind != nil && r.When != "" {
			prog, w, err := compileExpr(r.When, kind)
			if err != nil {
				add("when", "%v", err)
			}
			c.when, c.window = prog, w
		}
		if kind != nil && r.ResolveWhen != "" {
			prog, w, err := compileExpr(r.ResolveWhen, kind)
			if err != nil {
				add("resolve_when", "%v", err)
			}
			c.resolve, c.window = prog, max(c.window, w)
		}
	}
	var err error
	if c.summary, err = parseTemplate("summary", r.Summary); err != nil {
		add("summary", "%v", err)
	}
	if c.descr, err = parseTemplate("description", r.Description); err != nil {
		add("description", "%v", err)
	}
	return c
}

// add files a compiled rule by what triggers it: missing readings, or readings of its kind.
func (s *RuleSet) add(c *compiled, kind *reading.Kind) {
	s.rules = append(s.rules, c)
	if c.AbsentFor > 0 {
		s.absent = append(s.absent, c)
		return
	}
	s.byKind[c.Kind] = append(s.byKind[c.Kind], c)
	if _, ok := s.fields[c.Kind]; !ok {
		for _, f := range kind.Fields {
			if f.Type == reading.Number {
				s.fields[c.Kind] = append(s.fields[c.Kind], f.Name)
			}
		}
	}
	s.window[c.Kind] = max(s.window[c.Kind], c.window)
}

func parseTemplate(name, text string) (*template.Template, error) {
	if text == "" {
		return nil, nil
	}
	return template.New(name).Option("missingkey=zero").Parse(text)
}

// compileExpr compiles a condition for a kind. It returns the longest window it uses.
func compileExpr(src string, kind *reading.Kind) (*vm.Program, time.Duration, error) {
	env := map[string]any{
		"subject": "", "device": "", "kind": "", "time": time.Time{},
		seriesVar: (*series)(nil),
	}
	numeric := map[string]bool{}
	for _, f := range kind.Fields {
		switch f.Type {
		case reading.Number:
			env[f.Name] = 0.0
			numeric[f.Name] = true
		case reading.Text:
			env[f.Name] = ""
		case reading.Samples:
			env[f.Name] = []float64{}
		}
	}
	src, err := rewriteDurations(src)
	if err != nil {
		return nil, 0, err
	}
	p := &patcher{numeric: numeric}
	opts := []expr.Option{
		expr.Env(env), expr.AsBool(), expr.Patch(p),
		expr.Function("avg", windowFunc("avg"), new(func(string, time.Duration, *series) float64)),
		expr.Function("sum", windowFunc("sum"), new(func(string, time.Duration, *series) float64)),
		expr.Function("count", windowFunc("count"), new(func(string, time.Duration, *series) float64)),
		expr.Function("delta", windowFunc("delta"), new(func(string, time.Duration, *series) float64)),
		expr.Function("rate", windowFunc("rate"), new(func(string, time.Duration, *series) float64)),
		expr.Function("min", minMax("min")),
		expr.Function("max", minMax("max")),
	}
	prog, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, 0, fmt.Errorf("%s", oneLine(err.Error()))
	}
	if len(p.errs) > 0 {
		return nil, 0, p.errs[0]
	}
	return prog, p.window, nil
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// RewriteDurations is rewriteDurations for other readers of rule conditions (the dashboard
// draws the thresholds of the loaded rules).
func RewriteDurations(src string) (string, error) { return rewriteDurations(src) }

// rewriteDurations turns duration literals outside strings (5m, 30s, 1h30m, 500ms) into
// duration("5m"), so avg(bpm, 5m) reads naturally.
func rewriteDurations(src string) (string, error) {
	var b strings.Builder
	var quote byte
	for i := 0; i < len(src); i++ {
		c := src[i]
		if quote != 0 {
			b.WriteByte(c)
			if c == '\\' && i+1 < len(src) {
				i++
				b.WriteByte(src[i])
			} else if c == quote {
				quote = 0
			}
			continue
		}
		if c == '"' || c == '\'' || c == '`' {
			quote = c
			b.WriteByte(c)
			continue
		}
		if c >= '0' && c <= '9' && (i == 0 || !isIdent(src[i-1]) && src[i-1] != '.') {
			if m := durationRe.FindString(src[i:]); m != "" {
				end := i + len(m)
				if end == len(src) || !isIdent(src[end]) {
					if _, err := time.ParseDuration(m); err == nil {
						b.WriteString(`duration("` + m + `")`)
						i = end - 1
						continue
					}
				}
			}
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

var durationRe = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+`)

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// patcher rewrites avg(bpm, 5m) into avg("bpm", duration("5m"), __series).
type patcher struct {
	numeric map[string]bool
	window  time.Duration
	errs    []error
}

func (p *patcher) Visit(node *ast.Node) {
	call, ok := (*node).(*ast.CallNode)
	if !ok {
		return
	}
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok || !windowFuncs[id.Value] || len(call.Arguments) != 2 {
		return
	}
	arg, ok := call.Arguments[0].(*ast.IdentifierNode)
	d, isDur := durationArg(call.Arguments[1])
	if (id.Value == "min" || id.Value == "max") && (!ok || !isDur) {
		return // min(a, b) of two numbers
	}
	if !ok || !p.numeric[arg.Value] {
		p.errs = append(p.errs, fmt.Errorf("%s(VALUE, WINDOW): VALUE must be a numeric value of the kind", id.Value))
		return
	}
	if !isDur || d <= 0 {
		p.errs = append(p.errs, fmt.Errorf("%s(%s, WINDOW): WINDOW must be a positive duration literal such as 5m", id.Value, arg.Value))
		return
	}
	p.window = max(p.window, d)
	name := &ast.StringNode{Value: arg.Value}
	name.SetType(arg.Type())
	call.Arguments = []ast.Node{name, call.Arguments[1], &ast.IdentifierNode{Value: seriesVar}}
}

func durationArg(n ast.Node) (time.Duration, bool) {
	var args []ast.Node
	switch c := n.(type) {
	case *ast.BuiltinNode:
		if c.Name != "duration" {
			return 0, false
		}
		args = c.Arguments
	case *ast.CallNode:
		if id, ok := c.Callee.(*ast.IdentifierNode); !ok || id.Value != "duration" {
			return 0, false
		}
		args = c.Arguments
	default:
		return 0, false
	}
	if len(args) != 1 {
		return 0, false
	}
	s, ok := args[0].(*ast.StringNode)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s.Value)
	return d, err == nil
}

func windowFunc(fn string) func(params ...any) (any, error) {
	return func(params ...any) (any, error) {
		name, _ := params[0].(string)
		d, _ := params[1].(time.Duration)
		s, _ := params[2].(*series)
		return s.aggregate(fn, name, d), nil
	}
}

func minMax(fn string) func(params ...any) (any, error) {
	return func(params ...any) (any, error) {
		if len(params) == 3 {
			if s, ok := params[2].(*series); ok {
				name, _ := params[0].(string)
				d, _ := params[1].(time.Duration)
				return s.aggregate(fn, name, d), nil
			}
		}
		if len(params) == 0 {
			return nil, fmt.Errorf("%s: no arguments", fn)
		}
		best := math.NaN()
		for i, p := range params {
			v, ok := toFloat(p)
			if !ok {
				return nil, fmt.Errorf("%s: argument %d is not a number", fn, i+1)
			}
			if i == 0 || (fn == "min" && v < best) || (fn == "max" && v > best) {
				best = v
			}
		}
		return best, nil
	}
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float32:
		return float64(x), true
	}
	return 0, false
}
