package simulate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/logbuf"
)

// The behaviour against a real serve is tested end to end (e2e/newcomer_test.go); these run the
// workers' back-off and stop paths under the race detector.

// readingsServer answers POST /v1/readings with status, counting the readings it accepted.
func readingsServer(t *testing.T, l net.Listener, status int, accepted *atomic.Int64) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := bytes.Count(body, []byte("\n"))
		if status != http.StatusAccepted {
			w.WriteHeader(status)
			io.WriteString(w, `{"error":{"code":"unauthorized","message":"no such token"}}`)
			return
		}
		accepted.Add(int64(n))
		w.WriteHeader(status)
		io.WriteString(w, `{"accepted":`+strconv.Itoa(n)+`,"duplicates":0,"rejected":[]}`)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

func TestRunStopsOnRefusedToken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	readingsServer(t, l, http.StatusUnauthorized, &accepted)
	var logs logbuf.Buffer
	start := time.Now()
	st, err := Run(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)),
		Options{Kind: "hr", Target: "http://" + l.Addr().String(), Token: "plk_wrong", Rate: 200, Batch: 10, Duration: time.Minute})
	if !errors.Is(err, ErrTokenRefused) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Run: %v, want ErrTokenRefused naming the status", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %s to stop after a refused token", d)
	}
	if st.Accepted != 0 || st.Failed != st.Sent {
		t.Errorf("stats %+v", st)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warnings besides the error:\n%s", logs.String())
	}
}

func TestRunWaitsForServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // down at first
	var logs logbuf.Buffer
	var accepted atomic.Int64
	done := make(chan struct{})
	var st Stats
	go func() {
		defer close(done)
		st, err = Run(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)),
			Options{Kind: "bp", Target: "http://" + addr, Token: "plk_t", Rate: 100, Batch: 20, Duration: 4 * time.Second})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "server not reachable") {
		if time.Now().After(deadline) {
			t.Fatalf("no line saying the server is not reachable:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	readingsServer(t, l, http.StatusAccepted, &accepted)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "server reachable again") {
		t.Errorf("no line saying the server is back:\n%s", logs.String())
	}
	if st.Failed != 0 || st.Accepted != st.Sent || st.Accepted != accepted.Load() || st.Sent == 0 {
		t.Errorf("stats %+v, server accepted %d", st, accepted.Load())
	}
}
