package notify

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pulselake/pulselake/internal/logbuf"
)

// TestSMTPFailureLoggedWhenItHappens sends to an SMTP address where nothing listens, with
// retries that would go on for an hour: the failure is logged at WARN, naming the channel and
// the cause, while the retries still run (not only when they give up or at shutdown).
func TestSMTPFailureLoggedWhenItHappens(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens there now: connections are refused

	var logs logbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := New(context.Background(), log, prometheus.NewRegistry(), Options{
		RetryBase: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond, RetryFor: time.Hour,
		Config: Config{
			Channels: []Channel{{Name: "ward-email", Email: &EmailConfig{To: []string{"nurse@example.org"}, From: "pulselake@example.org", SMTP: dead, TLS: "none"}}},
			Route:    &Route{GroupWait: dur(0), GroupInterval: dur(time.Hour)},
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	_ = d.Notify(context.Background(), []Alert{alert("crisis", "p1", "bp-1", "critical")})
	waitFor(t, "a WARN line about the failed email", func() bool {
		return strings.Contains(logs.String(), "level=WARN msg=\"notification failed; retrying\" receiver=ward-email")
	})
	line := logs.String()
	if !strings.Contains(line, dead) || !strings.Contains(line, "refused") {
		t.Errorf("the log does not name the SMTP address and the cause:\n%s", line)
	}
	// The later attempts of the same delivery are debug lines: one WARN, not one per retry.
	waitFor(t, "more retries", func() bool { return counter(d.mRetries.WithLabelValues("ward-email")) >= 3 })
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d WARN lines for one failing delivery, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("an ERROR line before the retries gave up:\n%s", logs.String())
	}
}
