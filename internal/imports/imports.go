// Package imports runs imports of wearable exports (an Apple Health export.zip, a Google
// Takeout archive) uploaded to serve: POST /v1/imports spools the body to a temporary file
// under the data directory and queues it; one worker imports the queued files one after the
// other through the ingester, like `pulselake ingest` does; GET /v1/imports/{id} reports
// progress.
//
// Limits: an upload is at most Options.MaxBytes; at most Options.MaxQueued imports wait or
// run at once, and one per subject; an upload whose bytes stop arriving for
// Options.BodyIdle is cut off. The status of finished imports is kept for Options.Keep (at
// most maxKept of them) in memory: it does not survive a restart, the stored readings do.
//
// Concurrency: handlers run on the HTTP server's goroutines; Run is the one worker, owned by
// serve, and returns once the import it is running has stopped. Temporary files are removed
// when their import ends, whatever the outcome, and at start (left by a killed serve).
package imports

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/httpapi"
	"github.com/pulselake/pulselake/internal/ingest"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/token"
)

// Options configures a Manager. Zero values take the documented defaults.
type Options struct {
	Dir       string        // where uploads are spooled (required; serve uses <data>/imports)
	MaxBytes  int64         // largest upload (default 10 GiB)
	MaxQueued int           // imports waiting or running at once (default 4)
	Keep      time.Duration // how long a finished import's status is kept (default 24h)
	BodyIdle  time.Duration // longest pause in an upload's bytes (default 1m)
	Chunk     int           // readings stored per batch (default 5000)
}

func (o *Options) defaults() {
	if o.MaxBytes == 0 {
		o.MaxBytes = 10 << 30
	}
	if o.MaxQueued == 0 {
		o.MaxQueued = 4
	}
	if o.Keep == 0 {
		o.Keep = 24 * time.Hour
	}
	if o.BodyIdle == 0 {
		o.BodyIdle = time.Minute
	}
}

// maxKept bounds the finished imports whose status is kept.
const maxKept = 1000

// States of an import.
const (
	StateQueued  = "queued"
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"
)

// Status is an import's progress (GET /v1/imports/{id}).
type Status struct {
	ID         string     `json:"id"`
	Subject    string     `json:"subject"`
	Format     string     `json:"format"`
	State      string     `json:"state"`
	Bytes      int64      `json:"bytes"`
	BytesTotal int64      `json:"bytes_total"`
	Records    int64      `json:"records"`
	Accepted   int64      `json:"accepted"`
	Duplicates int64      `json:"duplicates"`
	Rejected   int64      `json:"rejected"`
	Error      string     `json:"error,omitempty"`
	Created    time.Time  `json:"created"`
	Started    *time.Time `json:"started"`
	Finished   *time.Time `json:"finished"`
}

type job struct {
	st       Status
	file     string
	location *time.Location
}

// Manager accepts uploads and runs their imports.
type Manager struct {
	log     *slog.Logger
	in      *ingest.Ingester
	opts    Options
	exports []ingest.Export

	mu    sync.Mutex
	jobs  map[string]*job
	queue []*job
	wake  chan struct{}

	imports *prometheus.CounterVec
}

// New returns a Manager importing through in. It removes uploads a previous run left.
func New(log *slog.Logger, reg prometheus.Registerer, in *ingest.Ingester, o Options) (*Manager, error) {
	o.defaults()
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the imports directory: %w", err)
	}
	left, _ := filepath.Glob(filepath.Join(o.Dir, "upload-*"))
	for _, f := range left {
		os.Remove(f)
	}
	m := &Manager{log: log, in: in, opts: o, exports: Exports(), jobs: map[string]*job{}, wake: make(chan struct{}, 1)}
	m.imports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pulselake_imports_total", Help: "Uploaded exports imported, by format and outcome (done, failed).",
	}, []string{"format", "outcome"})
	reg.MustRegister(m.imports)
	return m, nil
}

// Errors of the API, mapped to status codes by statusOf.
var (
	errQueueFull  = errors.New("too many imports are waiting; try again when one has finished")
	errBusy       = errors.New("an import of this subject is already waiting or running; wait for it to finish (GET /v1/imports/{id})")
	errTooLarge   = errors.New("the upload is larger than imports.max_bytes")
	errNoSubject  = errors.New("name the subject: ?subject=S (tokens bound to a subject import for that subject only)")
	errNotFound   = errors.New("no such import (finished imports are kept for a day, and not across restarts)")
	errUnknownFmt = errors.New("the upload is neither an Apple Health export (export.zip, export.xml) nor a Google Takeout archive of Fitbit data (zip); pass ?format=apple-health|google-takeout if it is one")
)

// Post serves POST /v1/imports: the body is an export archive; 202 {"id":...}.
func (m *Manager) Post(w http.ResponseWriter, r *http.Request, tok token.Token) {
	q := r.URL.Query()
	subject := q.Get("subject")
	switch {
	case tok.Bound() && subject != "" && subject != tok.Subject:
		httpapi.WriteError(w, http.StatusForbidden, "subject-not-allowed", fmt.Sprintf("this token may only import readings of subject %q", tok.Subject))
		return
	case tok.Bound():
		subject = tok.Subject
	case subject == "":
		httpapi.WriteError(w, http.StatusBadRequest, "subject-required", errNoSubject.Error())
		return
	}
	if err := reading.CheckIdent("subject", subject); err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "invalid-subject", err.Error())
		return
	}
	format := q.Get("format")
	if format != "" && !slices.ContainsFunc(m.exports, func(e ingest.Export) bool { return e.Format == format }) {
		httpapi.WriteError(w, http.StatusBadRequest, "unknown-format", fmt.Sprintf("unknown format %q; want apple-health or google-takeout, or leave it out to detect it", format))
		return
	}
	var loc *time.Location
	if tz := q.Get("timezone"); tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "invalid-timezone", fmt.Sprintf("timezone %q is not an IANA time zone name such as Europe/Berlin", tz))
			return
		}
		loc = l
	}
	if r.ContentLength > m.opts.MaxBytes {
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("%s (%d bytes)", errTooLarge, m.opts.MaxBytes))
		return
	}
	if err := m.admit(subject); err != nil {
		m.writeErr(w, err)
		return
	}
	f, err := os.CreateTemp(m.opts.Dir, "upload-*")
	if err != nil {
		m.log.Error("spooling an upload", "err", err)
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", "could not store the upload; see the server log")
		return
	}
	name := f.Name()
	n, err := m.spool(w, r, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		m.writeErr(w, err)
		return
	}
	if format == "" {
		for _, e := range m.exports {
			if e.Detect(name) {
				format = e.Format
				break
			}
		}
		if format == "" {
			os.Remove(name)
			httpapi.WriteError(w, http.StatusUnprocessableEntity, "unknown-export-format", errUnknownFmt.Error())
			return
		}
	}
	j := &job{file: name, location: loc, st: Status{ID: newID(), Subject: subject, Format: format, State: StateQueued, BytesTotal: n, Created: time.Now().UTC()}}
	if err := m.enqueue(j); err != nil {
		os.Remove(name)
		m.writeErr(w, err)
		return
	}
	m.log.Info("import queued", "id", j.st.ID, "subject", subject, "format", format, "bytes", n)
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]string{"id": j.st.ID})
}

// spool copies the body to f, at most MaxBytes, cutting off a body that stalls. The file is
// not synced: it is read back by this process, and an import does not outlive serve (Run
// fails the queued ones when serve stops), so a sync would only delay the import by the time
// the disk takes to write the whole upload.
func (m *Manager) spool(w http.ResponseWriter, r *http.Request, f *os.File) (int64, error) {
	rc := http.NewResponseController(w)
	buf := make([]byte, 1<<20)
	var n int64
	for {
		_ = rc.SetReadDeadline(time.Now().Add(m.opts.BodyIdle))
		k, err := r.Body.Read(buf)
		if k > 0 {
			n += int64(k)
			if n > m.opts.MaxBytes {
				return n, errTooLarge
			}
			if _, werr := f.Write(buf[:k]); werr != nil {
				return n, fmt.Errorf("writing the upload: %w", werr)
			}
		}
		if err == io.EOF {
			_ = rc.SetReadDeadline(time.Time{})
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("reading the upload: %w", err)
		}
	}
}

func (m *Manager) writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errTooLarge):
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "body-too-large", fmt.Sprintf("%s (%d bytes); raise it in the config or split the export", errTooLarge, m.opts.MaxBytes))
	case errors.Is(err, errQueueFull):
		w.Header().Set("Retry-After", "60")
		httpapi.WriteError(w, http.StatusTooManyRequests, "import-queue-full", err.Error())
	case errors.Is(err, errBusy):
		httpapi.WriteError(w, http.StatusConflict, "import-in-progress", err.Error())
	default:
		m.log.Warn("upload failed", "err", err)
		httpapi.WriteError(w, http.StatusBadRequest, "upload-failed", err.Error()+"; upload again")
	}
}

// admit checks, before the upload is read, that it could be queued.
func (m *Manager) admit(subject string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.admitLocked(subject)
}

func (m *Manager) admitLocked(subject string) error {
	active := 0
	for _, j := range m.jobs {
		if j.st.State == StateQueued || j.st.State == StateRunning {
			active++
			if j.st.Subject == subject {
				return errBusy
			}
		}
	}
	if active >= m.opts.MaxQueued {
		return errQueueFull
	}
	return nil
}

func (m *Manager) enqueue(j *job) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.admitLocked(j.st.Subject); err != nil {
		return err
	}
	m.pruneLocked()
	m.jobs[j.st.ID] = j
	m.queue = append(m.queue, j)
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return nil
}

// pruneLocked forgets finished imports older than Keep, and the oldest beyond maxKept.
func (m *Manager) pruneLocked() {
	var done []*job
	for id, j := range m.jobs {
		if j.st.Finished == nil {
			continue
		}
		if time.Since(*j.st.Finished) > m.opts.Keep {
			delete(m.jobs, id)
			continue
		}
		done = append(done, j)
	}
	if len(done) >= maxKept {
		slices.SortFunc(done, func(a, b *job) int { return a.st.Finished.Compare(*b.st.Finished) })
		for _, j := range done[:len(done)-maxKept+1] {
			delete(m.jobs, j.st.ID)
		}
	}
}

// Get serves GET /v1/imports/{id}. A subject-bound token sees only its subject's imports.
func (m *Manager) Get(w http.ResponseWriter, r *http.Request, tok token.Token) {
	m.mu.Lock()
	j, ok := m.jobs[r.PathValue("id")]
	var st Status
	if ok {
		st = j.st
	}
	m.mu.Unlock()
	if !ok || !tok.Sees(st.Subject) {
		httpapi.WriteError(w, http.StatusNotFound, "not-found", errNotFound.Error())
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, st)
}

// Run imports queued uploads one at a time until ctx ends; the import running then stops
// (what it stored stays stored; uploading again stores nothing twice) and is marked failed,
// like those still waiting.
func (m *Manager) Run(ctx context.Context) error {
	defer m.failQueued("serve stopped before the import ran; upload the export again")
	for {
		m.mu.Lock()
		var j *job
		if len(m.queue) > 0 {
			j, m.queue = m.queue[0], m.queue[1:]
		}
		m.mu.Unlock()
		if j == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-m.wake:
				continue
			}
		}
		m.run(ctx, j)
	}
}

func (m *Manager) run(ctx context.Context, j *job) {
	defer os.Remove(j.file)
	now := time.Now().UTC()
	m.update(j, func(st *Status) { st.State, st.Started = StateRunning, &now })
	log := m.log.With("id", j.st.ID, "subject", j.st.Subject, "format", j.st.Format)
	log.Info("import started")
	res, err := m.in.Import(ctx, []string{j.file}, ingest.ImportOptions{
		Subject: j.st.Subject, Format: j.st.Format, Exports: m.exports, Location: j.location, Chunk: m.opts.Chunk,
		Progress: func(p ingest.ImportProgress) {
			m.update(j, func(st *Status) {
				st.Bytes, st.BytesTotal = p.Bytes, p.BytesTotal
				st.Records, st.Accepted, st.Duplicates, st.Rejected = p.Records, p.Accepted, p.Duplicates, p.Rejected
			})
		},
	})
	end := time.Now().UTC()
	m.update(j, func(st *Status) {
		st.Finished = &end
		switch {
		case err != nil && ctx.Err() != nil:
			st.State, st.Error = StateFailed, "serve stopped during the import; upload the export again (what was stored is not stored twice)"
		case err != nil:
			// The ingester's message names the file by its temporary name; say what failed.
			st.State, st.Error = StateFailed, strings.ReplaceAll(err.Error(), j.file, "the upload")
		default:
			st.State = StateDone
		}
	})
	if err != nil {
		m.imports.WithLabelValues(j.st.Format, "failed").Inc()
		log.Warn("import failed", "err", err)
		return
	}
	m.imports.WithLabelValues(j.st.Format, "done").Inc()
	var accepted int
	for _, r := range res {
		accepted += r.Accepted
	}
	log.Info("import done", "accepted", accepted, "seconds", end.Sub(now).Seconds())
}

func (m *Manager) update(j *job, f func(*Status)) {
	m.mu.Lock()
	f(&j.st)
	m.mu.Unlock()
}

func (m *Manager) failQueued(why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now().UTC()
	for _, j := range m.queue {
		j.st.State, j.st.Error, j.st.Finished = StateFailed, why, &now
		os.Remove(j.file)
	}
	m.queue = nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
