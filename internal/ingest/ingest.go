// Package ingest is pulselake's front door: it turns payloads received over HTTP, MQTT or
// from files into batch envelopes in the ingest stream. Every record is parsed, validated and
// normalized; accepted readings are de-duplicated on their identity; rejected records are
// kept with their reasons (the quarantine zone). A payload is acknowledged only after the
// stream stored it.
//
// Intake is bounded: request bodies in flight are limited in bytes, and beyond the limit
// callers get ErrOverloaded (HTTP 429 with Retry-After) rather than an unbounded queue.
//
// Ingester is safe for concurrent use. MQTT runs one goroutine owned by RunMQTT.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

// Errors the HTTP layer maps to status codes.
var (
	ErrOverloaded  = errors.New("too many readings in flight; retry after a second")
	ErrUnavailable = errors.New("the stream is unavailable; retry later")
	ErrEmpty       = errors.New("the batch holds no readings")
)

// Options configures an Ingester. Zero values take the documented defaults.
type Options struct {
	MaxBatch         int           // readings per request (default 10000)
	MaxBodyBytes     int64         // bytes per request body (default 16 MiB)
	MaxInflightBytes int64         // bytes of bodies being processed at once (default 256 MiB)
	DedupWindow      time.Duration // identities remembered (default 2m; 0 with DedupMaxEntries 0 disables)
	DedupMaxEntries  int           // identities remembered at most (default 2,000,000)
}

func (o *Options) defaults() {
	if o.MaxBatch == 0 {
		o.MaxBatch = 10000
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 16 << 20
	}
	if o.MaxInflightBytes == 0 {
		o.MaxInflightBytes = 256 << 20
	}
	if o.DedupWindow == 0 {
		o.DedupWindow = 2 * time.Minute
	}
	if o.DedupMaxEntries == 0 {
		o.DedupMaxEntries = 2_000_000
	}
}

// Publisher stores a batch durably and reports how many of its messages were duplicates.
type Publisher func(ctx context.Context, b *stream.Batch) (int, error)

// Ingester validates records and writes them to the stream.
type Ingester struct {
	opts     Options
	reg      *reading.Registry
	publish  Publisher
	log      *slog.Logger
	win      *window
	inflight *semaphore.Weighted
	parsers  sync.Pool
	m        metrics
}

type metrics struct {
	readings *prometheus.CounterVec
	rejects  *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	overload prometheus.Counter
}

// New returns an Ingester writing through publish.
func New(log *slog.Logger, reg prometheus.Registerer, kinds *reading.Registry, publish Publisher, o Options) *Ingester {
	o.defaults()
	in := &Ingester{
		opts: o, reg: kinds, publish: publish, log: log,
		win:      newWindow(o.DedupWindow, o.DedupMaxEntries),
		inflight: semaphore.NewWeighted(o.MaxInflightBytes),
	}
	in.parsers.New = func() any { return reading.NewParser(kinds) }
	in.m = metrics{
		readings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulselake_ingest_readings_total", Help: "Readings received, by source, kind and outcome (accepted, duplicate, rejected).",
		}, []string{"source", "kind", "outcome"}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulselake_ingest_rejected_total", Help: "Rejected records by error code.",
		}, []string{"source", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pulselake_ingest_batch_seconds", Help: "Time from receiving a batch to its durable storage in the stream.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"source"}),
		overload: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulselake_ingest_overload_total", Help: "Requests refused with 429 because too many bytes were in flight.",
		}),
	}
	reg.MustRegister(in.m.readings, in.m.rejects, in.m.latency, in.m.overload,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pulselake_ingest_dedup_identities", Help: "Reading identities remembered for de-duplication.",
		}, func() float64 { return float64(in.win.size()) }))
	return in
}

// Limits returns the effective options.
func (in *Ingester) Limits() Options { return in.opts }

// Acquire reserves n bytes of intake for a request body; it fails fast with ErrOverloaded.
// The caller must call the returned release.
func (in *Ingester) Acquire(n int64) (release func(), err error) {
	n = min(max(n, 1), in.opts.MaxInflightBytes)
	if !in.inflight.TryAcquire(n) {
		in.m.overload.Inc()
		return nil, ErrOverloaded
	}
	return func() { in.inflight.Release(n) }, nil
}

// Record is one payload as received.
type Record struct {
	Raw    []byte
	Origin string // e.g. the MQTT topic
	// Kind and Device given by the transport (MQTT topic); the payload may omit them.
	Kind, Device string
}

// Rejection says why one record was rejected (SPEC §4 response body).
type Rejection struct {
	Index   int    `json:"index"`
	Code    string `json:"code"`
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Result is the outcome of a batch.
type Result struct {
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Rejected   []Rejection `json:"rejected"`
}

// Ingest validates records and stores the batch. The token limits which subjects may be
// written when it is bound to one. On error nothing of the batch is acknowledged.
func (in *Ingester) Ingest(ctx context.Context, source string, tok token.Token, recs []Record) (Result, error) {
	start := time.Now()
	p := in.parsers.Get().(*reading.Parser)
	defer in.parsers.Put(p)

	res := Result{Rejected: []Rejection{}}
	entries := make([]stream.Entry, len(recs))
	ids := make([]reading.ID, 0, len(recs))
	readings := make([]reading.Reading, len(recs))
	for i, rec := range recs {
		e := &entries[i]
		e.Raw, e.Origin = rec.Raw, rec.Origin
		r, errs := p.ParseWith(rec.Raw, rec.Kind, rec.Device)
		if errs == nil && !tok.Sees(r.Subject) {
			errs = reading.Errors{{Code: reading.CodeSubjectNotAllow, Path: "/subject",
				Message: fmt.Sprintf("this token may only send readings of subject %q", tok.Subject)}}
		}
		if errs != nil {
			e.Errors = errs
			for _, fe := range errs {
				res.Rejected = append(res.Rejected, Rejection{Index: i, Code: fe.Code, Path: fe.Path, Message: fe.Message})
			}
			continue
		}
		readings[i] = r
		e.Reading = &readings[i]
		e.Identity = r.Identity()
		ids = append(ids, e.Identity)
	}

	mine, dup := in.win.claim(ids)
	batch := &stream.Batch{Source: source, Received: start.UTC(), Token: tok.ID, Entries: entries[:0]}
	j := 0
	for i := range entries {
		e := entries[i]
		if e.Accepted() {
			isDup := dup[j]
			j++
			if isDup {
				res.Duplicates++
				in.m.readings.WithLabelValues(source, e.Reading.Kind, "duplicate").Inc()
				continue
			}
			res.Accepted++
		}
		batch.Entries = append(batch.Entries, e)
	}
	_, err := in.publish(ctx, batch)
	in.win.settle(mine, err == nil)
	if err != nil {
		if ctx.Err() != nil { // the sender went away or serve is stopping: nothing was acknowledged
			in.log.Info("batch not stored: its request ended first; the sender was not acknowledged and sends it again", "source", source, "records", len(recs))
		} else {
			in.log.Error("storing batch failed", "source", source, "records", len(recs), "err", err)
		}
		return Result{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, e := range batch.Entries {
		if e.Accepted() {
			in.m.readings.WithLabelValues(source, e.Reading.Kind, "accepted").Inc()
		} else {
			in.m.readings.WithLabelValues(source, "unknown", "rejected").Inc()
			in.m.rejects.WithLabelValues(source, e.Errors[0].Code).Inc()
		}
	}
	in.m.latency.WithLabelValues(source).Observe(time.Since(start).Seconds())
	return res, nil
}

// Recover rebuilds the de-duplication window from the batches stored in the last window,
// so readings re-sent after a restart are still recognised as duplicates.
func (in *Ingester) Recover(ctx context.Context, conn *stream.Conn) error {
	if in.opts.DedupMaxEntries == 0 {
		return nil
	}
	s, err := conn.JS.Stream(ctx, stream.IngestStream)
	if err != nil {
		return fmt.Errorf("recovering de-duplication window: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("recovering de-duplication window: %w", err)
	}
	since := time.Now().Add(-in.opts.DedupWindow)
	if info.State.Msgs == 0 || info.State.LastTime.Before(since) {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{stream.IngestSubjects},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
	})
	if err != nil {
		return fmt.Errorf("recovering de-duplication window: %w", err)
	}
	p := reading.NewParser(in.reg)
	n := 0
	for seq := uint64(0); seq < info.State.LastSeq; {
		batch, err := c.Fetch(256, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("recovering de-duplication window: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if md, err := m.Metadata(); err == nil {
				seq = md.Sequence.Stream
			}
			b, err := stream.Decode(m.Data(), p)
			if err != nil {
				in.log.Warn("skipping unreadable batch while recovering de-duplication window", "err", err)
				continue
			}
			for _, e := range b.Entries {
				if e.Accepted() {
					in.win.remember(e.Identity, b.Received)
					n++
				}
			}
		}
		if got == 0 {
			break
		}
	}
	in.log.Info("recovered de-duplication window", "identities", n, "since", since.Format(time.RFC3339))
	return nil
}
