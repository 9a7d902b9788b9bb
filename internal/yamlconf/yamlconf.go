// Package yamlconf decodes YAML configuration strictly and reports every problem found, each
// with its file:line and YAML path, instead of stopping at the first. It also holds the value
// types that every part of the configuration shares (Duration), so that the packages whose
// settings live in the file (config, rules, notify) report mistakes the same way.
//
// It imports no other pulselake package: everything that reads configuration may import it.
package yamlconf

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Duration is a time.Duration written like "30s", "5m", "4h" or "30d" (a day is 24h).
type Duration time.Duration

// parseDuration is time.ParseDuration that also takes whole or decimal days before the
// rest: "30d", "1.5d", "1d12h".
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, 'd'); i > 0 {
		days, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || !(days >= 0 && days <= 106751) { // also NaN
			return 0, fmt.Errorf("bad number of days in %q", s)
		}
		if rest := s[i+1:]; rest != "" && (rest[0] == '-' || rest[0] == '+') {
			return 0, fmt.Errorf("bad number of days in %q", s)
		}
		d := time.Duration(days * 24 * float64(time.Hour))
		if rest := s[i+1:]; rest != "" {
			r, err := time.ParseDuration(rest)
			if err != nil {
				return 0, err
			}
			if d+r < d {
				return 0, fmt.Errorf("duration %q is too long", s)
			}
			d += r
		}
		return d, nil
	}
	return time.ParseDuration(s)
}

// UnmarshalYAML parses a Go duration string; its error carries the node's position.
func (d *Duration) UnmarshalYAML(n ast.Node) error {
	s, ok := n.(*ast.StringNode)
	if !ok {
		return &ValueError{Token: n.GetToken(), Msg: fmt.Sprintf("want a duration like 30s or 5m, got %s", n)}
	}
	v, err := parseDuration(s.Value)
	if err != nil {
		return &ValueError{Token: n.GetToken(), Msg: fmt.Sprintf("want a duration like 30s, 5m or 30d (units ms, s, m, h, d), got %q", s.Value)}
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as text (YAML and JSON).
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string (JSON, e.g. API bodies).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration like 30s, 5m or 30d, got %q", b)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ValueError is a value that cannot be decoded, at the token where it is written. Decoders
// of values (like Duration's) return it so that Decode can tell where the mistake is.
type ValueError struct {
	Token *token.Token
	Msg   string
}

func (e *ValueError) Error() string {
	if e.Token == nil {
		return e.Msg
	}
	return fmt.Sprintf("[%d:%d] %s", e.Token.Position.Line, e.Token.Position.Column, e.Msg)
}

// GetToken returns where the value is written.
func (e *ValueError) GetToken() *token.Token { return e.Token }

// GetMessage returns the message without the position.
func (e *ValueError) GetMessage() string { return e.Msg }

// Problem is one configuration mistake at a place in a file.
type Problem struct {
	File string
	Line int
	Path string // YAML path, e.g. ingest.max_batch or notify[0].email.to
	Msg  string
}

// String is "file:line: path: message"; parts that are unknown are left out, except that a
// problem at a line of no named file says "config:line".
func (p Problem) String() string {
	var parts []string
	switch {
	case p.Line > 0 && p.File == "":
		parts = append(parts, fmt.Sprintf("config:%d", p.Line))
	case p.Line > 0:
		parts = append(parts, fmt.Sprintf("%s:%d", p.File, p.Line))
	case p.File != "":
		parts = append(parts, p.File)
	}
	if p.Path != "" {
		parts = append(parts, p.Path)
	}
	return strings.Join(append(parts, p.Msg), ": ")
}

// Error makes a single problem an error.
func (p Problem) Error() string { return p.String() }

// Problems is every problem found; a non-empty one is an error listing one problem a line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Add appends a problem at a YAML path; the file and line are filled in by Locate.
func (ps *Problems) Add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Err returns the problems as an error, or nil when there are none.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Locate fills in the file of every problem, and the line of those without one from the
// syntax tree f (the line of the node at the problem's path or of its nearest parent).
func (ps Problems) Locate(file string, f *ast.File) {
	for i := range ps {
		if ps[i].File == "" {
			ps[i].File = file
		}
		if ps[i].Line == 0 {
			ps[i].Line = Line(f, ps[i].Path)
		}
	}
}

// Sort orders the problems by line, keeping the order of those on the same line.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}

// Line returns the line of the node at a YAML path like "ingest.max_batch" or
// "kinds[0].name", or of its nearest existing parent; 0 when unknown.
func Line(f *ast.File, path string) int {
	if f == nil {
		return 0
	}
	for p := path; p != ""; {
		if yp, err := yaml.PathString("$." + p); err == nil {
			if n, err := yp.FilterFile(f); err == nil && n != nil {
				return n.GetToken().Position.Line
			}
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// maxProblems bounds how many decoding problems one file reports.
const maxProblems = 100

// Parse parses YAML text into a syntax tree. A syntax error is returned as a Problem.
func Parse(file string, data []byte) (*ast.File, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		p := Problem{File: file, Msg: yaml.FormatError(err, false, false)}
		var ye yaml.Error
		if errors.As(err, &ye) {
			p.Msg = ye.GetMessage()
			if tk := ye.GetToken(); tk != nil {
				p.Line = tk.Position.Line
			}
		}
		return nil, Problems{p}
	}
	return f, nil
}

// Decode decodes the syntax tree f into dst strictly (unknown keys are mistakes) and returns
// every mistake found. fresh returns a new destination (with its defaults) for each try:
// after a mistake, the key or list item holding it is left out and the tree decoded again,
// so the result holds every other setting and the problems list every mistake, not only the
// first. f is changed: the keys in error are removed from it.
func Decode[T any](file string, f *ast.File, fresh func() *T) (*T, Problems) {
	var ps Problems
	for {
		dst := fresh()
		if len(f.Docs) == 0 || f.Docs[0].Body == nil {
			return dst, ps
		}
		err := nodeToValue(f.Docs[0].Body, dst)
		if err == nil {
			return dst, ps
		}
		p := Problem{File: file, Msg: err.Error()}
		var ye located
		var tk *token.Token
		if errors.As(err, &ye) {
			tk = ye.GetToken()
			p.Msg = message(ye)
		}
		removed := false
		if tk != nil {
			p.Line = tk.Position.Line
			p.Path, removed = remove(f.Docs[0].Body, tk)
		} else {
			// An error that does not say where (time.Duration's, for one): find the key
			// by leaving keys out until it goes away.
			msg := err.Error()
			fails := func() bool {
				err := nodeToValue(f.Docs[0].Body, fresh())
				return err != nil && err.Error() == msg
			}
			p.Path, p.Line, removed = culprit(f.Docs[0].Body, fails)
		}
		ps = append(ps, p)
		if !removed || len(ps) >= maxProblems {
			return dst, ps
		}
	}
}

// nodeToValue decodes node into dst strictly. The YAML library panics on some malformed
// trees (a list item whose key is "!-" with a flow mapping, found by FuzzDetectorParams);
// that is a mistake in the file, reported like any other, not a crash.
func nodeToValue(node ast.Node, dst any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("this part cannot be decoded (%v); check its indentation and list markers", r)
		}
	}()
	return yaml.NodeToValue(node, dst, yaml.Strict())
}

// located is an error that knows where its value is written: goccy/go-yaml's errors and
// ValueError.
type located interface {
	error
	GetToken() *token.Token
	GetMessage() string
}

// Unmarshal parses and decodes a whole file strictly, like Parse then Decode into a new T,
// and returns every mistake as Problems.
func Unmarshal[T any](file string, data []byte) (*T, error) {
	f, err := Parse(file, data)
	if err != nil {
		return nil, err
	}
	v, ps := Decode(file, f, func() *T { return new(T) })
	if len(ps) > 0 {
		return nil, ps
	}
	return v, nil
}

// message says what is wrong in the user's words.
func message(e located) string {
	var te *yaml.TypeError
	var ue *yaml.UnknownFieldError
	switch {
	case errors.As(e, &te):
		got := ""
		switch {
		case te.SrcType != nil && (te.SrcType.Kind() == reflect.Slice || te.SrcType.Kind() == reflect.Map):
			got = ", got " + typeName(te.SrcType) // its first token ("[", "-") says nothing
		case te.Token != nil:
			got = fmt.Sprintf(", got %q", te.Token.Value)
		}
		return fmt.Sprintf("want %s%s", typeName(te.DstType), got)
	case errors.As(e, &ue):
		return ue.GetMessage() + " (check the spelling; see docs/configuration.md for every key)"
	}
	return e.GetMessage()
}

func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping of keys to values"
	}
	return t.String()
}

// remove takes the key or list item that holds the node written at tk out of the tree and
// returns its YAML path (without the leading "$.").
func remove(n ast.Node, tk *token.Token) (string, bool) {
	switch n := n.(type) {
	case *ast.MappingNode:
		for i, mv := range n.Values {
			if at(mv, tk) || at(mv.Key, tk) || at(mv.Value, tk) {
				path := mv.Key.GetPath()
				n.Values = append(n.Values[:i], n.Values[i+1:]...)
				return trimRoot(path), true
			}
			if p, ok := remove(mv.Value, tk); ok {
				return p, true
			}
		}
	case *ast.MappingValueNode:
		if at(n.Key, tk) || at(n.Value, tk) {
			return "", false // a lone key: value cannot be left out of its parent here
		}
		return remove(n.Value, tk)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			if at(v, tk) {
				path := v.GetPath()
				n.Values = append(n.Values[:i], n.Values[i+1:]...)
				return trimRoot(path), true
			}
			if p, ok := remove(v, tk); ok {
				return p, true
			}
		}
	case *ast.TagNode:
		return remove(n.Value, tk)
	case *ast.AnchorNode:
		return remove(n.Value, tk)
	}
	return "", false
}

// culprit finds the deepest key or list item in n that fails() still fails with when every
// other entry beside it (and beside its parents) is left out. It removes that entry from the
// tree and returns its YAML path and line.
func culprit(n ast.Node, fails func() bool) (string, int, bool) {
	for {
		switch t := n.(type) {
		case *ast.TagNode:
			n = t.Value
			continue
		case *ast.AnchorNode:
			n = t.Value
			continue
		}
		break
	}
	switch n := n.(type) {
	case *ast.MappingNode:
		all := n.Values
		for i, mv := range all {
			n.Values = []*ast.MappingValueNode{mv}
			if !fails() {
				continue
			}
			path, line, ok := culprit(mv.Value, fails)
			if ok {
				n.Values = all
				return path, line, true
			}
			n.Values = slices.Delete(all, i, i+1)
			return trimRoot(mv.Key.GetPath()), mv.Key.GetToken().Position.Line, true
		}
		n.Values = all
	case *ast.SequenceNode:
		all := n.Values
		for i, v := range all {
			n.Values = []ast.Node{v}
			if !fails() {
				continue
			}
			path, line, ok := culprit(v, fails)
			if ok {
				n.Values = all
				return path, line, true
			}
			n.Values = slices.Delete(all, i, i+1)
			return trimRoot(v.GetPath()), v.GetToken().Position.Line, true
		}
		n.Values = all
	}
	return "", 0, false
}

// at tells whether node n is written at token tk (the node itself or, for a tag or anchor,
// the value it marks).
func at(n ast.Node, tk *token.Token) bool {
	if n == nil {
		return false
	}
	if n.GetToken() == tk {
		return true
	}
	switch n := n.(type) {
	case *ast.TagNode:
		return at(n.Value, tk)
	case *ast.AnchorNode:
		return at(n.Value, tk)
	}
	return false
}

func trimRoot(path string) string {
	path = strings.TrimPrefix(path, "$")
	return strings.TrimPrefix(path, ".")
}
