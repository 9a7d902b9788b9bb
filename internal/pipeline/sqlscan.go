package pipeline

import (
	"fmt"
	"strings"
)

// tokKind classifies a SQL token.
type tokKind int

const (
	tokWord   tokKind = iota // keyword or bare identifier (lower-cased in text)
	tokQuoted                // "quoted identifier" (text without quotes, lower-cased: DuckDB folds case)
	tokString                // 'string', E'string', $$string$$
	tokNumber
	tokPunct // one character: ( ) , . ; and operators
)

type token struct {
	kind tokKind
	text string
	line int
}

// scanSQL splits SQL into tokens, dropping comments and whitespace. It understands -- and
// /* */ comments (nested, as DuckDB and PostgreSQL allow), 'strings' with ” escapes,
// E'strings' with backslash escapes, $tag$dollar strings$tag$ and "identifiers" with ""
// escapes. An unterminated string, identifier or comment is an error with its line. It is
// one loop over the text with a case per token kind, as lexers are: split, the cases would
// only pass the position back and forth.
func scanSQL(src string) ([]token, error) {
	var toks []token
	line := 1
	i := 0
	n := len(src)
	for i < n {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			i++
		case c == '-' && i+1 < n && src[i+1] == '-':
			for i < n && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < n && src[i+1] == '*':
			start := line
			depth := 0
			for {
				if i+1 >= n {
					return nil, lineErr(start, "unterminated /* comment")
				}
				if src[i] == '/' && src[i+1] == '*' {
					depth++
					i += 2
					continue
				}
				if src[i] == '*' && src[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
					continue
				}
				if src[i] == '\n' {
					line++
				}
				i++
			}
		case c == '\'' || ((c == 'e' || c == 'E') && i+1 < n && src[i+1] == '\''):
			start := line
			backslash := c != '\''
			if backslash {
				i++
			}
			i++
			text, next, lines, closed := scanQuoted(src, i, '\'', backslash)
			i, line = next, line+lines
			if !closed {
				return nil, lineErr(start, "unterminated string")
			}
			toks = append(toks, token{tokString, text, start})
		case c == '"':
			start := line
			text, next, lines, closed := scanQuoted(src, i+1, '"', false)
			i, line = next, line+lines
			if !closed {
				return nil, lineErr(start, "unterminated quoted identifier")
			}
			toks = append(toks, token{tokQuoted, strings.ToLower(text), start})
		case c == '$' && dollarTag(src[i:]) != "":
			tag := dollarTag(src[i:])
			start := line
			end := strings.Index(src[i+len(tag):], tag)
			if end < 0 {
				return nil, lineErr(start, "unterminated %s string", tag)
			}
			body := src[i+len(tag) : i+len(tag)+end]
			line += strings.Count(body, "\n")
			toks = append(toks, token{tokString, body, start})
			i += 2*len(tag) + end
		case isIdentStart(c):
			j := i
			for j < n && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, token{tokWord, strings.ToLower(src[i:j]), line})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < n && (isIdentPart(src[j]) || src[j] == '.') {
				j++
			}
			toks = append(toks, token{tokNumber, src[i:j], line})
			i = j
		default:
			toks = append(toks, token{tokPunct, string(c), line})
			i++
		}
	}
	return toks, nil
}

// dollarTag returns the opening tag ($$ or $name$) at the start of s, or "".
func dollarTag(s string) string {
	if len(s) < 2 || s[0] != '$' {
		return ""
	}
	for j := 1; j < len(s); j++ {
		if s[j] == '$' {
			return s[:j+1]
		}
		if !isIdentPart(s[j]) || (j == 1 && s[j] >= '0' && s[j] <= '9') {
			return "" // $1 is a parameter
		}
	}
	return ""
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') || c == '$' }

func (t token) is(word string) bool { return t.kind == tokWord && t.text == word }
func (t token) punct(p string) bool { return t.kind == tokPunct && t.text == p }
func (t token) ident() bool         { return t.kind == tokWord || t.kind == tokQuoted }

// fromEnders end the table list of a FROM clause at its own parenthesis depth.
var fromEnders = map[string]bool{
	"where": true, "group": true, "having": true, "order": true, "limit": true, "offset": true,
	"qualify": true, "window": true, "union": true, "except": true, "intersect": true,
	"select": true, "returning": true, "fetch": true, "using": false,
}

// TableRef is a table a query reads, as written.
type TableRef struct {
	Zone  string // "" when unqualified
	Table string
	Line  int // line in the SQL text
}

// frame is one parenthesis level of the scan.
type frame struct {
	query    bool // holds a SELECT/WITH/FROM-first query (not a function's arguments)
	inFrom   bool // inside a FROM clause's table list
	inWith   bool // inside a WITH list, expecting CTE names
	expectCT bool // next identifier at this depth names a CTE
}

// tableRefs returns the tables toks read (deduplicated, in order of first appearance) and the
// names of common table expressions they define. A name after FROM or JOIN, or after a comma
// in a FROM list, is a table unless it is followed by '(' (a table function such as
// read_csv(...)) or is a parenthesised subquery, which is scanned like the outer query.
// FROM inside a function's arguments (EXTRACT(year FROM t), TRIM(x FROM s)) is not a clause.
func tableRefs(toks []token) (refs []TableRef, ctes map[string]bool) {
	r := &refScanner{toks: toks, stack: []frame{{query: true}}, seen: map[string]bool{}, ctes: map[string]bool{}}
	for i := range toks {
		r.scan(i)
	}
	return r.refs, r.ctes
}

// refScanner is the state of tableRefs: the parenthesis levels open and what was found.
type refScanner struct {
	toks  []token
	stack []frame
	refs  []TableRef
	seen  map[string]bool // zone.table of refs
	ctes  map[string]bool
}

func (r *refScanner) top() *frame { return &r.stack[len(r.stack)-1] }

// scan takes in the token toks[i].
func (r *refScanner) scan(i int) {
	t := r.toks[i]
	f := r.top()
	switch {
	case t.punct("("):
		r.open(i)
	case t.punct(")"):
		if len(r.stack) > 1 {
			r.stack = r.stack[:len(r.stack)-1]
		}
		if f := r.top(); f.inWith {
			f.expectCT = false
		}
	case !f.query:
		// function arguments: FROM here is not a clause
	case t.is("with"):
		f.inWith, f.expectCT = true, true
	case f.inWith && r.withList(i):
	case t.is("from") || t.is("join"):
		f.inFrom = true
		r.addRef(i + 1)
	case f.inFrom && t.punct(","):
		r.addRef(i + 1)
	case f.inFrom && t.kind == tokWord && fromEnders[t.text]:
		f.inFrom = false
	}
}

// open enters the parenthesis at toks[i]: a query in parentheses starts with SELECT, WITH,
// FROM, VALUES or another '('; a parenthesised join, FROM (a JOIN b ON ...), lists tables
// itself; anything else holds a function's arguments or an expression.
func (r *refScanner) open(i int) {
	toks, f := r.toks, r.top()
	q := i+1 < len(toks) && (toks[i+1].is("select") || toks[i+1].is("with") || toks[i+1].is("from") || toks[i+1].is("values"))
	joinGroup := !q && f.query && i > 0 && (toks[i-1].is("from") || toks[i-1].is("join") || (f.inFrom && toks[i-1].punct(",")))
	r.stack = append(r.stack, frame{query: q || joinGroup, inFrom: joinGroup})
	if joinGroup {
		r.addRef(i + 1)
	}
}

// withList takes in toks[i] inside a WITH list (CTE names, up to the main query) and
// reports whether it was part of the list.
func (r *refScanner) withList(i int) bool {
	t, f := r.toks[i], r.top()
	switch {
	case t.is("recursive"):
	case f.expectCT && t.ident():
		r.ctes[t.text] = true
		f.expectCT = false
	case t.punct(","):
		f.expectCT = true
	case (t.is("select") || t.is("from")) && !f.expectCT:
		f.inWith = false
		if t.is("from") {
			f.inFrom = true
			r.addRef(i + 1)
		}
	default:
		return false
	}
	return true
}

// addRef records the table named at toks[i] (after LATERAL or ONLY), unless it is a table
// function or a subquery (whose tokens are scanned anyway).
func (r *refScanner) addRef(i int) {
	toks := r.toks
	for i < len(toks) && (toks[i].is("lateral") || toks[i].is("only")) {
		i++
	}
	if i >= len(toks) || !toks[i].ident() {
		return
	}
	parts, next := r.readName(i)
	if next < len(toks) && toks[next].punct("(") {
		return // table function
	}
	ref := TableRef{Table: parts[len(parts)-1], Line: toks[i].line}
	if len(parts) >= 2 {
		ref.Zone = parts[len(parts)-2]
	}
	if key := ref.Zone + "." + ref.Table; !r.seen[key] {
		r.seen[key] = true
		r.refs = append(r.refs, ref)
	}
}

// readName reads a possibly qualified name starting at toks[i] and returns its parts and the
// index after it.
func (r *refScanner) readName(i int) ([]string, int) {
	var parts []string
	for i < len(r.toks) && r.toks[i].ident() {
		parts = append(parts, r.toks[i].text)
		if i+2 < len(r.toks) && r.toks[i+1].punct(".") && r.toks[i+2].ident() {
			i += 2
			continue
		}
		i++
		break
	}
	return parts, i
}

// checkSingleSelect verifies toks hold exactly one query statement (SELECT, WITH ... SELECT,
// FROM-first, VALUES or a parenthesised query), optionally followed by one semicolon.
func checkSingleSelect(toks []token) error {
	if len(toks) == 0 {
		return lineErr(1, "no SELECT statement")
	}
	for i, t := range toks {
		if t.punct(";") && i != len(toks)-1 {
			return lineErr(t.line, "more than one statement; a model holds one SELECT")
		}
	}
	first := toks[0]
	if first.punct("(") || first.is("select") || first.is("with") || first.is("from") || first.is("values") {
		return nil
	}
	return lineErr(first.line, "a model is one SELECT statement, found %q", first.text)
}

// sqlError is a problem at a line of a model's SQL.
type sqlError struct {
	line int
	msg  string
}

func (e *sqlError) Error() string { return e.msg }

func lineErr(line int, format string, args ...any) error {
	return &sqlError{line, fmt.Sprintf(format, args...)}
}

// scanQuoted reads a string literal or quoted identifier whose opening quote is just before
// src[i]: a doubled quote stands for one, and with backslash (E'...' strings) a backslash
// takes the next byte as it is. It returns the text, the index after the closing quote, the
// newlines crossed and whether the quote was closed.
func scanQuoted(src string, i int, quote byte, backslash bool) (text string, next, lines int, closed bool) {
	var b strings.Builder
	for i < len(src) {
		ch := src[i]
		if ch == '\n' {
			lines++
		}
		if backslash && ch == '\\' && i+1 < len(src) {
			b.WriteByte(src[i+1])
			i += 2
			continue
		}
		if ch == quote {
			if i+1 < len(src) && src[i+1] == quote {
				b.WriteByte(quote)
				i += 2
				continue
			}
			return b.String(), i + 1, lines, true
		}
		b.WriteByte(ch)
		i++
	}
	return b.String(), i, lines, false
}
