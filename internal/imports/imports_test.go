package imports

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/ingest"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

func takeoutArchive(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("Takeout/Fitbit/Global Export Data/heart_rate-2016-04-12.json")
	w.Write([]byte(`[{"dateTime":"04/12/16 07:00:05","value":{"bpm":72,"confidence":2}}]`))
	zw.Close()
	return buf.Bytes()
}

// TestManagerQueueAndCleanup: one import per subject, at most MaxQueued at once; a stopped
// Run marks what it did not finish failed; no spooled file is left.
func TestManagerQueueAndCleanup(t *testing.T) {
	kinds, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var once sync.Once
	publish := func(ctx context.Context, b *stream.Batch) (int, error) {
		select { // hold the first import in the stream until released
		case <-release:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return 0, nil
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	in := ingest.New(log, prometheus.NewRegistry(), kinds, publish, ingest.Options{})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "upload-left-by-a-crash"), []byte("x"), 0o600)
	m, err := New(log, prometheus.NewRegistry(), in, Options{Dir: dir, MaxQueued: 2, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "upload-*")); len(left) != 0 {
		t.Fatalf("files of a previous run kept: %v", left)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	archive := takeoutArchive(t)
	post := func(subject string) (int, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/imports?subject="+subject, bytes.NewReader(archive))
		m.Post(rec, req, token.Token{Scope: token.ScopeAdmin})
		var body struct {
			ID    string
			Error struct{ Code string }
		}
		json.Unmarshal(rec.Body.Bytes(), &body)
		if body.ID != "" {
			return rec.Code, body.ID
		}
		return rec.Code, body.Error.Code
	}
	get := func(id string) Status {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/imports/"+id, nil)
		req.SetPathValue("id", id)
		m.Get(rec, req, token.Token{Scope: token.ScopeAdmin})
		var st Status
		json.Unmarshal(rec.Body.Bytes(), &st)
		return st
	}
	code, first := post("a")
	if code != http.StatusAccepted {
		t.Fatalf("first upload: %d %s", code, first)
	}
	for _, tc := range []struct {
		subject string
		code    int
		what    string
	}{
		{"a", http.StatusConflict, "import-in-progress"},
		{"b", http.StatusAccepted, ""},
		{"c", http.StatusTooManyRequests, "import-queue-full"},
	} {
		code, got := post(tc.subject)
		if code != tc.code || (tc.what != "" && got != tc.what) {
			t.Errorf("upload for %s: %d %s, want %d %s", tc.subject, code, got, tc.code, tc.what)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for get(first).State != StateRunning && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling, bounded by the deadline
	}
	cancel() // serve stops: the running import and the queued one fail
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	once.Do(func() { close(release) })
	for _, st := range []Status{get(first)} {
		if st.State != StateFailed || !strings.Contains(st.Error, "upload the export again") || st.Finished == nil {
			t.Errorf("import at shutdown: %+v", st)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "upload-*")); len(left) != 0 {
		t.Errorf("spooled files left: %v", left)
	}
}
