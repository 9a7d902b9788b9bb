package notify

import (
	"context"
	"testing"
	"time"
)

func TestNamesSubject(t *testing.T) {
	for _, tc := range []struct {
		key, subject string
		want         bool
	}{
		{`0:{alertname="crisis",subject="a"}`, "a", true},
		{`0:{subject="a"}`, "a", true},
		{`0:{subject="a",zone="x"}`, "a", true},
		{`0:{alertname="crisis",subject="ab"}`, "a", false},
		{`0:{alertname="crisis",subject="b"}`, "a", false},
		{`0:{alertname="crisis"}`, "a", false},
		{`0:{alertname="subject=\"a\""}`, "a", false},
		{`0:{subject="a\"b"}`, `a"b`, true},
	} {
		if got := namesSubject(tc.key, tc.subject); got != tc.want {
			t.Errorf("namesSubject(%s, %q) = %v, want %v", tc.key, tc.subject, got, tc.want)
		}
	}
}

// The dispatcher forgets the subject's alerts, groups and log entries without telling
// receivers, and keeps the others'.
func TestDispatcherEraseSubject(t *testing.T) {
	ctx := context.Background()
	d := run(t, Options{}, nil)
	now := time.Now()
	d.Notify(ctx, []Alert{
		{Labels: map[string]string{"alertname": "crisis", "subject": "a", "device": "d1"}, StartsAt: now},
		{Labels: map[string]string{"alertname": "crisis", "subject": "b", "device": "d2"}, StartsAt: now},
	})
	d.mu.Lock()
	d.nflog["log\x000:{alertname=\"crisis\",subject=\"a\"}"] = nflogEntry{Receiver: "log", GroupKey: `0:{alertname="crisis",subject="a"}`}
	d.mu.Unlock()
	before, after, err := d.EraseSubject(ctx, "a", nil, true)
	if err != nil || before != 3 || after != 3 {
		t.Fatalf("dry run: %d %d %v", before, after, err)
	}
	before, after, err = d.EraseSubject(ctx, "a", nil, false)
	if err != nil || before != 3 || after != 0 {
		t.Fatalf("erase: %d %d %v", before, after, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.alerts) != 1 || len(d.groups) != 1 || len(d.nflog) != 0 {
		t.Errorf("left: %d alerts, %d groups, %d log entries; want b's alert and group", len(d.alerts), len(d.groups), len(d.nflog))
	}
	for _, a := range d.alerts {
		if a.Labels["subject"] != "b" {
			t.Errorf("kept %v", a.Labels)
		}
	}
}
