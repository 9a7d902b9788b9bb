package applehealth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// scanner tokenizes export.xml. encoding/xml reads about 10–40 MB/s (it decodes rune by
// rune and allocates every name and attribute); an export holds 1–8 GB, so the reader uses
// this scanner, which handles exactly the XML an export is made of: a prolog (XML
// declaration, an internal DTD, comments, processing instructions), elements with
// attributes (values quoted with " or ', with the five predefined entities and character
// references), whitespace between elements and CDATA sections. It checks that end tags
// match their start tags and that the document has one root element. Text content is
// skipped: export.xml keeps everything in attributes.
type scanner struct {
	r     *bufio.Reader
	line  int      // line of the current position (1-based)
	stack [][]byte // names of open elements
	tag   []byte   // the tag being read, reused
	attrs []attr   // attributes of the last start tag, reused; values point into tag, as written
	root  bool     // the root element was seen
}

type attr struct {
	name, value []byte
}

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokStart
	tokEnd
	tokSelfClose // a start tag ending in "/>": tokStart with its tokEnd
)

var errSyntax = errors.New("malformed XML")

func newScanner(r io.Reader) *scanner {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < 64<<10 {
		br = bufio.NewReaderSize(r, 256<<10)
	}
	return &scanner{r: br, line: 1}
}

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at line %d: %s", errSyntax, s.line, fmt.Sprintf(format, args...))
}

// maxTag bounds one tag, maxDepth the nesting.
const (
	maxTag   = 1 << 20
	maxDepth = 64
)

// next returns the next start or end tag. For tokStart and tokSelfClose, name and s.attrs
// hold the element's name and attributes until the following call. It stays whole: it is
// the lexer's one loop, a case per kind of markup, each keeping the element stack in step.
func (s *scanner) next() (tokenKind, []byte, error) {
	for {
		// Text up to the next '<': only whitespace matters (line numbers).
		for {
			chunk, err := s.r.ReadSlice('<')
			s.line += bytes.Count(chunk, nl)
			if err == nil {
				break
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				if len(s.stack) > 0 {
					return 0, nil, s.errorf("unexpected end of file inside <%s>", s.stack[len(s.stack)-1])
				}
				if !s.root {
					return 0, nil, s.errorf("no root element")
				}
				return tokEOF, nil, nil
			}
			return 0, nil, err
		}
		c, err := s.r.ReadByte()
		if err != nil {
			return 0, nil, s.errorf("unexpected end of file after '<'")
		}
		switch c {
		case '?':
			if err := s.skipUntil("?>"); err != nil {
				return 0, nil, err
			}
		case '!':
			if err := s.skipDeclaration(); err != nil {
				return 0, nil, err
			}
		case '/':
			if err := s.readTag(); err != nil {
				return 0, nil, err
			}
			name := bytes.TrimRight(s.tag, " \t\r\n")
			if len(s.stack) == 0 {
				return 0, nil, s.errorf("end tag </%s> without a start tag", name)
			}
			open := s.stack[len(s.stack)-1]
			if !bytes.Equal(open, name) {
				return 0, nil, s.errorf("end tag </%s> does not match <%s>", name, open)
			}
			s.stack = s.stack[:len(s.stack)-1]
			return tokEnd, open, nil
		default:
			if err := s.r.UnreadByte(); err != nil {
				return 0, nil, err
			}
			if err := s.readTag(); err != nil {
				return 0, nil, err
			}
			self := len(s.tag) > 0 && s.tag[len(s.tag)-1] == '/'
			if self {
				s.tag = s.tag[:len(s.tag)-1]
			}
			name, err := s.parseAttrs()
			if err != nil {
				return 0, nil, err
			}
			if len(s.stack) == 0 {
				if s.root {
					return 0, nil, s.errorf("a second root element <%s>", name)
				}
				s.root = true
			}
			if self {
				return tokSelfClose, name, nil
			}
			if len(s.stack) == maxDepth {
				return 0, nil, s.errorf("elements nested deeper than %d", maxDepth)
			}
			s.stack = append(s.stack, append([]byte(nil), name...))
			return tokStart, name, nil
		}
	}
}

var (
	nl = []byte{'\n'}
	dq = []byte{'"'}
)

// readTag reads up to the '>' that closes the tag (not one inside a quoted value) into
// s.tag, without the '>'.
func (s *scanner) readTag() error {
	s.tag = s.tag[:0]
	var quote byte
	for {
		chunk, err := s.r.ReadSlice('>')
		if err != nil && err != bufio.ErrBufferFull {
			return s.errorf("unexpected end of file inside a tag")
		}
		s.line += bytes.Count(chunk, nl)
		if quote == 0 && bytes.IndexByte(chunk, '\'') < 0 {
			// Common case: only double quotes; balanced when their count is even.
			if bytes.Count(chunk, dq)%2 == 1 {
				quote = '"'
			}
		} else {
			for _, c := range chunk {
				if quote != 0 {
					if c == quote {
						quote = 0
					}
				} else if c == '"' || c == '\'' {
					quote = c
				}
			}
		}
		s.tag = append(s.tag, chunk...)
		if len(s.tag) > maxTag {
			return s.errorf("a tag longer than %d bytes", maxTag)
		}
		if err == nil && quote == 0 {
			s.tag = s.tag[:len(s.tag)-1]
			return nil
		}
	}
}

// skipUntil discards input up to and including end.
func (s *scanner) skipUntil(end string) error {
	last := end[len(end)-1]
	var window []byte
	for {
		chunk, err := s.r.ReadSlice(last)
		if err != nil && err != bufio.ErrBufferFull {
			return s.errorf("unexpected end of file looking for %q", end)
		}
		s.line += bytes.Count(chunk, nl)
		window = append(window, chunk...)
		if len(window) > len(end) {
			window = window[len(window)-len(end):]
		}
		if err == nil && bytes.HasSuffix(window, []byte(end)) {
			return nil
		}
	}
}

// skipDeclaration skips what follows "<!": a comment, a CDATA section or a DOCTYPE with its
// internal subset (brackets, quoted strings, comments).
func (s *scanner) skipDeclaration() error {
	head, _ := s.r.Peek(7)
	switch {
	case bytes.HasPrefix(head, []byte("--")):
		s.r.Discard(2)
		return s.skipUntil("-->")
	case bytes.HasPrefix(head, []byte("[CDATA[")):
		s.r.Discard(7)
		return s.skipUntil("]]>")
	}
	depth := 0
	var quote byte
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return s.errorf("unexpected end of file inside <!...>")
		}
		switch {
		case c == '\n':
			s.line++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '[':
			depth++
		case c == ']':
			depth--
		case c == '<':
			if p, _ := s.r.Peek(3); bytes.Equal(p, []byte("!--")) {
				s.r.Discard(3)
				if err := s.skipUntil("-->"); err != nil {
					return err
				}
			}
		case c == '>' && depth <= 0:
			return nil
		}
	}
}

// parseAttrs splits s.tag into the element name and its attributes (s.attrs).
func (s *scanner) parseAttrs() ([]byte, error) {
	t := s.tag
	i := 0
	for i < len(t) && !isSpace(t[i]) {
		i++
	}
	name := t[:i]
	if len(name) == 0 {
		return nil, s.errorf("a tag without a name")
	}
	s.attrs = s.attrs[:0]
	for {
		for i < len(t) && isSpace(t[i]) {
			i++
		}
		if i == len(t) {
			return name, nil
		}
		j := i
		for j < len(t) && t[j] != '=' && !isSpace(t[j]) {
			j++
		}
		an := t[i:j]
		for j < len(t) && isSpace(t[j]) {
			j++
		}
		if j == len(t) || t[j] != '=' || len(an) == 0 {
			return nil, s.errorf("attribute %q of <%s> has no value", an, name)
		}
		j++
		for j < len(t) && isSpace(t[j]) {
			j++
		}
		if j == len(t) || (t[j] != '"' && t[j] != '\'') {
			return nil, s.errorf("attribute %q of <%s> is not quoted", an, name)
		}
		q := t[j]
		k := bytes.IndexByte(t[j+1:], q)
		if k < 0 {
			return nil, s.errorf("attribute %q of <%s> is not closed", an, name)
		}
		// Values keep their entity references; text reads them decoded.
		s.attrs = append(s.attrs, attr{an, t[j+1 : j+1+k]})
		i = j + 2 + k
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// text returns an attribute value with its entity and character references decoded; an
// invalid reference is kept as written.
func text(v []byte) string {
	if bytes.IndexByte(v, '&') < 0 {
		return string(v)
	}
	out, err := unescape(nil, v)
	if err != nil {
		return string(v)
	}
	return string(out)
}

// unescape appends v with its entity and character references replaced.
func unescape(dst, v []byte) ([]byte, error) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, '&')
		if i < 0 {
			return append(dst, v...), nil
		}
		dst = append(dst, v[:i]...)
		v = v[i:]
		j := bytes.IndexByte(v, ';')
		if j < 0 || j > 12 {
			return dst, errors.New("'&' that starts no entity")
		}
		ent := string(v[1:j])
		switch ent {
		case "lt":
			dst = append(dst, '<')
		case "gt":
			dst = append(dst, '>')
		case "amp":
			dst = append(dst, '&')
		case "quot":
			dst = append(dst, '"')
		case "apos":
			dst = append(dst, '\'')
		default:
			var n uint64
			var err error
			switch {
			case len(ent) > 2 && (ent[:2] == "#x" || ent[:2] == "#X"):
				n, err = strconv.ParseUint(ent[2:], 16, 32)
			case len(ent) > 1 && ent[0] == '#':
				n, err = strconv.ParseUint(ent[1:], 10, 32)
			default:
				return dst, fmt.Errorf("unknown entity &%s;", ent)
			}
			if err != nil || !utf8.ValidRune(rune(n)) {
				return dst, fmt.Errorf("bad character reference &%s;", ent)
			}
			dst = utf8.AppendRune(dst, rune(n))
		}
		v = v[j+1:]
	}
	return dst, nil
}
