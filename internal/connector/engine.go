package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"
)

// Timing is a provider's sync timing (config connectors.<provider>).
type Timing struct {
	Every         time.Duration // pull interval in serve
	InitialWindow time.Duration // first pull reaches back this far
	Lookback      time.Duration // re-pulled before the cursor
	MaxRetries    int           // per request
}

// Ingest stores readings (wire format v1) from source durably in the stream and returns
// when they are acknowledged; rejected ones are kept in quarantine by the ingest path.
type Ingest func(ctx context.Context, source string, readings []json.RawMessage) error

// RunRecord is one row of ops.connector_runs: one data type of one connection in one pull.
type RunRecord struct {
	Subject, Provider, DataType string
	WindowStart, WindowEnd      time.Time // what was pulled (end = where it stopped)
	Points, Pages               int
	Duration                    time.Duration
	Err                         string
}

// Progress reports a pull's advance, window by window.
type Progress struct {
	Connection      Connection
	DataType        string
	Window, Windows int // windows done, windows planned
	Points          int // points so far in this data type
	Done            bool
	Err             error
}

// EngineOptions configures an Engine.
type EngineOptions struct {
	Manager *Manager
	Timing  map[string]Timing // by provider
	Ingest  Ingest
	// Record receives a row per data type and pull (nil: none).
	Record func(RunRecord)
	// Base is the transport under the rate limit and retries (default http.DefaultTransport).
	Base http.RoundTripper
	// RequestTimeout bounds one HTTP request with its body (default 2m).
	RequestTimeout time.Duration
	Now            func() time.Time
}

// Engine pulls connections' data types window by window (see the package comment).
type Engine struct {
	log *slog.Logger
	o   EngineOptions
	m   engineMetrics

	mu       sync.Mutex
	limiters map[string]*rate.Limiter // provider or provider/subject
	wake     map[string]chan struct{} // by provider: pull now (a new connection)
}

type engineMetrics struct {
	requests    *prometheus.CounterVec
	retries     *prometheus.CounterVec
	points      *prometheus.CounterVec
	errors      *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
}

// NewEngine returns an Engine; its metrics are registered with reg.
func NewEngine(log *slog.Logger, reg prometheus.Registerer, o EngineOptions) (*Engine, error) {
	if o.Manager == nil || o.Ingest == nil {
		return nil, errors.New("connector engine: a manager and an ingest function are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 2 * time.Minute
	}
	e := &Engine{log: log, o: o, limiters: map[string]*rate.Limiter{}, wake: map[string]chan struct{}{}, m: engineMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_connector_requests_total",
			Help: "HTTP requests to wearable clouds by provider and response status (0: failed in transit)."}, []string{"provider", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_connector_retries_total",
			Help: "Requests to wearable clouds retried (429, 503, 504, transport errors)."}, []string{"provider"}),
		points: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_connector_points_total",
			Help: "Points pulled from wearable clouds and stored in the stream, by provider and data type."}, []string{"provider", "type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_connector_errors_total",
			Help: "Pulls of a data type that failed, by provider."}, []string{"provider"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pulselake_connector_last_success_timestamp_seconds",
			Help: "When a pull of the provider last finished without error (Unix time)."}, []string{"provider"}),
	}}
	for _, name := range o.Manager.Providers() {
		e.wake[name] = make(chan struct{}, 1)
	}
	for _, c := range []prometheus.Collector{e.m.requests, e.m.retries, e.m.points, e.m.errors, e.m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering connector metrics: %w", err)
		}
	}
	return e, nil
}

func (e *Engine) timing(provider string) Timing {
	t := e.o.Timing[provider]
	if t.Every <= 0 {
		t.Every = 15 * time.Minute
	}
	if t.InitialWindow <= 0 {
		t.InitialWindow = 30 * 24 * time.Hour
	}
	return t
}

// limiter returns the token bucket of a provider's app, or of one of its users.
func (e *Engine) limiter(p Provider, subject string) *rate.Limiter {
	n, perUser := p.RequestsPerMinute()
	key := p.Name()
	if perUser {
		key += "\x00" + subject
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	l, ok := e.limiters[key]
	if !ok {
		l = newLimiter(n)
		e.limiters[key] = l
	}
	return l
}

// SyncOptions narrows a pull.
type SyncOptions struct {
	Subject  string        // only this subject's connection ("" all)
	Since    time.Duration // pull from now − Since instead of from the cursor (0: the cursor)
	Progress func(Progress)
}

// Summary is the outcome of pulling one provider.
type Summary struct {
	Connections int
	Points      int
	Pages       int
	Errors      []error // one per failed connection or data type
}

// Sync pulls every ok connection of provider (or the one of o.Subject) once. A connection
// that fails is reported in Summary.Errors; the others go on. The error is for the provider
// as a whole (unknown, connections unreadable) or when ctx ended.
func (e *Engine) Sync(ctx context.Context, provider string, o SyncOptions) (Summary, error) {
	var sum Summary
	p, err := e.o.Manager.Provider(provider)
	if err != nil {
		return sum, err
	}
	all, err := e.o.Manager.List(ctx)
	if err != nil {
		return sum, err
	}
	found := false
	for _, c := range all {
		if c.Provider != provider || (o.Subject != "" && c.Subject != o.Subject) {
			continue
		}
		found = true
		if c.Status == StatusNeedsConsent {
			sum.Errors = append(sum.Errors, fmt.Errorf("%s %s: %w", provider, c.Subject, ErrNeedsConsent))
			continue
		}
		sum.Connections++
		pts, pages, errs := e.syncConnection(ctx, p, c, o)
		sum.Points += pts
		sum.Pages += pages
		sum.Errors = append(sum.Errors, errs...)
		if ctx.Err() != nil {
			return sum, ctx.Err()
		}
	}
	if !found && o.Subject != "" {
		return sum, fmt.Errorf("%w for subject %q at %s; connect it with pulselake connect %s --subject %s", ErrNotFound, o.Subject, provider, provider, o.Subject)
	}
	if len(sum.Errors) == 0 {
		e.m.lastSuccess.WithLabelValues(provider).Set(float64(e.o.Now().Unix()))
	}
	return sum, nil
}

// syncConnection pulls each data type of one connection.
func (e *Engine) syncConnection(ctx context.Context, p Provider, c Connection, o SyncOptions) (points, pages int, errs []error) {
	tok, err := e.o.Manager.token(ctx, c.ID)
	if err != nil {
		e.fail(ctx, c, err)
		return 0, 0, []error{fmt.Errorf("%s %s: %w", c.Provider, c.Subject, err)}
	}
	t := e.timing(c.Provider)
	src := oauth2.ReuseTokenSource(tok, &savingSource{m: e.o.Manager, id: c.ID, src: p.TokenSource(ctx, tok), last: tok.AccessToken})
	tr := &Transport{Base: e.o.Base, Limiter: e.limiter(p, c.Subject), MaxRetries: t.MaxRetries,
		OnAttempt: func(status int, retry bool) {
			e.m.requests.WithLabelValues(c.Provider, fmt.Sprint(status)).Inc()
			if retry {
				e.m.retries.WithLabelValues(c.Provider).Inc()
			}
		}}
	hc := &http.Client{Transport: &oauth2.Transport{Source: src, Base: tr}, Timeout: e.o.RequestTimeout}
	types := c.DataTypes
	if len(types) == 0 {
		types = e.o.Manager.dataTypes(p)
	}
	var firstErr error
	for _, dt := range types {
		n, pg, err := e.syncType(ctx, p, hc, c, dt, t, o)
		points += n
		pages += pg
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return points, pages, append(errs, ctx.Err())
		}
		e.m.errors.WithLabelValues(c.Provider).Inc()
		if !IsInvalidGrant(err) && tr.unauthorized.Swap(false) {
			// The API refused a live access token (a grant revoked at the provider revokes
			// its access tokens too): a refresh tells whether the grant still stands.
			err = e.refresh(ctx, p, c, err)
		}
		if IsInvalidGrant(err) {
			e.log.Warn("the provider refused the refresh token; the connection needs consent again", "id", c.ID, "provider", c.Provider, "subject", c.Subject)
			if _, serr := e.o.Manager.setStatus(ctx, c.ID, StatusNeedsConsent, ErrNeedsConsent); serr != nil {
				e.log.Error("recording connection status", "id", c.ID, "err", serr)
			}
			return points, pages, append(errs, fmt.Errorf("%s %s: %w", c.Provider, c.Subject, ErrNeedsConsent))
		}
		e.log.Warn("pull failed", "id", c.ID, "provider", c.Provider, "subject", c.Subject, "type", dt, "err", err)
		errs = append(errs, fmt.Errorf("%s %s %s: %w", c.Provider, c.Subject, dt, err))
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", dt, err)
		}
	}
	status := StatusOK
	if firstErr != nil {
		status = StatusError
	}
	if _, err := e.o.Manager.setStatus(ctx, c.ID, status, firstErr); err != nil && !errors.Is(err, ErrNotFound) {
		e.log.Error("recording connection status", "id", c.ID, "err", err)
	}
	return points, pages, errs
}

// refresh gets a new access token after the API refused one; it returns the refresh's error
// (invalid_grant when the grant is gone), else the pull's error.
func (e *Engine) refresh(ctx context.Context, p Provider, c Connection, pullErr error) error {
	tok, err := e.o.Manager.token(ctx, c.ID)
	if err != nil {
		return pullErr
	}
	expired := *tok
	expired.AccessToken, expired.Expiry = "", time.Unix(1, 0)
	t, err := p.TokenSource(ctx, &expired).Token()
	if err != nil {
		return err
	}
	if err := e.o.Manager.saveToken(ctx, c.ID, t); err != nil {
		return err
	}
	return pullErr
}

func (e *Engine) fail(ctx context.Context, c Connection, err error) {
	e.m.errors.WithLabelValues(c.Provider).Inc()
	if _, serr := e.o.Manager.setStatus(ctx, c.ID, StatusError, err); serr != nil {
		e.log.Error("recording connection status", "id", c.ID, "err", serr)
	}
}

// plan is the range a pull of one data type covers.
func plan(cur Cursor, now time.Time, t Timing, since time.Duration) (start time.Time) {
	switch {
	case since > 0:
		return now.Add(-since)
	case !cur.Resume.IsZero():
		return cur.Resume
	case !cur.Until.IsZero():
		return cur.Until.Add(-t.Lookback)
	default:
		return now.Add(-t.InitialWindow)
	}
}

// syncType pulls one data type from its cursor to now, window by window; the cursor moves
// after each window's readings were acknowledged by the stream.
func (e *Engine) syncType(ctx context.Context, p Provider, hc *http.Client, c Connection, dt string, t Timing, o SyncOptions) (points, pages int, err error) {
	began := time.Now()
	cur, err := e.o.Manager.Cursor(ctx, c.ID, dt)
	if err != nil {
		return 0, 0, err
	}
	end := e.o.Now().UTC().Truncate(time.Second)
	start := plan(cur, end, t, o.Since).UTC()
	w := windowOf(p, dt)
	windows := 0
	if end.After(start) {
		windows = int((end.Sub(start) + w - 1) / w)
	}
	rec := RunRecord{Subject: c.Subject, Provider: c.Provider, DataType: dt, WindowStart: start, WindowEnd: start}
	defer func() {
		rec.Points, rec.Pages, rec.Duration = points, pages, time.Since(began)
		if err != nil {
			rec.Err = err.Error()
		}
		if e.o.Record != nil {
			e.o.Record(rec)
		}
		if o.Progress != nil {
			o.Progress(Progress{Connection: c, DataType: dt, Window: windows, Windows: windows, Points: points, Done: true, Err: err})
		}
	}()
	source := p.Name()
	for i, s := 0, start; s.Before(end); i++ {
		we := s.Add(w)
		if we.After(end) {
			we = end
		}
		n := 0
		pg, err := p.Pull(ctx, hc, c.Subject, dt, s, we, func(rs []json.RawMessage) error {
			if len(rs) == 0 {
				return nil
			}
			if err := e.o.Ingest(ctx, source, rs); err != nil {
				return fmt.Errorf("storing %d readings: %w", len(rs), err)
			}
			n += len(rs)
			e.m.points.WithLabelValues(c.Provider, dt).Add(float64(len(rs)))
			return nil
		})
		points += n
		pages += pg
		if err != nil {
			return points, pages, fmt.Errorf("pulling %s from %s to %s: %w", dt, s.Format(time.RFC3339), we.Format(time.RFC3339), err)
		}
		// Every reading of the window is stored: move the cursor past it.
		if we.After(cur.Until) {
			cur.Until = we
		}
		cur.Resume = time.Time{}
		if we.Before(end) {
			cur.Resume = we
		}
		if err := e.o.Manager.setCursor(ctx, c.ID, dt, cur); err != nil {
			return points, pages, err
		}
		rec.WindowEnd = we
		if o.Progress != nil && we.Before(end) {
			o.Progress(Progress{Connection: c, DataType: dt, Window: i + 1, Windows: windows, Points: points})
		}
		s = we
	}
	return points, pages, nil
}

// Run pulls every provider now and then every Timing.Every until ctx ends, one goroutine per
// provider (one provider's slowness or failure never holds up another); it returns after
// they stopped.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, name := range e.o.Manager.Providers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			every := e.timing(name).Every
			for {
				sum, err := e.Sync(ctx, name, SyncOptions{})
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					e.log.Error("pull failed", "provider", name, "err", err)
				} else if sum.Connections > 0 {
					e.log.Info("pulled", "provider", name, "connections", sum.Connections, "points", sum.Points, "pages", sum.Pages, "errors", len(sum.Errors))
				}
				t := time.NewTimer(every)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				case <-e.wake[name]:
					t.Stop()
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// Wake makes Run pull provider now rather than at its next interval (a new connection).
func (e *Engine) Wake(provider string) {
	select {
	case e.wake[provider] <- struct{}{}:
	default: // a pull is already due
	}
}

// saveTimeout bounds sealing a refreshed token.
const saveTimeout = 10 * time.Second

// savingSource seals a refreshed token (providers may rotate the refresh token) before
// handing it on.
type savingSource struct {
	m    *Manager
	id   string
	src  oauth2.TokenSource
	mu   sync.Mutex
	last string
}

func (s *savingSource) Token() (*oauth2.Token, error) {
	t, err := s.src.Token()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.AccessToken != s.last {
		// oauth2.TokenSource passes no context; the store's write is bounded here.
		ctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
		defer cancel()
		if err := s.m.saveToken(ctx, s.id, t); err != nil {
			return nil, fmt.Errorf("keeping the refreshed token: %w", err)
		}
		s.last = t.AccessToken
	}
	return t, nil
}
