// Package ingest is pulselake's front door: it turns payloads received over HTTP, MQTT or
// from files into batch envelopes in the ingest stream. Every record is parsed, validated and
// normalized; accepted readings are de-duplicated on their identity; rejected records are
// kept with their reasons (the quarantine zone). A payload is acknowledged only after the
// stream stored it.
//
// Intake is bounded in memory and flows at the stream's pace:
//   - every request is charged against ingest.max_inflight_bytes for what it really holds:
//     its body as the bytes arrive (ReadBody), then the parsed readings and the envelope
//     (Ingest, costPerRecord and costPerByte below). Beyond the limit callers get
//     ErrOverloaded (HTTP 429 with Retry-After) rather than an unbounded queue;
//   - the stream connection bounds the bytes sent and not yet stored (stream.Conn's publish
//     window); a batch that finds no room in time is refused with ErrOverloaded too, before
//     anything of it was sent;
//   - ErrUnavailable (HTTP 503) is for a stream that is down or refuses the batch. Its
//     message says whether the batch may have been stored (the acknowledgement was lost);
//     a re-send is always safe, it is de-duplicated.
//
// Ingester is safe for concurrent use; RunMQTT stores several MQTT batches at once through it.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
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
	// ErrUnconfirmed wraps ErrUnavailable when the batch was sent but its storage was not
	// confirmed: it may be stored. Sending it again is safe.
	ErrUnconfirmed = fmt.Errorf("%w: the batch may have been stored (its acknowledgement was lost); send it again, re-sent readings are de-duplicated", ErrUnavailable)
	ErrEmpty       = errors.New("the batch holds no readings")
	// ErrBodyTooLarge: the request body is above MaxBodyBytes.
	ErrBodyTooLarge = errors.New("request body too large")
)

// RecordTooLargeError: one record cannot be stored because it alone exceeds the stream's
// message limit; nothing of the batch was stored. It is not worth retrying.
type RecordTooLargeError struct {
	Index       int // index of the record in the request
	Size, Limit int
}

func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("record %d is too large to store: %d bytes in the stream, above the %d-byte message limit; nothing of the batch was stored; split the reading (fewer samples) or send it as several readings",
		e.Index, e.Size, e.Limit)
}

// Options configures an Ingester. Zero values take the documented defaults.
type Options struct {
	MaxBatch         int           // readings per request (default 10000)
	MaxBodyBytes     int64         // bytes per request body (default 16 MiB)
	MaxInflightBytes int64         // bytes of bodies being processed at once (default 256 MiB)
	DedupWindow      time.Duration // identities remembered (default 2m; 0 with DedupMaxEntries 0 disables)
	DedupMaxEntries  int           // identities remembered at most (default 500,000)
	BodyTimeout      time.Duration // longest a request body may take to arrive (default 30s)
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
		o.DedupMaxEntries = 500_000
	}
	if o.BodyTimeout == 0 {
		o.BodyTimeout = 30 * time.Second
	}
}

// The memory a request holds beyond its body while it is validated and stored, charged
// against MaxInflightBytes. TestRequestCost measures it (allocations of Ingest with the
// envelope encoded and copied as the stream connection does, batches of 1,000 and 10,000
// blood-pressure readings of 139 bytes): about 1,500 bytes per reading, 11× the body. Per
// record: the parsed reading with its values map, entry, identity and record slices; per
// body byte: the envelope (the reading re-encoded beside the raw record, about twice the
// payload) and the stream client's copy of it.
const (
	costPerRecord = 1000
	costPerByte   = 5
)

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
	charged  atomic.Int64
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
			Name: "pulselake_ingest_overload_total", Help: "Requests and MQTT batches refused (HTTP 429) because intake held too much memory or the stream was busy.",
		}),
	}
	reg.MustRegister(in.m.readings, in.m.rejects, in.m.latency, in.m.overload,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pulselake_ingest_inflight_bytes", Help: "Memory charged to requests in flight (bodies, parsed readings, envelopes); bounded by ingest.max_inflight_bytes.",
		}, func() float64 { return float64(in.charged.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pulselake_ingest_dedup_identities", Help: "Reading identities remembered for de-duplication.",
		}, func() float64 { return float64(in.win.size()) }))
	return in
}

// Limits returns the effective options.
func (in *Ingester) Limits() Options { return in.opts }

// charge reserves n bytes of the in-flight limit without waiting; false means overloaded.
func (in *Ingester) charge(n int64) bool {
	n = min(max(n, 1), in.opts.MaxInflightBytes)
	if !in.inflight.TryAcquire(n) {
		return false
	}
	in.charged.Add(n)
	return true
}

func (in *Ingester) uncharge(n int64) {
	n = min(max(n, 1), in.opts.MaxInflightBytes)
	in.charged.Add(-n)
	in.inflight.Release(n)
}

// bodyChunk is the smallest step in which ReadBody grows its buffer.
const bodyChunk = 64 << 10

// ReadBody reads a request body of at most MaxBodyBytes. The memory it holds is charged to
// the in-flight limit as it grows with the bytes that actually arrived, never reserved up
// front: a slow sender holds only what it sent. sizeHint is the declared length (-1 when
// unknown); it sizes the buffer, never the charge. Errors: ErrOverloaded, ErrBodyTooLarge,
// or the reader's error (a read deadline, a client gone). The caller must call release
// once the body is no longer used (also on error).
func (in *Ingester) ReadBody(r io.Reader, sizeHint int64) (body []byte, release func(), err error) {
	limit := in.opts.MaxBodyBytes
	var held int64
	release = func() {
		if held > 0 {
			in.uncharge(held)
			held = 0
		}
	}
	buf := []byte(nil)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return nil, release, ErrBodyTooLarge
			}
			// Grow geometrically, to the declared length when there is one (plus one byte
			// to see the end), never past the limit plus one byte.
			next := max(2*int64(cap(buf)), bodyChunk)
			if sizeHint >= 0 && sizeHint+1 > int64(len(buf)) {
				next = min(next, sizeHint+1)
			}
			next = min(next, limit+1)
			release() // the old buffer is garbage once copied
			if !in.charge(next) {
				in.m.overload.Inc()
				return nil, release, ErrOverloaded
			}
			held = next
			nb := make([]byte, len(buf), next)
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, release, ErrBodyTooLarge
		}
		if err == io.EOF {
			return buf, release, nil
		}
		if err != nil {
			return nil, release, err
		}
	}
}

// Record is one payload as received.
type Record struct {
	Raw    []byte
	Origin string // e.g. the MQTT topic
	// Kind and Device given by the transport (MQTT topic); the payload may omit them.
	Kind, Device string
	// TooLarge marks a record that cannot be stored whole (RecordTooLargeError on an
	// earlier try): it is kept rejected, with code record-too-large and the first
	// keptPrefix bytes of its payload. Used where no client can be told (MQTT).
	TooLarge bool
	// Reading, when set, is Raw already read by the format's own reader (FHIR, exports):
	// Raw is not parsed again. The reading is checked by the same rules as a parsed one
	// (reading.Parser.Check, which normalizes it in place) and stored, Raw kept beside it
	// as received.
	Reading *reading.Reading
	// Rejected, when set, says why the format's own reader refused Raw: it is kept in
	// quarantine with these errors.
	Rejected reading.Errors
}

// keptPrefix is how much of a record too large to store is kept in quarantine.
const keptPrefix = 64 << 10

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
	// DuplicateIndexes are the request indexes of the duplicates, in order.
	DuplicateIndexes []int `json:"-"`
}

// Ingest validates records and stores the batch. The token limits which subjects may be
// written when it is bound to one. On error nothing of the batch is acknowledged.
func (in *Ingester) Ingest(ctx context.Context, source string, tok token.Token, recs []Record) (Result, error) {
	start := time.Now()
	cost := batchCost(recs)
	if !in.charge(cost) {
		in.m.overload.Inc()
		return Result{}, ErrOverloaded
	}
	defer in.uncharge(cost)

	res := Result{Rejected: []Rejection{}}
	entries, ids := in.parseRecords(tok, recs, &res)
	mine, dup := in.win.claim(ids)
	batch := &stream.Batch{Source: source, Received: start.UTC(), Token: tok.ID}
	index := in.dropDuplicates(batch, entries, dup, &res)
	_, err := in.publish(ctx, batch)
	in.win.settle(mine, err == nil)
	if err != nil {
		return Result{}, in.publishError(ctx, source, len(recs), index, err)
	}
	in.countStored(source, batch)
	in.m.latency.WithLabelValues(source).Observe(time.Since(start).Seconds())
	return res, nil
}

// batchCost is what recs are charged against the intake budget.
func batchCost(recs []Record) int64 {
	cost := int64(costPerRecord * len(recs))
	for _, rec := range recs {
		cost += costPerByte * int64(len(rec.Raw))
	}
	return cost
}

// parseRecords turns each record into a stream entry: a parsed reading the token may
// write, or the payload with its errors, which are also added to res. It returns the
// entries, one per record, and the identities of the accepted ones in order.
func (in *Ingester) parseRecords(tok token.Token, recs []Record, res *Result) ([]stream.Entry, []reading.ID) {
	p := in.parsers.Get().(*reading.Parser)
	defer in.parsers.Put(p)
	entries := make([]stream.Entry, len(recs))
	ids := make([]reading.ID, 0, len(recs))
	var readings []reading.Reading // those parsed here; typed ones are used where they are
	for i := range recs {
		rec := &recs[i]
		e := &entries[i]
		e.Raw, e.Origin = rec.Raw, rec.Origin
		if rec.TooLarge {
			e.Raw = rec.Raw[:min(len(rec.Raw), keptPrefix)]
			e.Errors = reading.Errors{{Code: reading.CodeRecordTooLarge, Message: fmt.Sprintf(
				"record of %d bytes is too large to store; only its first %d bytes are kept", len(rec.Raw), len(e.Raw))}}
			res.Rejected = append(res.Rejected, Rejection{Index: i, Code: reading.CodeRecordTooLarge, Message: e.Errors[0].Message})
			continue
		}
		var r *reading.Reading
		var errs reading.Errors
		switch {
		case rec.Rejected != nil:
			errs = rec.Rejected
		case rec.Reading != nil:
			r, errs = rec.Reading, p.Check(rec.Reading)
		default:
			if readings == nil {
				readings = make([]reading.Reading, len(recs))
			}
			readings[i], errs = p.ParseWith(rec.Raw, rec.Kind, rec.Device)
			r = &readings[i]
		}
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
		e.Reading = r
		e.Identity = r.Identity()
		ids = append(ids, e.Identity)
	}
	return entries, ids
}

// dropDuplicates fills batch with the entries except the accepted readings dup marks as
// already stored (dup has one flag per accepted entry, in order), counting both kinds in
// res. It returns the request index of each batch entry. batch.Entries reuses entries.
func (in *Ingester) dropDuplicates(batch *stream.Batch, entries []stream.Entry, dup []bool, res *Result) []int32 {
	batch.Entries = entries[:0]
	index := make([]int32, 0, len(entries))
	var dups kindCounts
	j := 0
	for i := range entries {
		e := entries[i]
		if e.Accepted() {
			isDup := dup[j]
			j++
			if isDup {
				res.Duplicates++
				res.DuplicateIndexes = append(res.DuplicateIndexes, i)
				dups.add(e.Reading.Kind)
				continue
			}
			res.Accepted++
		}
		batch.Entries = append(batch.Entries, e)
		index = append(index, int32(i))
	}
	dups.addTo(in.m.readings, batch.Source, "duplicate")
	return index
}

// kindCounts counts readings by a label (kind or error code) within a batch, so that the
// metrics are updated once per label and batch rather than once per reading. Batches hold
// few distinct labels: a slice is searched.
type kindCounts []struct {
	label string
	n     int
}

func (c *kindCounts) add(label string) {
	for i := range *c {
		if (*c)[i].label == label {
			(*c)[i].n++
			return
		}
	}
	*c = append(*c, struct {
		label string
		n     int
	}{label, 1})
}

// addTo adds the counts to v with labels (source, label, outcome), or (source, label)
// when outcome is "".
func (c kindCounts) addTo(v *prometheus.CounterVec, source, outcome string) {
	for _, k := range c {
		if outcome == "" {
			v.WithLabelValues(source, k.label).Add(float64(k.n))
		} else {
			v.WithLabelValues(source, k.label, outcome).Add(float64(k.n))
		}
	}
}

// publishError logs a batch of n records that was not stored and returns the error the
// caller sees; index maps batch entries back to request indexes.
func (in *Ingester) publishError(ctx context.Context, source string, n int, index []int32, err error) error {
	var tooLarge *stream.RecordTooLargeError
	switch {
	case errors.As(err, &tooLarge):
		return &RecordTooLargeError{Index: int(index[tooLarge.Entry]), Size: tooLarge.Size, Limit: tooLarge.Limit}
	case errors.Is(err, stream.ErrBusy):
		in.m.overload.Inc()
		return fmt.Errorf("%w (%v)", ErrOverloaded, err)
	case ctx.Err() != nil: // the sender went away or serve is stopping: nothing was acknowledged
		in.log.Info("batch not acknowledged: its request ended first; the sender sends it again", "source", source, "records", n, "err", err)
	default:
		in.log.Error("storing batch failed", "source", source, "records", n, "err", err)
	}
	if errors.Is(err, stream.ErrUnconfirmed) {
		return fmt.Errorf("%w (%v)", ErrUnconfirmed, err)
	}
	return fmt.Errorf("%w: nothing of the batch was stored (%v)", ErrUnavailable, err)
}

// countStored counts the readings of a stored batch by outcome.
func (in *Ingester) countStored(source string, batch *stream.Batch) {
	var accepted, rejected, codes kindCounts
	for _, e := range batch.Entries {
		if e.Accepted() {
			accepted.add(e.Reading.Kind)
		} else {
			rejected.add("unknown")
			codes.add(e.Errors[0].Code)
		}
	}
	accepted.addTo(in.m.readings, source, "accepted")
	rejected.addTo(in.m.readings, source, "rejected")
	codes.addTo(in.m.rejects, source, "")
}

// IngestWaiting is Ingest for sources that can wait instead of being refused (files,
// connectors, MQTT): when intake is overloaded it tries again until ctx ends, and a record
// too large to store is kept rejected (Record.TooLarge) since no client can be told.
func (in *Ingester) IngestWaiting(ctx context.Context, source string, recs []Record) (Result, error) {
	for {
		res, err := in.Ingest(ctx, source, token.Token{}, recs)
		var tooLarge *RecordTooLargeError
		switch {
		case errors.As(err, &tooLarge) && !recs[tooLarge.Index].TooLarge:
			in.log.Warn("record too large to store; kept rejected with the start of its payload", "source", source,
				"origin", recs[tooLarge.Index].Origin, "bytes", len(recs[tooLarge.Index].Raw))
			recs[tooLarge.Index].TooLarge = true
		case errors.Is(err, ErrOverloaded):
			select {
			case <-ctx.Done():
				return res, err
			case <-time.After(200 * time.Millisecond):
			}
		default:
			return res, err
		}
	}
}

// Recover rebuilds the de-duplication window from the batches stored in the last window,
// so readings re-sent after a restart are still recognised as duplicates.
func (in *Ingester) Recover(ctx context.Context, conn *stream.Conn) error {
	start := time.Now()
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
	n, bytes := 0, 0
	var ids []reading.ID
	p := in.parsers.Get().(*reading.Parser)
	defer in.parsers.Put(p)
	for seq := uint64(0); seq < info.State.LastSeq; {
		batch, err := c.Fetch(10000, jetstream.FetchMaxBytes(stream.FollowerPullBytes), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("recovering de-duplication window: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			bytes += len(m.Data())
			if md, err := m.Metadata(); err == nil {
				seq = md.Sequence.Stream
			}
			// Only the identities are needed: each derived from its reading's head, without
			// parsing the reading (p parses one not in the stored form).
			var received time.Time
			ids = ids[:0]
			err = stream.Identities(m.Data(), p, func(at time.Time, id reading.ID) {
				received = at
				ids = append(ids, id)
			})
			in.win.rememberAll(ids, received)
			n += len(ids)
			if err != nil {
				in.log.Warn("skipping unreadable batch while recovering de-duplication window", "err", err)
			}
		}
		if batch.Error() != nil && got == 0 {
			return fmt.Errorf("recovering de-duplication window: %w", batch.Error())
		}
		if got == 0 {
			break
		}
	}
	in.log.Info("recovered de-duplication window", "identities", n, "bytes", bytes, "took", time.Since(start).Round(time.Millisecond), "since", since.Format(time.RFC3339))
	return nil
}
