package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Erasure (right to erasure, `pulselake erase`). The pipeline keeps, per subject: alerts and
// their groups (memory), the notification log (memory and its bucket: the group key names
// the subject when alerts are grouped by it, and each entry lists the fingerprints of the
// alerts notified as firing), and silences whose matchers name the subject.

// SubjectLabel is the alert label that carries the subject.
const SubjectLabel = "subject"

// namesSubject reports whether a group key (route id and group labels, as built by the
// dispatcher) has the label subject="<subject>".
func namesSubject(groupKey, subject string) bool {
	l := SubjectLabel + "=" + strconv.Quote(subject)
	for _, pre := range []string{"{", ","} {
		for _, post := range []string{",", "}"} {
			if strings.Contains(groupKey, pre+l+post) {
				return true
			}
		}
	}
	return false
}

// logKey is the bucket key of a notification log entry (Dispatcher.record).
func logKey(receiver, groupKey string) string {
	sum := sha256.Sum256([]byte(receiver + "\x00" + groupKey))
	return hex.EncodeToString(sum[:16])
}

// eraseEntry decides what erasing subject does to a log entry: drop it (its group names the
// subject, or nothing else is left in it), rewrite it without the subject's fingerprints,
// or leave it.
func eraseEntry(e nflogEntry, subject string, fps map[string]bool) (drop, rewrite bool, kept nflogEntry) {
	if namesSubject(e.GroupKey, subject) {
		return true, false, e
	}
	kept = e
	kept.Firing = slices.DeleteFunc(slices.Clone(e.Firing), func(fp string) bool { return fps[fp] })
	if len(kept.Firing) == len(e.Firing) {
		return false, false, e
	}
	if len(kept.Firing) == 0 {
		return true, false, e
	}
	return false, true, kept
}

// EraseSubject removes the subject's alerts from the pipeline (no notice is sent about
// them), its groups, and the notification log entries about it, from memory and the log's
// bucket. fingerprints names further alerts of the subject (ones the pipeline no longer
// holds, e.g. from the alert-state bucket). It returns how many items it held before and
// after. With dryRun it only counts.
func (d *Dispatcher) EraseSubject(ctx context.Context, subject string, fingerprints []Fingerprint, dryRun bool) (before, after int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fps := map[string]bool{}
	for _, fp := range fingerprints {
		fps[fp.String()] = true
	}
	for fp, a := range d.alerts {
		if a.Labels[SubjectLabel] == subject {
			fps[fp.String()] = true
		}
	}
	count := func() int {
		n := 0
		for _, a := range d.alerts {
			if a.Labels[SubjectLabel] == subject {
				n++
			}
		}
		for _, g := range d.groups {
			if g.labels[SubjectLabel] == subject {
				n++
			}
		}
		for _, e := range d.nflog {
			if drop, rewrite, _ := eraseEntry(e, subject, fps); drop || rewrite {
				n++
			}
		}
		return n
	}
	before = count()
	if dryRun {
		return before, before, nil
	}
	for fp, a := range d.alerts {
		if a.Labels[SubjectLabel] == subject {
			delete(d.alerts, fp)
		}
	}
	for key, g := range d.groups {
		for fp := range g.alerts {
			if fps[fp.String()] {
				delete(g.alerts, fp)
			}
		}
		if g.labels[SubjectLabel] == subject || len(g.alerts) == 0 {
			delete(d.groups, key)
		}
	}
	for nk, e := range d.nflog {
		drop, rewrite, kept := eraseEntry(e, subject, fps)
		switch {
		case drop:
			delete(d.nflog, nk)
		case rewrite:
			d.nflog[nk] = kept
		}
	}
	if d.opts.Log != nil {
		if _, _, err := EraseLog(ctx, d.opts.Log, subject, fingerprintsOf(fps), false); err != nil {
			return before, count(), err
		}
	}
	return before, count(), nil
}

func fingerprintsOf(m map[string]bool) []Fingerprint {
	var out []Fingerprint
	for s := range m {
		var fp Fingerprint
		if b, err := hex.DecodeString(s); err == nil && len(b) == len(fp) {
			copy(fp[:], b)
			out = append(out, fp)
		}
	}
	return out
}

// EraseLog removes from a notification log bucket the entries about subject: those whose
// group names it are purged, those listing one of fingerprints lose them. It returns the
// entries about the subject before and after. Use it directly when no dispatcher runs on
// the bucket (Dispatcher.EraseSubject calls it too).
func EraseLog(ctx context.Context, kv jetstream.KeyValue, subject string, fingerprints []Fingerprint, dryRun bool) (before, after int, err error) {
	fps := map[string]bool{}
	for _, fp := range fingerprints {
		fps[fp.String()] = true
	}
	pass := func(change bool) (int, error) {
		lister, err := kv.ListKeys(ctx)
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("listing the notification log: %w", err)
		}
		var keys []string
		for k := range lister.Keys() {
			keys = append(keys, k)
		}
		n := 0
		for _, k := range keys {
			ent, err := kv.Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return n, fmt.Errorf("reading the notification log: %w", err)
			}
			var e nflogEntry
			if json.Unmarshal(ent.Value(), &e) != nil {
				continue
			}
			drop, rewrite, kept := eraseEntry(e, subject, fps)
			if !drop && !rewrite {
				continue
			}
			n++
			if !change {
				continue
			}
			if drop {
				if err := kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
					return n, fmt.Errorf("purging a notification log entry: %w", err)
				}
				continue
			}
			b, _ := json.Marshal(kept)
			if _, err := kv.Put(ctx, k, b); err != nil {
				return n, fmt.Errorf("rewriting a notification log entry: %w", err)
			}
		}
		return n, nil
	}
	if before, err = pass(!dryRun); err != nil {
		return before, before, err
	}
	if dryRun {
		return before, before, nil
	}
	after, err = pass(false)
	return before, after, err
}

// silenceOnly reports whether a silence names subject in an equality matcher on the
// subject label: it then mutes only the subject's alerts. Silences that could also match
// other subjects (a regular expression, a negation) are kept.
func silenceOnly(s *Silence, subject string) bool {
	for _, m := range s.Matchers {
		if m.Name == SubjectLabel && m.IsEqual && !m.IsRegex && m.Value == subject {
			return true
		}
	}
	return false
}

// silenceMentions reports whether a silence's matchers contain the subject's name at all.
func silenceMentions(s *Silence, subject string) bool {
	return slices.ContainsFunc(s.Matchers, func(m Matcher) bool { return strings.Contains(m.Value, subject) })
}

// EraseSubject ends and deletes (every revision) the silences that mute only the
// subject's alerts. It returns how many such silences there were before and after, and how
// many other silences still name the subject in a matcher that also matches other subjects
// (they are kept: deleting them would unmute others). With dryRun it only counts.
func (s *Silences) EraseSubject(ctx context.Context, subject string, dryRun bool) (before, after, kept int, err error) {
	count := func() (only, other int) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		for _, sil := range s.m {
			switch {
			case silenceOnly(sil, subject):
				only++
			case silenceMentions(sil, subject):
				other++
			}
		}
		return only, other
	}
	before, kept = count()
	if dryRun {
		return before, before, kept, nil
	}
	s.mu.RLock()
	var ids []string
	for id, sil := range s.m {
		if silenceOnly(sil, subject) {
			ids = append(ids, id)
		}
	}
	s.mu.RUnlock()
	for _, id := range ids {
		// Purging every revision ends the silence everywhere at once (each process drops
		// it from its watch); an expiry written first would be one more copy to delete.
		if s.opts.KV != nil {
			if err := s.opts.KV.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return before, before, kept, fmt.Errorf("deleting silence %s: %w", id, err)
			}
		}
		s.mu.Lock()
		delete(s.m, id)
		s.mu.Unlock()
	}
	after, kept = count()
	return before, after, kept, nil
}
