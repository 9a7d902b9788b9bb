package anomaly

import (
	"bytes"
	"math"
	"slices"
	"testing"
)

// FuzzDetectUnordered reads any CSV, with timestamps in any order and repeated, and checks that
// the sort keeps every row (stable, in time order), that the merge gives one point per
// timestamp holding the mean of its present values, and that the online and timeshift methods
// accept it and give a 0..1 score to every row.
func FuzzDetectUnordered(f *testing.F) {
	for _, s := range []string{
		"timestamp,value\n2014-04-01 00:05:00,1.5\n2014-04-01 00:00:00,2\n2014-04-01 00:05:00,\n",
		"\"DateTime\",\"Sys\"\n2019-08-01 09:15:54,132\n2019-07-31 11:39:59,126\n2019-07-31 11:38:07,128\n",
		"t,v\n5,1\n2,1\n2,3\n9,\n1,7\n",
		"t,v\n1,1\n1,1\n1,1\n",
		"t,v\n1700000000,1\n1700000000000,2\n1699999999,3\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		tab, err := ReadCSV(bytes.NewReader(in), ReadOptions{MaxLineBytes: 512})
		if err != nil || tab.Dim() != 1 {
			return
		}
		before := make([]string, tab.Rows())
		for i := range before {
			before[i] = string(tab.line(i))
		}
		origTimes := slices.Clone(tab.Times)
		back := tab.SortByTime()
		if !slices.IsSorted(tab.Times) {
			t.Fatalf("times not sorted: %v", tab.Times)
		}
		if (back > 0) != !slices.IsSorted(origTimes) {
			t.Fatalf("%d rows counted out of order for %v", back, origTimes)
		}
		after := make([]string, tab.Rows())
		for i := range after {
			after[i] = string(tab.line(i))
		}
		slices.Sort(before)
		slices.Sort(after)
		if !slices.Equal(before, after) {
			t.Fatalf("rows changed by the sort")
		}
		m, group := tab.mergeRepeated()
		if group != nil {
			for i := 1; i < m.Rows(); i++ {
				if m.Times[i] <= m.Times[i-1] {
					t.Fatalf("merged times not distinct and sorted: %v", m.Times)
				}
			}
			for g := range m.Rows() {
				sum, k := 0.0, 0
				for i, gi := range group {
					if gi == g {
						if tab.Times[i] != m.Times[g] {
							t.Fatalf("row %d merged into the point of another time", i)
						}
						if v := tab.Values[i]; !math.IsNaN(v) {
							sum += v
							k++
						}
					}
				}
				if k == 0 != math.IsNaN(m.Values[g]) || k > 0 && math.Abs(m.Values[g]-sum/float64(k)) > 1e-9*(1+math.Abs(sum)) {
					t.Fatalf("point %d: %g, want the mean of %d values %g", g, m.Values[g], k, sum/float64(k))
				}
			}
		}
		for _, method := range []string{"online", "timeshift"} {
			cfg, _ := ParseDetectConfig(method, nil)
			cols, err := Detect(cfg, tab)
			if err != nil {
				t.Fatalf("%s: %v", method, err)
			}
			for i, s := range cols[0].Values {
				if s < 0 || s > 1 {
					t.Fatalf("%s row %d: score %g", method, i, s)
				}
			}
			if len(cols[0].Values) != tab.Rows() {
				t.Fatalf("%s: %d scores for %d rows", method, len(cols[0].Values), tab.Rows())
			}
		}
	})
}
