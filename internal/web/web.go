// Package web is pulselake's HTTP server: the JSON API of SPEC §4, health and metrics
// endpoints and the dashboard. Handlers authenticate with bearer tokens and check scopes;
// one function (statusOf) maps errors to status codes.
//
// The Server owns its listener goroutine; Shutdown stops intake and waits for requests in
// flight (the first phase of pulselake's two-phase shutdown).
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pulselake/pulselake/internal/httpapi"
	"github.com/pulselake/pulselake/internal/ingest"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/token"
)

//go:embed assets
var assetFS embed.FS

// Check reports whether a dependency is usable; /readyz runs every check. A check that
// returns a Degraded error leaves the server ready (200) and shows "degraded: ..." for it.
type Check func(ctx context.Context) error

// Degraded is a Check's answer when a dependency works only in part (one lake table
// broken): an operator needs to know, but taking the server out of a load balancer would
// not help.
type Degraded struct{ Reason string }

func (d Degraded) Error() string { return "degraded: " + d.Reason }

// Options configures the server.
type Options struct {
	Listen   string
	Verify   ingest.TokenVerifier
	Ingester *ingest.Ingester
	Gatherer prometheus.Gatherer
	// Ready maps a dependency name (stream, lake, catalog) to its check.
	Ready map[string]Check
}

// Server is the HTTP server.
type Server struct {
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
	srv  *http.Server
	ln   net.Listener
	done chan error
	reqs *prometheus.CounterVec
	// closing is closed when shutdown starts, ending long-lived responses (event streams).
	closing chan struct{}
}

// New builds the server with no routes; the caller mounts them (Handle, HandleUnbound,
// HandlePublic) with the handlers below and those of other packages. Start binds it.
func New(log *slog.Logger, reg prometheus.Registerer, o Options) *Server {
	s := &Server{opts: o, log: log, mux: http.NewServeMux(), done: make(chan error, 1), closing: make(chan struct{})}
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pulselake_http_requests_total", Help: "HTTP API requests by route and status code.",
	}, []string{"route", "code"})
	reg.MustRegister(s.reqs)
	return s
}

// Healthz serves GET /healthz: 200 {"status":"ok"} while the process answers.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Metrics serves the Prometheus metrics of Options.Gatherer.
func (s *Server) Metrics() http.Handler {
	return promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{})
}

// Assets serves the dashboard's files; mount it with its prefix stripped.
func Assets() http.Handler {
	assets, _ := fs.Sub(assetFS, "assets")
	return http.FileServerFS(assets)
}

// page serves one of the dashboard's HTML pages. The pages hold no data: each fetches what
// it shows with the token the browser keeps, so they need none themselves.
func page(name string) http.Handler {
	assets, _ := fs.Sub(assetFS, "assets")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:")
		http.ServeFileFS(w, r, assets, name)
	})
}

// Dashboard serves the dashboard's overview page (/).
func Dashboard() http.Handler { return page("index.html") }

// Sources serves the sources page (/sources): wearable cloud connections and uploads of
// exports.
func Sources() http.Handler { return page("sources.html") }

// Subjects serves the subject list (/subjects).
func Subjects() http.Handler { return page("subjects.html") }

// Subject serves one subject's view (/subjects/{id}); the page reads the id from its path.
func Subject() http.Handler { return page("subject.html") }

// Favicon serves the dashboard's icon at /favicon.ico, where browsers look for it.
func Favicon() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := assetFS.ReadFile("assets/favicon.svg")
		if err != nil {
			httpapi.WriteError(w, http.StatusNotFound, "not-found", "no icon")
			return
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Header().Set("Cache-Control", "public, max-age=86400")
		_, _ = w.Write(data)
	})
}

// Events serves the live feed of h (GET /v1/events) until the client goes away or the
// server shuts down.
func (s *Server) Events(h *Hub) Handler {
	return func(w http.ResponseWriter, r *http.Request, tok token.Token) {
		h.serveEvents(w, r, s.closing, tok)
	}
}

// Handler is an authenticated API handler; tok is the caller's verified token.
type Handler func(w http.ResponseWriter, r *http.Request, tok token.Token)

// Handle mounts an API route that needs a token of the given scope. A subject-bound token
// reaches h, which must show it only what the token Sees; routes that cannot filter by subject
// use HandleUnbound.
func (s *Server) Handle(pattern string, scope token.Scope, h Handler) {
	s.handle(pattern, scope, false, nil, h)
}

// HandleWith is Handle with every response of the route, authentication and scope errors
// included, written through wrap (FHIR routes answer errors as OperationOutcomes).
func (s *Server) HandleWith(pattern string, scope token.Scope, wrap func(http.Handler) http.Handler, h Handler) {
	s.handle(pattern, scope, false, wrap, h)
}

// HandleUnbound mounts an API route that needs a token of the given scope and refuses
// subject-bound tokens (403 subject-bound-token): for what cannot be filtered by subject.
func (s *Server) HandleUnbound(pattern string, scope token.Scope, h Handler) {
	s.handle(pattern, scope, true, nil, h)
}

func (s *Server) handle(pattern string, scope token.Scope, unboundOnly bool, wrap func(http.Handler) http.Handler, h Handler) {
	route := pattern
	var f http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() { s.reqs.WithLabelValues(route, fmt.Sprint(rw.code)).Inc() }()
		secret, ok := BearerToken(r.Header.Get("Authorization"))
		if !ok {
			rw.Header().Set("WWW-Authenticate", `Bearer realm="pulselake"`)
			WriteError(rw, errUnauthenticated)
			return
		}
		tok, err := s.opts.Verify(secret)
		if err != nil {
			rw.Header().Set("WWW-Authenticate", `Bearer realm="pulselake", error="invalid_token"`)
			WriteError(rw, errUnauthenticated)
			return
		}
		if !tok.Scope.Allows(scope) {
			WriteError(rw, fmt.Errorf("%w: this needs a token with scope %s, yours has %s", errForbidden, scope, tok.Scope))
			return
		}
		if unboundOnly && tok.Bound() {
			WriteError(rw, ErrSubjectBound)
			return
		}
		h(rw, r, tok)
	})
	if wrap != nil {
		f = wrap(f)
	}
	s.mux.Handle(pattern, f)
}

// BearerToken returns the token of an Authorization header value of the Bearer scheme
// (RFC 6750 §2.1), or false. The scheme name is case-insensitive (RFC 9110 §11.1): "bearer"
// and "BEARER" are "Bearer"; one or more spaces separate it from the token, which is one word.
func BearerToken(header string) (string, bool) {
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok := strings.Trim(rest, " \t")
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", false
	}
	return tok, true
}

// HandlePublic mounts a route without authentication (health, metrics, dashboard).
func (s *Server) HandlePublic(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap gives http.ResponseController the connection's writer (read deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Start binds the listener and serves in a goroutine owned by the server.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w (set http.listen or --http to a free address)", s.opts.Listen, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.srv.RegisterOnShutdown(func() { close(s.closing) })
	go func() { s.done <- s.srv.Serve(ln) }()
	return nil
}

// ServeHTTP answers through the routes; a path or method no route takes gets the JSON error
// body of every other error (the mux's own answer is plain text).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		httpapi.PlainErrors(s.mux).ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the base URL of the server.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Shutdown stops accepting requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Readyz serves GET /readyz: each check of Options.Ready by name, "ok", "degraded: ..." or its
// error; 503 when any check failed.
func (s *Server) Readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	status := map[string]string{}
	code := http.StatusOK
	for name, check := range s.opts.Ready {
		var deg Degraded
		if err := check(ctx); errors.As(err, &deg) {
			status[name] = deg.Error()
		} else if err != nil {
			status[name] = err.Error()
			code = http.StatusServiceUnavailable
		} else {
			status[name] = "ok"
		}
	}
	httpapi.WriteJSON(w, code, status)
}

// PostReadings serves POST /v1/readings (SPEC §4).
func (s *Server) PostReadings(w http.ResponseWriter, r *http.Request, tok token.Token) {
	in := s.opts.Ingester
	lim := in.Limits()
	format, err := reading.FormatOf(r.Header.Get("Content-Type"))
	if err != nil {
		WriteError(w, err)
		return
	}
	if r.ContentLength > lim.MaxBodyBytes {
		WriteError(w, errBodyTooLarge{lim.MaxBodyBytes})
		return
	}
	// The body must arrive within BodyTimeout; the deadline is lifted once it has (a read
	// deadline left in place would end the request while it is being stored).
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(lim.BodyTimeout)
	if err := rc.SetReadDeadline(deadline); err != nil {
		s.log.Debug("setting the request body deadline", "err", err)
	}
	body, release, err := in.ReadBody(r.Body, r.ContentLength)
	defer release()
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		switch {
		case errors.Is(err, ingest.ErrBodyTooLarge):
			err = errBodyTooLarge{lim.MaxBodyBytes}
		case errors.Is(err, ingest.ErrOverloaded):
		case errors.Is(err, os.ErrDeadlineExceeded) || time.Now().After(deadline):
			err = errBodyTimeout{lim.BodyTimeout}
		default:
			err = fmt.Errorf("%w: reading body: %v", errBadRequest, err)
		}
		w.Header().Set("Connection", "close") // the rest of the body is not read
		WriteError(w, err)
		return
	}
	raws, err := reading.SplitBody(body, format, lim.MaxBatch)
	var malformed reading.ErrMalformedBody
	switch {
	case errors.As(err, &malformed):
		// Keep what was sent (quarantine), then tell the client.
		raws = [][]byte{body}
	case err != nil:
		WriteError(w, err)
		return
	case len(raws) == 0:
		WriteError(w, fmt.Errorf("%w: %v", errBadRequest, ingest.ErrEmpty))
		return
	}
	recs := make([]ingest.Record, len(raws))
	for i, raw := range raws {
		recs[i] = ingest.Record{Raw: raw}
	}
	res, err := in.Ingest(r.Context(), "http", tok, recs)
	if err != nil {
		WriteError(w, err)
		return
	}
	code := http.StatusAccepted
	switch {
	case malformed.Reason != "":
		code = http.StatusBadRequest
		res.Rejected = []ingest.Rejection{{Index: 0, Code: reading.CodeInvalidJSON, Message: malformed.Error() + "; the body was kept in quarantine"}}
	case len(res.Rejected) == 0:
	case res.Accepted+res.Duplicates > 0:
		code = http.StatusMultiStatus
	default:
		code = http.StatusUnprocessableEntity
	}
	httpapi.WriteJSON(w, code, res)
}

// API errors.
var (
	errUnauthenticated = errors.New("missing or invalid token; send Authorization: Bearer <token> (see pulselake token create)")
	errForbidden       = errors.New("forbidden")
	errBadRequest      = errors.New("bad request")
	// ErrSubjectBound refuses a subject-bound token on a path that cannot be filtered by
	// subject (answered 403 subject-bound-token).
	ErrSubjectBound = errors.New("a token bound to a subject cannot use this path: what it serves cannot be filtered by subject; use GET /v1/events, GET /v1/alerts or POST /v1/query, which show the subject's own data, or a token not bound to a subject")
)

type errBodyTimeout struct{ limit time.Duration }

func (e errBodyTimeout) Error() string {
	return fmt.Sprintf("the request body did not arrive within %s (ingest.body_timeout); send it in one go, or in smaller batches", e.limit)
}

type errBodyTooLarge struct{ limit int64 }

func (e errBodyTooLarge) Error() string {
	return fmt.Sprintf("request body above the %d-byte limit; send smaller batches (ingest.max_body_bytes)", e.limit)
}

// statusOf maps an error to its HTTP status code and a stable error code.
func statusOf(err error) (int, string) {
	var tooMany reading.ErrTooManyRecords
	var tooLarge errBodyTooLarge
	var recordTooLarge *ingest.RecordTooLargeError
	var bodyTimeout errBodyTimeout
	switch {
	case errors.Is(err, errUnauthenticated):
		return http.StatusUnauthorized, "unauthenticated"
	case errors.Is(err, ErrSubjectBound):
		return http.StatusForbidden, "subject-bound-token"
	case errors.Is(err, errForbidden):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, reading.ErrUnsupportedMedia):
		return http.StatusUnsupportedMediaType, "unsupported-media-type"
	case errors.As(err, &tooMany):
		return http.StatusRequestEntityTooLarge, "batch-too-large"
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, "body-too-large"
	case errors.As(err, &recordTooLarge):
		return http.StatusRequestEntityTooLarge, reading.CodeRecordTooLarge
	case errors.As(err, &bodyTimeout):
		return http.StatusRequestTimeout, "body-timeout"
	case errors.Is(err, ingest.ErrOverloaded):
		return http.StatusTooManyRequests, "overloaded"
	case errors.Is(err, ingest.ErrUnconfirmed):
		return http.StatusServiceUnavailable, "unconfirmed"
	case errors.Is(err, ingest.ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest, "bad-request"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "timeout"
	}
	return http.StatusInternalServerError, "internal"
}

// WriteError writes the error body of SPEC §13 (httpapi.WriteError) with the status and code
// statusOf maps err to.
func WriteError(w http.ResponseWriter, err error) {
	code, name := statusOf(err)
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	httpapi.WriteError(w, code, name, err.Error())
}
