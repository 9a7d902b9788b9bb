package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Erasure (right to erasure, `pulselake erase`). The engine keeps three things per subject:
// alerts (memory and the alert-state bucket, key "a.<hash of rule, subject, device>"),
// reading windows of the aggregate functions (memory only) and device last-seen times
// (memory and the bucket's "s.NN" shards). EraseSubject removes all three from a running
// engine; EraseSubjectState removes what the bucket holds when no engine runs.

// EraseSubject removes the subject's alerts, windows and last-seen times from the engine and
// its bucket, without notifying anyone (a resolved notice would name the subject again).
// It returns how many items the engine held before and after, and the labels of the removed
// alerts (they identify the notifications sent about them). With dryRun it only counts.
func (e *Engine) EraseSubject(ctx context.Context, subject string, dryRun bool) (before, after int, labels []map[string]string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	count := func() int {
		n := 0
		for k := range e.ev.alerts {
			if k.Subject == subject {
				n++
			}
		}
		for k := range e.ev.series {
			if k.subject == subject {
				n++
			}
		}
		for k := range e.ev.seen {
			if k.subject == subject {
				n++
			}
		}
		return n
	}
	before = count()
	for k, a := range e.ev.alerts {
		if k.Subject == subject {
			labels = append(labels, a.Labels)
		}
	}
	if dryRun {
		return before, before, labels, nil
	}
	shards := map[int]bool{}
	for k := range e.ev.alerts {
		if k.Subject != subject {
			continue
		}
		delete(e.ev.alerts, k)
		delete(e.ev.dirty, k)
		if e.opts.State != nil {
			if err := purge(ctx, e.opts.State, k.ID()); err != nil {
				return before, count(), labels, fmt.Errorf("deleting alert state of %s/%s: %w", k.Rule, k.Device, err)
			}
		}
	}
	for k := range e.ev.series {
		if k.subject == subject {
			delete(e.ev.series, k)
		}
	}
	for k := range e.ev.seen {
		if k.subject == subject {
			delete(e.ev.seen, k)
			shards[shardOf(k)] = true
		}
	}
	e.ev.out = dropTransitions(e.ev.out, subject)
	if e.opts.State != nil && len(shards) > 0 {
		// Rewrite the shards that named the subject from what is left in memory.
		all := make([][]Seen, seenShards)
		for k, sn := range e.ev.seen {
			all[shardOf(k)] = append(all[shardOf(k)], *sn)
		}
		for i := range shards {
			if err := putShard(ctx, e.opts.State, i, all[i]); err != nil {
				return before, count(), labels, err
			}
		}
	}
	return before, count(), labels, nil
}

func dropTransitions(ts []Transition, subject string) []Transition {
	out := ts[:0]
	for _, t := range ts {
		if t.Alert.Subject != subject {
			out = append(out, t)
		}
	}
	return out
}

// SubjectState reads what the alert-state bucket holds of subject: its alerts and the number
// of device last-seen entries naming it.
func SubjectState(ctx context.Context, kv jetstream.KeyValue, subject string) (alerts []Alert, seen int, err error) {
	err = eachKey(ctx, kv, func(key string, value []byte) error {
		switch {
		case strings.HasPrefix(key, "a."):
			var a Alert
			if json.Unmarshal(value, &a) == nil && a.Subject == subject {
				alerts = append(alerts, a)
			}
		case strings.HasPrefix(key, "s."):
			var shard []Seen
			if json.Unmarshal(value, &shard) == nil {
				for _, s := range shard {
					if s.Subject == subject {
						seen++
					}
				}
			}
		}
		return nil
	})
	return alerts, seen, err
}

// EraseSubjectState removes the subject's alerts and last-seen entries from the alert-state
// bucket (every revision: the key is purged). Use it when no engine runs on the bucket; a
// running engine would write its own state back (use Engine.EraseSubject there).
func EraseSubjectState(ctx context.Context, kv jetstream.KeyValue, subject string) error {
	return eachKey(ctx, kv, func(key string, value []byte) error {
		switch {
		case strings.HasPrefix(key, "a."):
			var a Alert
			if json.Unmarshal(value, &a) == nil && a.Subject == subject {
				return purge(ctx, kv, key)
			}
		case strings.HasPrefix(key, "s."):
			var shard []Seen
			if json.Unmarshal(value, &shard) != nil {
				return nil
			}
			kept := shard[:0]
			for _, s := range shard {
				if s.Subject != subject {
					kept = append(kept, s)
				}
			}
			if len(kept) == len(shard) {
				return nil
			}
			if len(kept) == 0 {
				return purge(ctx, kv, key)
			}
			b, _ := json.Marshal(kept)
			if _, err := kv.Put(ctx, key, b); err != nil {
				return fmt.Errorf("rewriting %s: %w", key, err)
			}
		}
		return nil
	})
}

func putShard(ctx context.Context, kv jetstream.KeyValue, i int, sh []Seen) error {
	key := fmt.Sprintf("s.%02d", i)
	if len(sh) == 0 {
		return purge(ctx, kv, key)
	}
	b, _ := json.Marshal(sh)
	if _, err := kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("rewriting device last-seen times %s: %w", key, err)
	}
	return nil
}

// purge removes every revision of key (a plain delete would leave older revisions in a
// bucket that keeps history).
func purge(ctx context.Context, kv jetstream.KeyValue, key string) error {
	if err := kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("purging %s: %w", key, err)
	}
	return nil
}

func eachKey(ctx context.Context, kv jetstream.KeyValue, fn func(key string, value []byte) error) error {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return fmt.Errorf("listing alert state: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		ent, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading alert state %s: %w", k, err)
		}
		if err := fn(k, ent.Value()); err != nil {
			return err
		}
	}
	return nil
}
