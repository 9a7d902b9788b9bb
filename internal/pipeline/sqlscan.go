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
// escapes. An unterminated string, identifier or comment is an error with its line.
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
	ctes = map[string]bool{}
	seen := map[string]bool{}
	stack := []frame{{query: true}}
	top := func() *frame { return &stack[len(stack)-1] }
	// readName reads a possibly qualified name starting at toks[i] and returns its parts and
	// the index after it.
	readName := func(i int) ([]string, int) {
		var parts []string
		for i < len(toks) && toks[i].ident() {
			parts = append(parts, toks[i].text)
			if i+2 < len(toks) && toks[i+1].punct(".") && toks[i+2].ident() {
				i += 2
				continue
			}
			i++
			break
		}
		return parts, i
	}
	addRef := func(i int) {
		for i < len(toks) && (toks[i].is("lateral") || toks[i].is("only")) {
			i++
		}
		if i >= len(toks) || !toks[i].ident() {
			return // a subquery or something else; its tokens are scanned anyway
		}
		parts, next := readName(i)
		if next < len(toks) && toks[next].punct("(") {
			return // table function
		}
		ref := TableRef{Table: parts[len(parts)-1], Line: toks[i].line}
		if len(parts) >= 2 {
			ref.Zone = parts[len(parts)-2]
		}
		key := ref.Zone + "." + ref.Table
		if !seen[key] {
			seen[key] = true
			refs = append(refs, ref)
		}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		f := top()
		switch {
		case t.punct("("):
			// A query in parentheses starts with SELECT, WITH, FROM, VALUES or another '('.
			q := i+1 < len(toks) && (toks[i+1].is("select") || toks[i+1].is("with") || toks[i+1].is("from") || toks[i+1].is("values"))
			// A parenthesised join, FROM (a JOIN b ON ...), lists tables itself.
			joinGroup := !q && f.query && i > 0 && (toks[i-1].is("from") || toks[i-1].is("join") || (f.inFrom && toks[i-1].punct(",")))
			stack = append(stack, frame{query: q || joinGroup, inFrom: joinGroup})
			if joinGroup {
				addRef(i + 1)
			}
		case t.punct(")"):
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			if f := top(); f.inWith {
				f.expectCT = false
			}
		case !f.query:
			// function arguments: FROM here is not a clause
		case t.is("with"):
			f.inWith, f.expectCT = true, true
		case f.inWith && t.is("recursive"):
		case f.inWith && f.expectCT && t.ident():
			ctes[t.text] = true
			f.expectCT = false
		case f.inWith && t.punct(","):
			f.expectCT = true
		case f.inWith && (t.is("select") || t.is("from")) && !f.expectCT:
			f.inWith = false
			if t.is("from") {
				f.inFrom = true
				addRef(i + 1)
			}
		case t.is("from") || t.is("join"):
			f.inFrom = true
			addRef(i + 1)
		case f.inFrom && t.punct(","):
			addRef(i + 1)
		case f.inFrom && t.kind == tokWord && fromEnders[t.text]:
			f.inFrom = false
		}
	}
	return refs, ctes
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
