package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Retry timing of the transport.
const (
	// DefaultMaxRetries is how often one request is retried (429, 503, 504, transport errors).
	DefaultMaxRetries = 5
	// baseDelay is the first back-off; each retry doubles it up to maxDelay.
	baseDelay = 500 * time.Millisecond
	maxDelay  = 60 * time.Second
	// maxRetryAfter is the longest Retry-After honoured; a provider asking for more fails
	// the pull (the next scheduled pull tries again).
	maxRetryAfter = 10 * time.Minute
	// drainLimit bounds what is read of a response body thrown away before a retry, so the
	// connection can be reused.
	drainLimit = 64 << 10
)

// RateLimitedError is a request still refused after the retries, or asked to wait longer
// than the transport waits.
type RateLimitedError struct {
	Status     int
	RetryAfter time.Duration // 0 when the provider did not say
}

func (e *RateLimitedError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("the provider answered %d and asks to retry after %s", e.Status, e.RetryAfter.Round(time.Second))
	}
	return fmt.Sprintf("the provider answered %d after every retry", e.Status)
}

// Transport is the http.RoundTripper under the OAuth transport of every provider call: it
// waits for the provider's rate limit (a token bucket per user or per app), and retries a
// request answered 429, 503 or 504, or failed in transit, honouring Retry-After (seconds or
// an HTTP date) and otherwise backing off exponentially with jitter, at most MaxRetries times.
type Transport struct {
	Base       http.RoundTripper // default http.DefaultTransport
	Limiter    *rate.Limiter     // nil: no limit
	MaxRetries int
	// OnAttempt is told each response status (0 for a transport error) and whether it is
	// retried (metrics); nil: nothing.
	OnAttempt func(status int, retry bool)
	// unauthorized records a 401: the access token was refused before it expired.
	unauthorized atomic.Bool
	rand         func() float64 // [0,1); rand.Float64 by default (tests fix it)
	now          func() time.Time
	sleep        func(ctx context.Context, d time.Duration) error
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// RoundTrip sends req, waiting and retrying as described on Transport.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	sleep, now := t.sleep, t.now
	if sleep == nil {
		sleep = sleepCtx
	}
	if now == nil {
		now = time.Now
	}
	for attempt := 0; ; attempt++ {
		if t.Limiter != nil {
			if err := t.Limiter.Wait(ctx); err != nil {
				return nil, fmt.Errorf("waiting for the rate limit: %w", err)
			}
		}
		r := req
		if attempt > 0 && req.Body != nil {
			if req.GetBody == nil {
				return nil, errors.New("retrying a request whose body cannot be re-read")
			}
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("re-reading the request body: %w", err)
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := t.base().RoundTrip(r)
		last := attempt >= t.MaxRetries
		if err != nil {
			retry := !last && ctx.Err() == nil && (req.Body == nil || req.GetBody != nil)
			t.attempted(0, retry)
			if !retry {
				return nil, err
			}
			if err := sleep(ctx, t.backoff(attempt)); err != nil {
				return nil, err
			}
			continue
		}
		if !retryable(resp.StatusCode) {
			if resp.StatusCode == http.StatusUnauthorized {
				t.unauthorized.Store(true)
			}
			t.attempted(resp.StatusCode, false)
			return resp, nil
		}
		wait, told := RetryAfter(resp.Header.Get("Retry-After"), now())
		if last || wait > maxRetryAfter {
			t.attempted(resp.StatusCode, false)
			drain(resp)
			return nil, &RateLimitedError{Status: resp.StatusCode, RetryAfter: wait}
		}
		t.attempted(resp.StatusCode, true)
		drain(resp)
		if !told {
			wait = t.backoff(attempt)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (t *Transport) attempted(status int, retry bool) {
	if t.OnAttempt != nil {
		t.OnAttempt(status, retry)
	}
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// backoff is the wait before retry attempt+1 without Retry-After: baseDelay·2^attempt
// capped at maxDelay, with "equal jitter" (uniform in [d/2, d)), so that clients refused
// together do not come back together and the wait still grows.
func (t *Transport) backoff(attempt int) time.Duration {
	d := maxDelay
	if attempt < 20 {
		d = min(baseDelay<<attempt, maxDelay)
	}
	r := rand.Float64
	if t.rand != nil {
		r = t.rand
	}
	return d/2 + time.Duration(r()*float64(d/2))
}

// RetryAfter parses a Retry-After value (RFC 9110 §10.2.3): delay-seconds or an HTTP date.
// told is false when the header is absent or unreadable. A date in the past means no wait.
func RetryAfter(v string, now time.Time) (wait time.Duration, told bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > int64(maxRetryAfter/time.Second)*1000 {
			n = int64(maxRetryAfter/time.Second) * 1000 // far beyond what is honoured anyway
		}
		return time.Duration(n) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}

func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
	resp.Body.Close()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// newLimiter is a token bucket that never lets more than n requests through in any minute:
// a burst of n/6 and the rest, n − n/6, spread over the minute.
func newLimiter(n int) *rate.Limiter {
	if n <= 0 {
		return nil
	}
	burst := max(n/6, 1)
	return rate.NewLimiter(rate.Limit(float64(max(n-burst, 1))/60), burst)
}
