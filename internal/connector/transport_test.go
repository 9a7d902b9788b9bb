package connector

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		told bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"-3", 0, false},
		{"1.5", 0, false},
		{"Tue, 01 Dec 2026 10:00:30 GMT", 30 * time.Second, true}, // IMF-fixdate
		{"Tuesday, 01-Dec-26 10:01:00 GMT", time.Minute, true},    // RFC 850
		{"Tue Dec  1 10:00:05 2026", 5 * time.Second, true},       // asctime
		{"Tue, 01 Dec 2026 09:59:00 GMT", 0, true},                // past: no wait
		{"soon", 0, false},
		{"99999999999999999999", 0, false},
	} {
		got, told := RetryAfter(tc.in, now)
		if got != tc.want || told != tc.told {
			t.Errorf("RetryAfter(%q) = %s, %v; want %s, %v", tc.in, got, told, tc.want, tc.told)
		}
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "7", "Tue, 01 Dec 2026 10:00:30 GMT", "Tuesday, 01-Dec-26 10:01:00 GMT", "-1", "1e9"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, told := RetryAfter(s, now)
		if d < 0 || (!told && d != 0) {
			t.Fatalf("RetryAfter(%q) = %s, %v", s, d, told)
		}
	})
}

// TestBackoffJitter: without Retry-After the wait doubles per attempt from 500 ms up to
// 60 s, and lies in [d/2, d).
func TestBackoffJitter(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		d       time.Duration
	}{{0, 500 * time.Millisecond}, {1, time.Second}, {3, 4 * time.Second}, {7, 60 * time.Second}, {40, 60 * time.Second}} {
		for _, r := range []float64{0, 0.5, 0.999999} {
			tr := &Transport{rand: func() float64 { return r }}
			got := tr.backoff(tc.attempt)
			if got < tc.d/2 || got >= tc.d {
				t.Errorf("attempt %d, rand %v: %s outside [%s, %s)", tc.attempt, r, got, tc.d/2, tc.d)
			}
		}
	}
	// Real jitter spreads the waits.
	tr := &Transport{}
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[tr.backoff(4)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("20 back-offs gave %d distinct waits; jitter is missing", len(seen))
	}
}

// TestTransportRetries drives the transport against a server answering a scripted series of
// statuses, and checks the waits it took and what the caller got.
func TestTransportRetries(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		script     []string // "status retry-after"
		maxRetries int
		waits      []time.Duration
		status     int // 0: an error
		rateErr    bool
	}{
		{"429 seconds", []string{"429 3", "200"}, 5, []time.Duration{3 * time.Second}, 200, false},
		{"503 date", []string{"503 Tue, 01 Dec 2026 10:00:42 GMT", "200"}, 5, []time.Duration{42 * time.Second}, 200, false},
		{"504 back-off", []string{"504", "504", "200"}, 5, []time.Duration{250 * time.Millisecond, 500 * time.Millisecond}, 200, false},
		{"capped", []string{"429 1", "429 1", "429 1", "429 1"}, 2, []time.Duration{time.Second, time.Second}, 0, true},
		{"too long to wait", []string{"429 3600"}, 5, nil, 0, true},
		{"500 not retried", []string{"500", "200"}, 5, nil, 500, false},
		{"404 not retried", []string{"404"}, 5, nil, 404, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(n.Add(1)) - 1
				status, after, _ := strings.Cut(tc.script[min(i, len(tc.script)-1)], " ")
				if after != "" {
					w.Header().Set("Retry-After", after)
				}
				code := map[string]int{"200": 200, "404": 404, "429": 429, "500": 500, "503": 503, "504": 504}[status]
				w.WriteHeader(code)
				w.Write([]byte(`{"error":{"code":` + status + `}}`))
			}))
			defer srv.Close()
			var waits []time.Duration
			var retried int
			tr := &Transport{MaxRetries: tc.maxRetries, rand: func() float64 { return 0 }, now: func() time.Time { return now },
				sleep:     func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil },
				OnAttempt: func(_ int, retry bool) { retried += map[bool]int{true: 1}[retry] }}
			hc := &http.Client{Transport: tr}
			resp, err := hc.Get(srv.URL)
			var rl *RateLimitedError
			switch {
			case tc.rateErr:
				if !errors.As(err, &rl) {
					t.Fatalf("got %v, want a RateLimitedError", err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
				}
			}
			if len(waits) != len(tc.waits) || retried != len(tc.waits) {
				t.Fatalf("waits %v (%d retries counted), want %v", waits, retried, tc.waits)
			}
			for i := range waits {
				if waits[i] != tc.waits[i] {
					t.Fatalf("waits %v, want %v", waits, tc.waits)
				}
			}
		})
	}
}

// TestTransportRateLimit: the token bucket holds a request back once the burst is spent.
func TestTransportRateLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	l := newLimiter(120) // burst 20, then 100 a minute
	if l.Burst() != 20 {
		t.Fatalf("burst %d, want 20", l.Burst())
	}
	hc := &http.Client{Transport: &Transport{Limiter: l}}
	start := time.Now()
	for range 21 { // the 21st waits for a token: 0.6 s
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("21 requests took %s; the 21st should wait about 0.6 s for the bucket", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	if _, err := hc.Do(req); err == nil {
		t.Fatal("a request that cannot get a token before its deadline went through")
	}
}
