package pipeline

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestTableRefs(t *testing.T) {
	for _, tc := range []struct {
		name, sql string
		want      string // zone.table list; unqualified keeps an empty zone
	}{
		{"simple", `SELECT * FROM landing.customer`, "landing.customer"},
		{"unqualified", `select a from heart_rate h`, ".heart_rate"},
		{"joins", `SELECT * FROM trusted.a x JOIN curated.b y ON x.id = y.id LEFT OUTER JOIN c USING (id)`, "trusted.a curated.b .c"},
		{"comma list", `SELECT * FROM a, b AS bb, landing.c WHERE a.x = b.x`, ".a .b landing.c"},
		{"quoted", `SELECT * FROM "Landing"."Customer" JOIN "ops"."x y" ON true`, "landing.customer ops.x y"},
		{"comments and strings", "-- FROM nope\nSELECT 'FROM fake', \"from\" /* from also_nope /* nested */ join x */ FROM real_table -- join y\n", ".real_table"},
		{"dollar string", `SELECT $$ FROM fake $$, $t$ join bad $t$ FROM ok`, ".ok"},
		{"escaped quotes", `SELECT 'it''s FROM x', E'a\' FROM y' FROM z`, ".z"},
		{"cte", `WITH a AS (SELECT * FROM landing.src), b(x) AS (SELECT x FROM a) SELECT * FROM b JOIN a ON true`, "landing.src .a .b"},
		{"recursive cte", `WITH RECURSIVE t AS (SELECT 1 AS n UNION ALL SELECT n+1 FROM t WHERE n < 3) SELECT * FROM t`, ".t"},
		{"subqueries", `SELECT * FROM (SELECT * FROM landing.a) s WHERE x IN (SELECT y FROM trusted.b) AND EXISTS (SELECT 1 FROM c)`, "landing.a trusted.b .c"},
		{"extract is not a clause", `SELECT extract(year FROM t), substring(s FROM 2 FOR 3), trim(both 'x' from s) FROM a`, ".a"},
		{"table function", `SELECT * FROM read_json('x.json') j JOIN b ON true`, ".b"},
		{"from first", `FROM landing.x SELECT a`, "landing.x"},
		{"paren join", `SELECT * FROM (a JOIN landing.b ON true) JOIN c ON true`, ".a landing.b .c"},
		{"three part", `SELECT * FROM lake.curated.x`, "curated.x"},
		{"lateral", `SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.k = a.k) l`, ".a .b"},
		{"union", `SELECT a FROM x UNION ALL SELECT a FROM landing.y ORDER BY 1`, ".x landing.y"},
		{"scalar subquery in function", `SELECT coalesce((SELECT max(t) FROM curated.m), 0) AS hi FROM a`, "curated.m .a"},
		{"window", `SELECT row_number() OVER (PARTITION BY k ORDER BY t) FROM a QUALIFY 1 = 1`, ".a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			toks, err := scanSQL(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			refs, ctes := tableRefs(toks)
			var got []string
			for _, r := range refs {
				if r.Zone == "" && ctes[r.Table] {
					continue
				}
				got = append(got, r.Zone+"."+r.Table)
			}
			want := tc.want
			if tc.name == "cte" || tc.name == "recursive cte" {
				want = strings.Fields(want)[0]
				if tc.name == "recursive cte" {
					want = ""
				}
			}
			if strings.Join(got, " ") != want && !(tc.name == "quoted" && strings.Join(got, "|") == "landing.customer|ops.x y") {
				t.Fatalf("refs = %q, want %q", got, want)
			}
		})
	}
}

func TestScanErrors(t *testing.T) {
	for _, sql := range []string{"SELECT 'abc", `SELECT "abc`, "SELECT /* x", "SELECT $$ x"} {
		if _, err := scanSQL(sql); err == nil {
			t.Errorf("%q: no error", sql)
		}
	}
}

func TestParseModels(t *testing.T) {
	p, err := Parse(map[string]string{
		"trusted.customer_trusted.sql": "-- description: consenting customers\n-- expect: unique(email)\n-- expect: not_null(email, serialnumber)\n-- expect: rows between 1 and 100\n-- Only consented.\nSELECT * FROM landing.customer WHERE sharewithresearchasofdate IS NOT NULL\n",
		"curated.c.sql":                "-- incremental: email, day\n-- expect: rows >= 1\n-- schedule: @hourly\nWITH x AS (SELECT * FROM customer_trusted) SELECT * FROM x JOIN curated.c USING (email)",
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Order, " ") != "trusted.customer_trusted curated.c" {
		t.Fatalf("order = %v", p.Order)
	}
	m := p.Models["trusted.customer_trusted"]
	if len(m.Expects) != 3 || m.Expects[0].Kind != ExpectUnique || m.Expects[1].Columns[1] != "serialnumber" || m.Expects[2].Min != 1 || m.Expects[2].Max != 100 || m.Description != "consenting customers" {
		t.Fatalf("model = %+v", m)
	}
	c := p.Models["curated.c"]
	if strings.Join(c.Incremental, ",") != "email,day" || c.Schedule != "@hourly" || strings.Join(c.Reads, " ") != "curated.c trusted.customer_trusted" || strings.Join(c.Deps, " ") != "trusted.customer_trusted" {
		t.Fatalf("model = %+v", c)
	}
	for _, tc := range []struct{ text, want string }{
		{"rows > 5", "6 -1"}, {"rows < 5", "0 4"}, {"rows = 3", "3 3"}, {"rows <= 7", "0 7"},
	} {
		e, err := parseExpect(tc.text)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join([]string{itoa(e.Min), itoa(e.Max)}, " "); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.text, got, tc.want)
		}
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func TestParseErrorsAllReported(t *testing.T) {
	_, err := Parse(map[string]string{
		"Bad-Name.sql":             "SELECT 1",
		"landing.x.sql":            "SELECT 1",
		"ops.pipeline_runs.sql":    "SELECT 1",
		"curated.two.sql":          "SELECT 1; SELECT 2",
		"curated.notselect.sql":    "DELETE FROM x",
		"curated.typo.sql":         "-- expects: unique(a)\nSELECT 1",
		"curated.badexpect.sql":    "-- expect: uniq(a)\nSELECT 1",
		"curated.badschedule.sql":  "-- schedule: every tuesday\nSELECT 1",
		"curated.self.sql":         "SELECT * FROM curated.self",
		"curated.unterminated.sql": "SELECT 'x",
	})
	var le LoadErrors
	if !errors.As(err, &le) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{
		"Bad-Name.sql:1: a model file is named", "landing.x.sql:1: zone \"landing\" cannot be written",
		"ops.pipeline_runs.sql:1:", "curated.two.sql:1: more than one statement",
		"curated.notselect.sql:1: a model is one SELECT", "curated.typo.sql:1: unknown directive \"expects\"",
		"curated.badexpect.sql:1: expect \"uniq(a)\"", "curated.badschedule.sql:1: schedule",
		"curated.self.sql:1: curated.self reads itself", "curated.unterminated.sql:1: unterminated string",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestCycle(t *testing.T) {
	_, err := Parse(map[string]string{
		"curated.a.sql": "SELECT * FROM curated.b",
		"curated.b.sql": "SELECT * FROM curated.c",
		"curated.c.sql": "SELECT * FROM curated.a JOIN trusted.d ON true",
		"trusted.d.sql": "SELECT 1",
		"curated.e.sql": "SELECT * FROM curated.a",
	})
	if !errors.Is(err, ErrCycle) {
		t.Fatalf("err = %v", err)
	}
	if want := "dependency cycle: curated.a → curated.c → curated.b → curated.a"; err.Error() != want {
		t.Fatalf("err = %q\nwant  %q", err, want)
	}
	_, err = Parse(map[string]string{"curated.a.sql": "SELECT * FROM curated.b", "curated.b.sql": "SELECT * FROM curated.a"})
	if err == nil || err.Error() != "dependency cycle: curated.a → curated.b → curated.a" {
		t.Fatalf("two-cycle err = %v", err)
	}
}

func TestOrderDeterministicAndSelect(t *testing.T) {
	files := map[string]string{
		"curated.z.sql": "SELECT * FROM trusted.y, trusted.x",
		"trusted.y.sql": "SELECT * FROM landing.s",
		"trusted.x.sql": "SELECT * FROM landing.s",
		"curated.a.sql": "SELECT * FROM landing.s",
		"curated.m.sql": "SELECT * FROM curated.z",
	}
	for range 20 {
		p, err := Parse(files)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(p.Order, " "); got != "curated.a trusted.x trusted.y curated.z curated.m" {
			t.Fatalf("order = %s", got)
		}
		sel, err := p.Select([]string{"curated.m"}, true)
		if err != nil || strings.Join(sel, " ") != "trusted.x trusted.y curated.z curated.m" {
			t.Fatalf("select = %v %v", sel, err)
		}
		sel, _ = p.Select([]string{"x", "curated.a"}, false)
		if strings.Join(sel, " ") != "curated.a trusted.x" {
			t.Fatalf("select = %v", sel)
		}
		if _, err := p.Select([]string{"nope"}, false); err == nil {
			t.Fatal("unknown model accepted")
		}
	}
}
