package fhir

import (
	"net/url"
	"slices"
	"testing"
	"time"
)

func TestParseSearch(t *testing.T) {
	m := testMapper(t)
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		query    string
		subject  string
		kinds    []string
		from, to time.Time
		count    int
		status   int // of the refusal; 0 when accepted
	}{
		{query: "", count: DefaultCount},
		{query: "subject=Patient/p-1&_count=10&_offset=20", subject: "p-1", count: 10},
		{query: "patient=http://ehr.example/fhir/Patient/p-2", subject: "p-2", count: DefaultCount},
		{query: "code=http://loinc.org|8867-4,59408-5", kinds: []string{"heart_rate", "spo2"}, count: DefaultCount},
		{query: "code=9279-1", kinds: []string{}, count: DefaultCount},
		{query: "date=2026-11-23", from: day(23), to: day(24), count: DefaultCount},
		{query: "date=ge2026-11-02&date=lt2026-11-05", from: day(2), to: day(5), count: DefaultCount},
		{query: "date=gt2026-11-02&date=le2026-11-05", from: day(3), to: day(6), count: DefaultCount},
		{query: "date=ge2026-11-23T10:00:00%2B01:00", from: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC), count: DefaultCount},
		{query: "date=ge2026-11", from: day(1), count: DefaultCount},
		{query: "date=2026-11-23T10:00", status: 400},
		{query: "date=sa2026-11-23", status: 400},
		{query: "_count=0", status: 400},
		{query: "_count=1001", status: 400},
		{query: "_offset=-1", status: 400},
		{query: "subject=Group/x", status: 400},
		{query: "subject=a&patient=b", status: 400},
		{query: "value-quantity=gt100", status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			s, serr := m.ParseSearch(q)
			if tt.status != 0 {
				if serr == nil || serr.Status != tt.status {
					t.Fatalf("got %+v, %v; want status %d", s, serr, tt.status)
				}
				return
			}
			if serr != nil {
				t.Fatal(serr)
			}
			if s.Subject != tt.subject || !slices.Equal(s.Kinds, tt.kinds) || (tt.kinds == nil) != (s.Kinds == nil) ||
				!s.From.Equal(tt.from) || !s.To.Equal(tt.to) || s.Count != tt.count {
				t.Fatalf("got %+v", s)
			}
		})
	}
}

func FuzzParseSearch(f *testing.F) {
	for _, q := range []string{"subject=Patient/p-1&code=8867-4&date=ge2026-11-02&date=lt2026-11-05&_count=10&_offset=20",
		"patient=p&date=2026", "date=le2026-11-23T10:00:00.123Z", "code=http://loinc.org|85354-9,2708-6"} {
		f.Add(q)
	}
	m := testMapper(f)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		s, serr := m.ParseSearch(q)
		if serr != nil {
			if serr.Status != 400 || serr.Issue.Message == "" {
				t.Fatalf("refusal %+v", serr)
			}
			return
		}
		if s.Count < 1 || s.Count > MaxCount || s.Offset < 0 || s.Offset > MaxOffset {
			t.Fatalf("paging out of bounds: %+v", s)
		}
		if s.Subject != "" {
			if _, err := url.ParseQuery("subject=" + url.QueryEscape(s.Subject)); err != nil {
				t.Fatal(err)
			}
		}
	})
}
