package rules

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/reading"
)

// eraseEngine is an engine with one rule whose state lives in a KV bucket, holding alerts,
// windows and last-seen times of subjects a and b.
func eraseEngine(t *testing.T) (*Engine, func() []string) {
	t.Helper()
	conn := startStream(t)
	state := kv(t, conn, "erase_alerts")
	e, err := NewEngine(context.Background(), discard(), nil, Options{Registry: registry(t), State: state, SeenInterval: time.Nanosecond,
		Rules: []Rule{
			{Name: "crisis", Kind: "blood_pressure", When: "systolic >= 180"},
			{Name: "fast", Kind: "heart_rate", When: "avg(bpm, 10m) > 150"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ctx := context.Background()
	e.mu.Lock()
	for _, r := range []reading.Reading{
		{Subject: "a", Device: "d1", Kind: "blood_pressure", Time: now, Values: map[string]float64{"systolic": 190, "diastolic": 90}},
		{Subject: "a", Device: "d2", Kind: "heart_rate", Time: now, Values: map[string]float64{"bpm": 170}},
		{Subject: "b", Device: "d3", Kind: "blood_pressure", Time: now, Values: map[string]float64{"systolic": 195, "diastolic": 90}},
	} {
		e.ev.observe(&r, now, true)
	}
	e.ev.takeTransitions()
	if err := e.persistLocked(ctx); err != nil {
		t.Fatal(err)
	}
	seen := e.snapshotSeenLocked(now)
	e.mu.Unlock()
	e.saveSeen(ctx, seen)
	// keys lists the subjects named in the bucket, one entry per alert or last-seen entry.
	keys := func() []string {
		var out []string
		if err := eachKey(ctx, state, func(key string, v []byte) error {
			if key[0] == 'a' {
				var a Alert
				json.Unmarshal(v, &a)
				out = append(out, a.Subject)
				return nil
			}
			var sh []Seen
			json.Unmarshal(v, &sh)
			for _, s := range sh {
				out = append(out, s.Subject)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	return e, keys
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

func TestEngineEraseSubject(t *testing.T) {
	ctx := context.Background()
	e, keys := eraseEngine(t)
	// a: 2 alerts (crisis, fast), 2 last-seen entries; b: 1 alert, 1 last-seen.
	if k := keys(); countOf(k, "a") != 4 || countOf(k, "b") != 2 {
		t.Fatalf("bucket before: %v", k)
	}
	before, after, labels, err := e.EraseSubject(ctx, "a", true)
	if err != nil || before != after || before < 5 || len(labels) != 2 { // 2 alerts, ≥1 window, 2 last-seen
		t.Fatalf("dry run: %d %d %v %v", before, after, labels, err)
	}
	if countOf(keys(), "a") != 4 {
		t.Fatal("the dry run changed the bucket")
	}
	before, after, labels, err = e.EraseSubject(ctx, "a", false)
	if err != nil || before < 5 || after != 0 || len(labels) != 2 || labels[0]["subject"] != "a" {
		t.Fatalf("erase: %d %d %v %v", before, after, labels, err)
	}
	if k := keys(); countOf(k, "a") != 0 || countOf(k, "b") != 2 {
		t.Errorf("bucket after: %v", k)
	}
	for _, a := range e.Alerts("") {
		if a.Subject == "a" {
			t.Errorf("alert of a still listed: %+v", a)
		}
	}
	if len(e.Alerts("")) != 1 {
		t.Errorf("b's alert is gone: %+v", e.Alerts(""))
	}
	// A tick must not bring anything of a back.
	e.Tick(ctx)
	if countOf(keys(), "a") != 0 {
		t.Error("the engine wrote a's state back")
	}
}

func TestEraseSubjectStateWithoutEngine(t *testing.T) {
	ctx := context.Background()
	e, keys := eraseEngine(t)
	alerts, seen, err := SubjectState(ctx, e.opts.State, "a")
	if err != nil || len(alerts) != 2 || seen != 2 {
		t.Fatalf("SubjectState: %d alerts, %d seen, %v", len(alerts), seen, err)
	}
	if err := EraseSubjectState(ctx, e.opts.State, "a"); err != nil {
		t.Fatal(err)
	}
	if k := keys(); countOf(k, "a") != 0 || countOf(k, "b") != 2 {
		t.Errorf("bucket after: %v", k)
	}
	// An engine started on the bucket restores only b.
	e2, err := NewEngine(ctx, discard(), nil, Options{Registry: registry(t), State: e.opts.State, Rules: e.opts.Rules})
	if err != nil {
		t.Fatal(err)
	}
	if as := e2.Alerts(""); len(as) != 1 || as[0].Subject != "b" {
		t.Errorf("restored alerts %+v", as)
	}
}

// The notification log: entries whose group names the subject go; entries of groups that
// do not (grouped by alertname only) lose the subject's fingerprints.
func TestEraseNotificationLog(t *testing.T) {
	ctx := context.Background()
	conn := startStream(t)
	log := kv(t, conn, "erase_nflog")
	fpA := notify.FingerprintOf(map[string]string{"alertname": "crisis", "subject": "a"})
	fpB := notify.FingerprintOf(map[string]string{"alertname": "crisis", "subject": "b"})
	put := func(key, group string, firing ...notify.Fingerprint) {
		var fs []string
		for _, f := range firing {
			fs = append(fs, f.String())
		}
		b, _ := json.Marshal(map[string]any{"receiver": "pager", "group_key": group, "firing": fs, "at": time.Now()})
		if _, err := log.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	put("k1", `0:{alertname="crisis",subject="a"}`, fpA)
	put("k2", `0:{alertname="crisis",subject="b"}`, fpB)
	put("k3", `0:{alertname="crisis"}`, fpA, fpB)
	put("k4", `0:{alertname="crisis",subject="ab"}`, fpB)
	put("k5", `0:{alertname="fast"}`, fpA)
	before, after, err := notify.EraseLog(ctx, log, "a", []notify.Fingerprint{fpA}, false)
	if err != nil || before != 3 || after != 0 {
		t.Fatalf("EraseLog: %d %d %v", before, after, err)
	}
	for key, want := range map[string]string{"k1": "", "k2": fpB.String(), "k3": fpB.String(), "k4": fpB.String(), "k5": ""} {
		ent, err := log.Get(ctx, key)
		if want == "" {
			if err == nil {
				t.Errorf("%s kept: %s", key, ent.Value())
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		var e struct{ Firing []string }
		json.Unmarshal(ent.Value(), &e)
		if len(e.Firing) != 1 || e.Firing[0] != want {
			t.Errorf("%s firing %v, want [%s]", key, e.Firing, want)
		}
	}
}

// Silences that mute only the subject go; those that also match others stay.
func TestEraseSilences(t *testing.T) {
	ctx := context.Background()
	conn := startStream(t)
	sil, err := notify.NewSilences(ctx, discard(), notify.SilencesOptions{KV: kv(t, conn, "erase_silences")})
	if err != nil {
		t.Fatal(err)
	}
	defer sil.Close()
	mk := func(ms ...string) string {
		var matchers notify.Matchers
		for _, s := range ms {
			m, err := notify.ParseMatcher(s)
			if err != nil {
				t.Fatal(err)
			}
			matchers = append(matchers, m)
		}
		id, err := sil.Create(ctx, notify.Silence{Matchers: matchers, EndsAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	only := mk(`subject="a"`)
	onlyDevice := mk(`subject="a"`, `device="d1"`)
	regex := mk(`subject=~"a|b"`)
	other := mk(`subject="b"`)
	before, after, kept, err := sil.EraseSubject(ctx, "a", false)
	if err != nil || before != 2 || after != 0 || kept != 1 {
		t.Fatalf("EraseSubject: %d %d %d %v", before, after, kept, err)
	}
	ids := map[string]bool{}
	for _, s := range sil.List(ctx) {
		ids[s.ID] = true
	}
	if ids[only] || ids[onlyDevice] || !ids[regex] || !ids[other] {
		t.Errorf("silences after erase: %v", ids)
	}
	// Another process on the bucket sees the same.
	sil2, err := notify.NewSilences(ctx, discard(), notify.SilencesOptions{KV: kv(t, conn, "erase_silences")})
	if err != nil {
		t.Fatal(err)
	}
	defer sil2.Close()
	if n := len(sil2.List(ctx)); n != 2 {
		t.Errorf("a new reader of the bucket sees %d silences, want 2", n)
	}
}
