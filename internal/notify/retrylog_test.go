package notify

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRetryLogOutlastsAnElection: a notification log write that fails while the bucket has
// no leader is tried again until it succeeds; a stopped dispatcher gives up at once.
func TestRetryLogOutlastsAnElection(t *testing.T) {
	calls := 0
	err := retryLog(context.Background(), func() error {
		calls++
		if calls < 3 {
			return errors.New("nats: no response from stream")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("retryLog: err %v after %d calls; want nil after 3", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	calls = 0
	err = retryLog(ctx, func() error { calls++; return errors.New("down") })
	if err == nil || calls != 1 || time.Since(start) > time.Second {
		t.Errorf("stopped: err %v, %d calls in %v; want the error after one call", err, calls, time.Since(start))
	}
}
