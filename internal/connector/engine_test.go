package connector

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/pulselake/pulselake/internal/secret"
	"github.com/pulselake/pulselake/internal/stream"
)

// testProvider plays a wearable cloud from a fixed set of points, one a minute, served from
// an httptest API (so requests go through the engine's transport and the OAuth transport).
// The access token is "access-N"; a refresh with a revoked grant fails with invalid_grant.
type testProvider struct {
	api      *httptest.Server
	pageSize int
	mu       sync.Mutex
	points   map[string][]time.Time // subject → point times
	windows  [][2]time.Time         // windows pulled, in order
	revoked  bool                   // refresh answers invalid_grant
	fail     map[string]bool        // subjects whose API calls answer 500
	deny     bool                   // the API answers 401 (the grant was revoked)
}

func newTestProvider(t *testing.T) *testProvider {
	p := &testProvider{pageSize: 500, points: map[string][]time.Time{}, fail: map[string]bool{}}
	p.api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		p.mu.Lock()
		fail := p.fail[r.URL.Query().Get("subject")]
		p.mu.Unlock()
		if fail {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		p.mu.Lock()
		deny := p.deny
		p.mu.Unlock()
		if deny {
			http.Error(w, "token revoked", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(p.api.Close)
	return p
}

func (p *testProvider) Name() string                   { return "test-cloud" }
func (p *testProvider) DataTypes() []string            { return []string{"heart-rate"} }
func (p *testProvider) RequestsPerMinute() (int, bool) { return 60000, true }
func (p *testProvider) Window(string) time.Duration    { return 24 * time.Hour }
func (p *testProvider) AuthCodeURL(state, verifier string) string {
	return "https://auth.example/authorize?" + url.Values{"state": {state}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}}.Encode()
}
func (p *testProvider) Exchange(_ context.Context, code, verifier string) (*oauth2.Token, error) {
	if code != "good-code" || verifier == "" {
		return nil, &oauth2.RetrieveError{ErrorCode: "invalid_grant"}
	}
	return &oauth2.Token{AccessToken: "access-1", RefreshToken: "refresh-1", Expiry: time.Now().Add(time.Hour)}, nil
}
func (p *testProvider) TokenSource(_ context.Context, t *oauth2.Token) oauth2.TokenSource {
	return tokenFunc(func() (*oauth2.Token, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.revoked {
			return nil, fmt.Errorf("oauth2: cannot fetch token: %w", &oauth2.RetrieveError{ErrorCode: "invalid_grant"})
		}
		return &oauth2.Token{AccessToken: "access-2", RefreshToken: "refresh-2", Expiry: time.Now().Add(time.Hour)}, nil
	})
}

type tokenFunc func() (*oauth2.Token, error)

func (f tokenFunc) Token() (*oauth2.Token, error) { return f() }

func (p *testProvider) Pull(ctx context.Context, hc *http.Client, subject, dataType string, start, end time.Time, emit func([]json.RawMessage) error) (int, error) {
	p.mu.Lock()
	p.windows = append(p.windows, [2]time.Time{start, end})
	var in []time.Time
	for _, at := range p.points[subject] {
		if !at.Before(start) && at.Before(end) {
			in = append(in, at)
		}
	}
	p.mu.Unlock()
	pages := 0
	for i := 0; i == 0 || i < len(in); i += p.pageSize {
		resp, err := hc.Get(p.api.URL + "/points?" + url.Values{"subject": {subject}}.Encode())
		if err != nil {
			return pages, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return pages, fmt.Errorf("API answered %d", resp.StatusCode)
		}
		pages++
		var page []json.RawMessage
		for _, at := range in[i:min(i+p.pageSize, len(in))] {
			page = append(page, json.RawMessage(fmt.Sprintf(`{"id":"t-%s-%d","subject":%q,"kind":"heart_rate","time":%q,"values":{"bpm":60}}`,
				subject, at.Unix(), subject, at.Format(time.RFC3339))))
		}
		if err := emit(page); err != nil {
			return pages, err
		}
	}
	return pages, nil
}

// sink is the ingest side: it counts every reading id it stored, and can fail on a call.
type sink struct {
	mu     sync.Mutex
	ids    map[string]int
	calls  int
	failAt int // the call number that fails (0: none)
}

func (s *sink) ingest(_ context.Context, source string, rs []json.RawMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failAt != 0 && s.calls == s.failAt {
		return errors.New("stream unavailable")
	}
	for _, r := range rs {
		var v struct{ ID string }
		json.Unmarshal(r, &v)
		s.ids[v.ID]++
	}
	return nil
}

// harness is a Manager and an Engine on a real embedded JetStream and secret store.
type harness struct {
	m    *Manager
	e    *Engine
	p    *testProvider
	sink *sink
	now  time.Time
	runs []RunRecord
	stat []string // status changes "before→after"
	mu   sync.Mutex
}

func newHarness(t *testing.T, timing Timing) *harness {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	conn, err := stream.Connect(context.Background(), log, stream.ConnOptions{Server: srv, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	ctx := context.Background()
	key := make([]byte, secret.KeySize)
	rand.Read(key)
	skv, err := conn.KV(ctx, secret.Bucket, "test")
	if err != nil {
		t.Fatal(err)
	}
	sec, err := secret.Open(ctx, log, nil, skv, secret.Options{MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{p: newTestProvider(t), sink: &sink{ids: map[string]int{}}, now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	mo := ManagerOptions{Providers: map[string]Provider{"test-cloud": h.p}, Secrets: sec, Now: h.clock,
		OnStatus: func(_ context.Context, b, a Connection) {
			h.mu.Lock()
			h.stat = append(h.stat, b.Status+"→"+a.Status)
			h.mu.Unlock()
		}}
	if err := OpenBuckets(ctx, conn.KV, &mo); err != nil {
		t.Fatal(err)
	}
	h.m = NewManager(log, mo)
	h.e, err = NewEngine(log, prometheus.NewRegistry(), EngineOptions{Manager: h.m, Timing: map[string]Timing{"test-cloud": timing},
		Ingest: h.sink.ingest, Now: h.clock, Record: func(r RunRecord) { h.mu.Lock(); h.runs = append(h.runs, r); h.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) clock() time.Time { h.mu.Lock(); defer h.mu.Unlock(); return h.now }
func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

// connect runs Begin and Complete like the callback does.
func (h *harness) connect(t *testing.T, subject string) Connection {
	t.Helper()
	u, state, err := h.m.Begin(context.Background(), "test-cloud", subject)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	if pu.Query().Get("state") != state || pu.Query().Get("code_challenge") == "" {
		t.Fatalf("authorization URL %s lacks state or PKCE challenge", u)
	}
	c, err := h.m.Complete(context.Background(), "test-cloud", state, "good-code")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// seed adds one point a minute for subject over [from, to).
func (h *harness) seed(subject string, from, to time.Time) int {
	h.p.mu.Lock()
	defer h.p.mu.Unlock()
	n := 0
	for at := from; at.Before(to); at = at.Add(time.Minute) {
		h.p.points[subject] = append(h.p.points[subject], at)
		n++
	}
	return n
}

// TestSyncWindowsAndCursor: the first pull reaches back the initial window in day windows;
// the next one starts at the cursor minus the lookback; the cursor is where the pull ended.
func TestSyncWindowsAndCursor(t *testing.T) {
	timing := Timing{Every: time.Minute, InitialWindow: 3 * 24 * time.Hour, Lookback: 12 * time.Hour}
	h := newHarness(t, timing)
	c := h.connect(t, "p1")
	start := h.now.Add(-timing.InitialWindow)
	seeded := h.seed("p1", start.Add(-time.Hour), h.now) // an hour before the window is not pulled

	sum, err := h.e.Sync(context.Background(), "test-cloud", SyncOptions{})
	if err != nil || len(sum.Errors) > 0 {
		t.Fatal(err, sum.Errors)
	}
	if want := seeded - 60; len(h.sink.ids) != want || sum.Points != want {
		t.Fatalf("first pull stored %d distinct points (summary %d), want %d", len(h.sink.ids), sum.Points, want)
	}
	wantWindows := [][2]time.Time{{start, start.Add(24 * time.Hour)}, {start.Add(24 * time.Hour), start.Add(48 * time.Hour)}, {start.Add(48 * time.Hour), h.now}}
	if !slices.Equal(h.p.windows, wantWindows) {
		t.Fatalf("windows %v, want %v", h.p.windows, wantWindows)
	}
	cur, _ := h.m.Cursor(context.Background(), c.ID, "heart-rate")
	if !cur.Until.Equal(h.now) || !cur.Resume.IsZero() {
		t.Fatalf("cursor %+v, want until %s and no resume", cur, h.now)
	}

	// An hour later, with a late-synced point 10 h back: the lookback picks it up.
	first := h.now
	h.advance(time.Hour)
	h.p.mu.Lock()
	h.p.windows = nil
	late := first.Add(-10*time.Hour + 30*time.Second)
	h.p.points["p1"] = append(h.p.points["p1"], late)
	h.p.mu.Unlock()
	if _, err := h.e.Sync(context.Background(), "test-cloud", SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := h.p.windows; len(got) != 1 || !got[0][0].Equal(first.Add(-timing.Lookback)) || !got[0][1].Equal(h.now) {
		t.Fatalf("second pull windows %v, want one [%s, %s)", got, first.Add(-timing.Lookback), h.now)
	}
	if h.sink.ids[fmt.Sprintf("t-p1-%d", late.Unix())] != 1 {
		t.Fatal("the late-synced point was not pulled")
	}
	conns, _ := h.m.List(context.Background())
	if len(conns) != 1 || conns[0].Status != StatusOK || !conns[0].LastSync.Equal(h.now) || conns[0].LastError != "" {
		t.Fatalf("connection after pulls: %+v", conns)
	}
	if len(h.runs) != 2 || h.runs[0].Points != seeded-60 || !h.runs[0].WindowStart.Equal(start) || !h.runs[0].WindowEnd.Equal(first) || h.runs[0].Pages < 3 {
		t.Fatalf("run records %+v", h.runs)
	}
}

// TestSyncResumesAfterFailure: a window whose readings were not stored leaves the cursor at
// the last stored window; the next pull resumes there, and every point is stored.
func TestSyncResumesAfterFailure(t *testing.T) {
	timing := Timing{InitialWindow: 5 * 24 * time.Hour, Lookback: 24 * time.Hour}
	h := newHarness(t, timing)
	c := h.connect(t, "p1")
	start := h.now.Add(-timing.InitialWindow)
	seeded := h.seed("p1", start, h.now)
	h.p.pageSize = 1440 // a page a day
	h.sink.failAt = 3   // the third window's page is refused
	sum, err := h.e.Sync(context.Background(), "test-cloud", SyncOptions{})
	if err != nil || len(sum.Errors) != 1 {
		t.Fatalf("want one failed data type, got %v %v", err, sum.Errors)
	}
	cur, _ := h.m.Cursor(context.Background(), c.ID, "heart-rate")
	if want := start.Add(48 * time.Hour); !cur.Until.Equal(want) || !cur.Resume.Equal(want) {
		t.Fatalf("cursor after the failure %+v, want until = resume = %s", cur, want)
	}
	conns, _ := h.m.List(context.Background())
	if conns[0].Status != StatusError || conns[0].LastError == "" {
		t.Fatalf("connection after a failed pull: %+v", conns[0])
	}
	h.p.windows = nil
	if sum, err := h.e.Sync(context.Background(), "test-cloud", SyncOptions{}); err != nil || len(sum.Errors) > 0 {
		t.Fatal(err, sum.Errors)
	}
	if len(h.p.windows) != 3 || !h.p.windows[0][0].Equal(start.Add(48*time.Hour)) {
		t.Fatalf("resumed pull windows %v, want 3 from %s", h.p.windows, start.Add(48*time.Hour))
	}
	if len(h.sink.ids) != seeded {
		t.Fatalf("%d distinct points stored, want %d", len(h.sink.ids), seeded)
	}
	for id, n := range h.sink.ids {
		if n != 1 {
			t.Fatalf("point %s stored %d times; the resumed pull should start at the cursor", id, n)
		}
	}
	if h.stat[len(h.stat)-1] != "error→ok" {
		t.Fatalf("status changes %v, want the last error→ok", h.stat)
	}
}

// TestInvalidGrantNeedsConsent: a refused refresh token marks the connection needs-consent,
// reports the change once, and the connection is not pulled again until reconnected; the
// other subject's connection is pulled meanwhile.
func TestInvalidGrantNeedsConsent(t *testing.T) {
	h := newHarness(t, Timing{InitialWindow: 24 * time.Hour, Lookback: time.Hour})
	c := h.connect(t, "p1")
	h.connect(t, "p2")
	h.seed("p2", h.now.Add(-time.Hour), h.now)
	// Expire p1's token so the next request refreshes it.
	tok, _ := h.m.token(context.Background(), c.ID)
	tok.Expiry = time.Now().Add(-time.Minute)
	h.m.saveToken(context.Background(), c.ID, tok)
	h.p.revoked = true
	sum, err := h.e.Sync(context.Background(), "test-cloud", SyncOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Errors) != 1 || !errors.Is(sum.Errors[0], ErrNeedsConsent) {
		t.Fatalf("errors %v, want one needs-consent", sum.Errors)
	}
	if len(h.sink.ids) != 60 {
		t.Fatalf("p2 stored %d points, want 60", len(h.sink.ids))
	}
	got, _ := h.m.Get(context.Background(), c.ID)
	if got.Status != StatusNeedsConsent || !slices.Contains(h.stat, "ok→needs-consent") {
		t.Fatalf("connection %+v, status changes %v", got, h.stat)
	}
	h.p.windows = nil
	sum, _ = h.e.Sync(context.Background(), "test-cloud", SyncOptions{Subject: "p1"})
	if len(h.p.windows) != 0 || len(sum.Errors) != 1 {
		t.Fatalf("a needs-consent connection was pulled: windows %v errors %v", h.p.windows, sum.Errors)
	}
	h.p.revoked = false
	h.connect(t, "p1")
	if got, _ := h.m.Get(context.Background(), c.ID); got.Status != StatusOK {
		t.Fatalf("after reconnecting: %+v", got)
	}
}

// TestRevokedAccessTokenNeedsConsent: the API refuses a live access token (401) because the
// grant was revoked; the refresh that follows answers invalid_grant: needs consent.
func TestRevokedAccessTokenNeedsConsent(t *testing.T) {
	h := newHarness(t, Timing{InitialWindow: 24 * time.Hour})
	c := h.connect(t, "p1")
	h.p.deny, h.p.revoked = true, true
	sum, err := h.e.Sync(context.Background(), "test-cloud", SyncOptions{})
	if err != nil || len(sum.Errors) != 1 || !errors.Is(sum.Errors[0], ErrNeedsConsent) {
		t.Fatalf("got %v %v, want one needs-consent error", err, sum.Errors)
	}
	if got, _ := h.m.Get(context.Background(), c.ID); got.Status != StatusNeedsConsent {
		t.Fatalf("connection %+v", got)
	}
}

// TestRefreshedTokenIsKept: a refreshed token (rotated refresh token) is sealed again.
func TestRefreshedTokenIsKept(t *testing.T) {
	h := newHarness(t, Timing{InitialWindow: time.Hour})
	c := h.connect(t, "p1")
	tok, _ := h.m.token(context.Background(), c.ID)
	tok.Expiry = time.Now().Add(-time.Minute)
	h.m.saveToken(context.Background(), c.ID, tok)
	if _, err := h.e.Sync(context.Background(), "test-cloud", SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := h.m.token(context.Background(), c.ID)
	if got.AccessToken != "access-2" || got.RefreshToken != "refresh-2" {
		t.Fatalf("stored token after refresh: %s/%s, want access-2/refresh-2", got.AccessToken, got.RefreshToken)
	}
}

// TestAuthorizationState: a state works once, for its provider, before it expires.
func TestAuthorizationState(t *testing.T) {
	h := newHarness(t, Timing{})
	ctx := context.Background()
	_, state, err := h.m.Begin(ctx, "test-cloud", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Complete(ctx, "test-cloud", state, "good-code"); err != nil {
		t.Fatal(err)
	}
	_, expired, _ := h.m.Begin(ctx, "test-cloud", "p1")
	h.advance(DefaultStateTTL + time.Second)
	for _, tc := range []struct{ name, provider, state, code string }{
		{"used twice", "test-cloud", state, "good-code"},
		{"unknown", "test-cloud", "0123abcd", "good-code"},
		{"expired", "test-cloud", expired, "good-code"},
		{"empty", "test-cloud", "", "good-code"},
		{"key syntax", "test-cloud", "a.*>", "good-code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := h.m.Complete(ctx, tc.provider, tc.state, tc.code); !errors.Is(err, ErrBadState) {
				t.Fatalf("got %v, want ErrBadState", err)
			}
		})
	}
	if _, _, err := h.m.Begin(ctx, "nope", "p1"); !errors.Is(err, ErrUnknownProvider) {
		t.Fatalf("unknown provider: %v", err)
	}
	if _, _, err := h.m.Begin(ctx, "test-cloud", " "); !errors.Is(err, ErrBadSubject) {
		t.Fatalf("blank subject: %v", err)
	}
}

// TestEraseAndRevoke: erasing a subject removes its token, cursors and connection and
// counts them; the other subject's stay.
func TestEraseAndRevoke(t *testing.T) {
	h := newHarness(t, Timing{InitialWindow: time.Hour})
	ctx := context.Background()
	c1 := h.connect(t, "p1")
	c2 := h.connect(t, "p2")
	if _, err := h.e.Sync(ctx, "test-cloud", SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := h.m.EraseSubject(ctx, "p1", true)
	if err != nil || n != (Counts{Connections: 1, Tokens: 1, Cursors: 1}) {
		t.Fatalf("dry run counted %+v %v", n, err)
	}
	if n, err := h.m.EraseSubject(ctx, "p1", false); err != nil || n.Connections != 1 {
		t.Fatalf("erase %+v %v", n, err)
	}
	if n, _ := h.m.EraseSubject(ctx, "p1", true); n != (Counts{}) {
		t.Fatalf("after erase the subject still has %+v", n)
	}
	if _, err := h.m.token(ctx, c1.ID); err == nil {
		t.Fatal("the token survived erase")
	}
	if _, err := h.m.Get(ctx, c2.ID); err != nil {
		t.Fatalf("the other subject's connection: %v", err)
	}
	if _, err := h.m.Revoke(ctx, c2.ID); err != nil {
		t.Fatal(err)
	}
	if all, _ := h.m.List(ctx); len(all) != 0 {
		t.Fatalf("after revoke: %+v", all)
	}
	if _, err := h.m.Revoke(ctx, c2.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoking twice: %v", err)
	}
}

// TestRunWakesForNewConnection: Run pulls at start, then waits its interval (an hour here);
// Wake makes it pull a new connection at once; cancelling ctx stops it.
func TestRunWakesForNewConnection(t *testing.T) {
	h := newHarness(t, Timing{Every: time.Hour, InitialWindow: 24 * time.Hour})
	h.connect(t, "p1")
	h.seed("p1", h.now.Add(-time.Hour), h.now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.e.Run(ctx) }()
	stored := func() int { h.sink.mu.Lock(); defer h.sink.mu.Unlock(); return len(h.sink.ids) }
	deadline := time.Now().Add(10 * time.Second)
	for stored() < 60 {
		if time.Now().After(deadline) {
			t.Fatalf("the first pull stored %d points, want 60", stored())
		}
		time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
	}
	h.connect(t, "p2")
	h.seed("p2", h.now.Add(-time.Hour), h.now)
	h.e.Wake("test-cloud")
	for stored() < 120 {
		if time.Now().After(deadline) {
			t.Fatalf("after Wake %d points stored, want 120", stored())
		}
		time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop after its context ended")
	}
}

// TestWaitAfterRedirectAlreadyUsedState: a redirect quicker than Wait (the state is used before
// Wait reads it) still ends in the connection for the process that began it; a state this
// process did not begin and that does not exist is refused.
func TestWaitAfterRedirectAlreadyUsedState(t *testing.T) {
	h := newHarness(t, Timing{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, state, err := h.m.Begin(ctx, "test-cloud", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Complete(ctx, "test-cloud", state, "good-code"); err != nil {
		t.Fatal(err)
	}
	c, err := h.m.Wait(ctx, "test-cloud", "p1", state)
	if err != nil || c.Subject != "p1" || c.Status != StatusOK {
		t.Fatalf("Wait after the redirect used the state: %+v, %v", c, err)
	}
	if _, err := h.m.Wait(ctx, "test-cloud", "p1", state); !errors.Is(err, ErrBadState) {
		t.Fatalf("second Wait on a used state: %v, want ErrBadState", err)
	}
	if _, err := h.m.Wait(ctx, "test-cloud", "p1", "never-begun"); !errors.Is(err, ErrBadState) {
		t.Fatalf("Wait on an unknown state: %v, want ErrBadState", err)
	}
}
