package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Silence mutes alerts whose labels match all its matchers between StartsAt and EndsAt.
type Silence struct {
	ID        string    `json:"id"`
	Matchers  Matchers  `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// SilenceState is pending (starts later), active or expired at a given time.
func (s *Silence) State(now time.Time) string {
	switch {
	case now.Before(s.StartsAt):
		return "pending"
	case !now.Before(s.EndsAt):
		return "expired"
	}
	return "active"
}

// Errors of the silence store.
var (
	ErrSilenceNotFound = errors.New("silence not found")
	ErrInvalidSilence  = errors.New("invalid silence")
)

// SilencesOptions configures a Silences store.
type SilencesOptions struct {
	// KV persists silences (bucket "silences"); nil keeps them in memory only.
	KV jetstream.KeyValue
	// Retention is how long expired silences are listed before they are deleted (default 5 days).
	Retention time.Duration
	Now       func() time.Time
}

// Silences is the store of silences, cached in memory and kept in sync with its KV bucket
// (so silences created by the CLI against the bucket take effect in a running server).
type Silences struct {
	log  *slog.Logger
	opts SilencesOptions
	mu   sync.RWMutex
	m    map[string]*Silence

	cancel context.CancelFunc
	done   chan struct{}
}

// NewSilences loads the silences and starts watching the bucket; Close stops the watcher.
func NewSilences(ctx context.Context, log *slog.Logger, o SilencesOptions) (*Silences, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Retention == 0 {
		o.Retention = 5 * 24 * time.Hour
	}
	s := &Silences{log: log, opts: o, m: map[string]*Silence{}, done: make(chan struct{})}
	if o.KV == nil {
		close(s.done)
		s.cancel = func() {}
		return s, nil
	}
	wctx, cancel := context.WithCancel(context.Background())
	w, err := o.KV.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watching silences: %w", err)
	}
	s.cancel = cancel
	// Initial values end with a nil entry.
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				go s.watch(w)
				return s, nil
			}
			s.apply(e)
		case <-ctx.Done():
			cancel()
			_ = w.Stop()
			return nil, fmt.Errorf("loading silences: %w", ctx.Err())
		}
	}
}

func (s *Silences) watch(w jetstream.KeyWatcher) {
	defer close(s.done)
	defer w.Stop()
	for e := range w.Updates() {
		if e != nil {
			s.apply(e)
		}
	}
}

func (s *Silences) apply(e jetstream.KeyValueEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(s.m, e.Key())
		return
	}
	var sil Silence
	if err := json.Unmarshal(e.Value(), &sil); err != nil {
		s.log.Warn("skipping unreadable silence", "key", e.Key(), "err", err)
		return
	}
	s.m[e.Key()] = &sil
}

// Close stops the watcher and waits for it.
func (s *Silences) Close() {
	s.cancel()
	<-s.done
}

// Create validates and stores a silence; an empty ID gets a new one. It returns the ID.
func (s *Silences) Create(ctx context.Context, sil Silence) (string, error) {
	now := s.opts.Now()
	if len(sil.Matchers) == 0 {
		return "", fmt.Errorf("%w: at least one matcher required", ErrInvalidSilence)
	}
	for i := range sil.Matchers {
		if err := sil.Matchers[i].compile(); err != nil {
			return "", fmt.Errorf("%w: %v", ErrInvalidSilence, err)
		}
	}
	if sil.StartsAt.IsZero() {
		sil.StartsAt = now
	}
	if sil.EndsAt.IsZero() || !sil.EndsAt.After(sil.StartsAt) {
		return "", fmt.Errorf("%w: endsAt must be after startsAt", ErrInvalidSilence)
	}
	if !sil.EndsAt.After(now) {
		return "", fmt.Errorf("%w: endsAt is in the past", ErrInvalidSilence)
	}
	if sil.ID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		sil.ID = hex.EncodeToString(b[:])
	} else if strings.ContainsAny(sil.ID, ". */>") {
		return "", fmt.Errorf("%w: id %q", ErrInvalidSilence, sil.ID)
	}
	sil.UpdatedAt = now
	if err := s.put(ctx, &sil); err != nil {
		return "", err
	}
	return sil.ID, nil
}

func (s *Silences) put(ctx context.Context, sil *Silence) error {
	if s.opts.KV != nil {
		b, _ := json.Marshal(sil)
		if _, err := s.opts.KV.Put(ctx, sil.ID, b); err != nil {
			return fmt.Errorf("storing silence %s: %w", sil.ID, err)
		}
	}
	s.mu.Lock()
	s.m[sil.ID] = sil
	s.mu.Unlock()
	return nil
}

// Expire ends a silence now.
func (s *Silences) Expire(ctx context.Context, id string) error {
	s.mu.RLock()
	old, ok := s.m[id]
	s.mu.RUnlock()
	if !ok {
		return fmt.Errorf("expiring silence %s: %w", id, ErrSilenceNotFound)
	}
	sil := *old
	now := s.opts.Now()
	if sil.EndsAt.After(now) {
		sil.EndsAt = now
		if sil.StartsAt.After(now) {
			sil.StartsAt = now
		}
	}
	sil.UpdatedAt = now
	return s.put(ctx, &sil)
}

// List returns every silence, newest first; expired silences past retention are deleted.
func (s *Silences) List(ctx context.Context) []Silence {
	now := s.opts.Now()
	s.mu.RLock()
	out := make([]Silence, 0, len(s.m))
	var old []string
	for id, sil := range s.m {
		if now.Sub(sil.EndsAt) > s.opts.Retention {
			old = append(old, id)
			continue
		}
		out = append(out, *sil)
	}
	s.mu.RUnlock()
	for _, id := range old {
		if s.opts.KV != nil {
			_ = s.opts.KV.Delete(ctx, id)
		}
		s.mu.Lock()
		delete(s.m, id)
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Silence) int { return b.UpdatedAt.Compare(a.UpdatedAt) })
	return out
}

// Mutes reports whether an active silence matches the labels.
func (s *Silences) Mutes(labels map[string]string, now time.Time) bool {
	if s == nil {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, sil := range s.m {
		if sil.State(now) == "active" && sil.Matchers.Matches(labels) {
			return true
		}
	}
	return false
}
