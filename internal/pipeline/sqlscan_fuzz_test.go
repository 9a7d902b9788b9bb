package pipeline

import (
	"strings"
	"testing"
)

// FuzzScanSQL checks the SQL scanner on arbitrary text: no panic, tokens come in order with
// line numbers within the text, and the tables found are named at lines of the text.
func FuzzScanSQL(f *testing.F) {
	for _, seed := range []string{
		"SELECT a, 'it''s' AS s, E'a\\'b', \"Quoted \"\"id\"\"\" FROM landing.step_trainer -- c\n/* x /* y */ */ WHERE $$ body $$ = $t$x$t$",
		"SELECT 'unterminated",
		"SELECT \"open",
		"-- expect: unique(serial_number)\nSELECT * FROM trusted.customer_trusted",
		"WITH RECURSIVE a AS (SELECT 1), b AS (FROM a) SELECT * FROM (x JOIN y.z ON true), LATERAL read_csv('f'), only w WHERE EXTRACT(year FROM t) > 1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		toks, err := scanSQL(src)
		if err != nil {
			return
		}
		last := 1
		maxLine := 1 + strings.Count(src, "\n")
		for _, tk := range toks {
			if tk.line < last || tk.line > maxLine {
				t.Fatalf("token %+v at line %d after line %d (text has %d lines)", tk, tk.line, last, maxLine)
			}
			last = tk.line
		}
		refs, _ := tableRefs(toks)
		for _, r := range refs {
			if r.Table == "" || r.Line < 1 || r.Line > maxLine {
				t.Fatalf("table reference %+v (text has %d lines)", r, maxLine)
			}
		}
	})
}
