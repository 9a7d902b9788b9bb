package web

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/httpapi"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

// Event is one server-sent event of the live feed (GET /v1/events): a reading, a rejected
// record, an alert, a prediction, an anomaly, or a per-second summary.
type Event struct {
	Type string `json:"type"` // reading, rejected, alert, prediction, anomaly, summary
	Data any    `json:"data"`
	// Subject is whose data the event carries, "" when it is nobody's in particular. A
	// subscriber gets the event only if its token Sees the subject: a subject-bound token gets
	// only its subject's events, never one without a subject.
	Subject string `json:"-"`
}

// Hub fans live events out to subscribers. While anyone listens it follows the ingest stream
// from its end (an ordered consumer); other packages publish alerts and predictions into it.
// Each subscriber has a bounded buffer: a slow browser misses events (counted) rather than
// slowing anything down. Reading and rejected-record events are sampled to at most
// MaxReadingsPerSecond per second and subscriber (so other subjects' traffic cannot crowd a
// subject-bound subscriber's readings out); the summary event always carries the full counts
// of what the subscriber may see.
type Hub struct {
	conn     *stream.Conn
	consumer *stream.Consumer // live: acknowledges nothing, skips what it cannot decode
	log      *slog.Logger
	dropped  prometheus.Counter

	tallyMu sync.Mutex
	tally   tally

	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	cancel  context.CancelFunc
	stopped chan struct{}
}

// subscriber is one GET /v1/events client.
type subscriber struct {
	ch     chan Event
	tok    token.Token
	budget int // sampled events left this second; guarded by Hub.mu
	// subject, when set (GET /v1/events?subject=id), keeps only that subject's events and
	// the summary.
	subject string
}

// wants reports whether sub gets an event of subject: its token sees it, and it is the
// subject asked for, if any.
func (sub *subscriber) wants(subject string) bool {
	return sub.tok.Sees(subject) && (sub.subject == "" || sub.subject == subject)
}

// MaxReadingsPerSecond bounds the reading events sent to each subscriber.
const MaxReadingsPerSecond = 400

const subscriberBuffer = 1024

// liveConsumer names the live feed's consumer in logs and metrics.
const liveConsumer = "live-feed"

// NewHub returns a hub over the ingest stream (none when conn is nil). Like MustRegister, it
// panics when its metrics cannot be registered.
func NewHub(log *slog.Logger, reg prometheus.Registerer, conn *stream.Conn, kinds *reading.Registry) *Hub {
	h := &Hub{conn: conn, log: log, subs: map[*subscriber]struct{}{}, tally: newTally()}
	h.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pulselake_events_dropped_total", Help: "Live events not delivered to a slow subscriber.",
	})
	reg.MustRegister(h.dropped)
	if conn != nil {
		c, err := stream.NewConsumer(log, reg, stream.ConsumerOptions{Name: liveConsumer, Kinds: kinds, Mode: stream.ModeLive,
			Handle: h.handle, FetchMessages: 1000, FetchWait: 5 * time.Second})
		if err != nil {
			panic(err)
		}
		h.consumer = c
	}
	return h
}

// Publish sends an event, without blocking, to every subscriber whose token sees its subject.
func (h *Hub) Publish(e Event) { h.deliver(e, false) }

// deliver sends e to the subscribers that see its subject; sampled events count against each
// subscriber's per-second budget.
func (h *Hub) deliver(e Event, sampled bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		if !sub.wants(e.Subject) {
			continue
		}
		if sampled {
			if sub.budget <= 0 {
				continue
			}
			sub.budget--
		}
		h.send(sub, e)
	}
}

func (h *Hub) send(sub *subscriber, e Event) {
	select {
	case sub.ch <- e:
	default:
		h.dropped.Inc()
	}
}

// publishSummary sends each subscriber the counts of the last second that it may see and
// renews its sampling budget: an unbound token gets every kind's count and the rejected
// records, a subject-bound one its subject's counts only (rejected records have no trusted
// subject).
func (h *Hub) publishSummary(now time.Time, counts map[string]int, bySubject map[string]map[string]int, rejected int) {
	all := Event{Type: "summary", Data: map[string]any{"readings": counts, "rejected": rejected, "time": now}}
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		sub.budget = MaxReadingsPerSecond
		subject := sub.subject
		if sub.tok.Bound() {
			subject = sub.tok.Subject
		}
		if subject == "" {
			h.send(sub, all)
			continue
		}
		own := bySubject[subject]
		if own == nil {
			own = map[string]int{}
		}
		h.send(sub, Event{Type: "summary", Subject: subject, Data: map[string]any{"readings": own, "time": now}})
	}
}

func (h *Hub) subscribe(tok token.Token, subject string) *subscriber {
	sub := &subscriber{ch: make(chan Event, subscriberBuffer), tok: tok, budget: MaxReadingsPerSecond, subject: subject}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[sub] = struct{}{}
	if h.cancel == nil && h.conn != nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel, h.stopped = cancel, make(chan struct{})
		go h.follow(ctx, h.stopped)
	}
	return sub
}

func (h *Hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	delete(h.subs, sub)
	var stop context.CancelFunc
	var stopped chan struct{}
	if len(h.subs) == 0 && h.cancel != nil {
		stop, stopped = h.cancel, h.stopped
		h.cancel = nil
	}
	h.mu.Unlock()
	if stop != nil {
		stop()
		<-stopped
	}
}

// Close stops following the stream.
func (h *Hub) Close() {
	h.mu.Lock()
	stop, stopped := h.cancel, h.stopped
	h.cancel = nil
	h.mu.Unlock()
	if stop != nil {
		stop()
		<-stopped
	}
}

// follow reads new batches from the ingest stream and publishes their readings, and every
// second the counts of what it saw.
func (h *Hub) follow(ctx context.Context, done chan struct{}) {
	defer close(done)
	// An ordered consumer from the message after the stream's last one: it starts there
	// again (not "new" at that later time) if it is reset before delivering anything.
	s, err := h.conn.JS.Stream(ctx, stream.IngestStream)
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = s.Info(ctx)
	}
	var c jetstream.Consumer
	if err == nil {
		c, err = h.conn.JS.OrderedConsumer(ctx, stream.IngestStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{stream.IngestSubjects}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq: info.State.LastSeq + 1,
		})
	}
	if err != nil {
		h.log.Warn("live feed: following the stream", "err", err)
		return
	}
	h.tallyMu.Lock()
	h.tally = newTally()
	h.tallyMu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				h.tallyMu.Lock()
				t := h.tally
				h.tally = newTally()
				h.tallyMu.Unlock()
				h.publishSummary(time.Now().UTC(), t.counts, t.bySubject, t.rejected)
			}
		}
	})
	_ = h.consumer.Run(ctx, c) // a live consumer returns only when ctx ends
}

// tally counts what the feed saw in the current second.
type tally struct {
	counts    map[string]int            // by kind
	bySubject map[string]map[string]int // by subject and kind
	rejected  int
}

func newTally() tally {
	return tally{counts: map[string]int{}, bySubject: map[string]map[string]int{}}
}

// handle publishes the records of one batch (sampled) and counts them.
func (h *Hub) handle(_ context.Context, m *stream.Msg) error {
	b := &m.Batch
	for _, e := range b.Entries {
		if !e.Accepted() {
			// A rejected record's subject is unvalidated: the event is nobody's, so
			// subject-bound subscribers never get it.
			h.tallyMu.Lock()
			h.tally.rejected++
			h.tallyMu.Unlock()
			h.deliver(Event{Type: "rejected", Data: map[string]any{"source": b.Source, "errors": e.Errors, "origin": e.Origin}}, true)
			continue
		}
		r := e.Reading
		h.tallyMu.Lock()
		h.tally.counts[r.Kind]++
		own := h.tally.bySubject[r.Subject]
		if own == nil {
			own = map[string]int{}
			h.tally.bySubject[r.Subject] = own
		}
		own[r.Kind]++
		h.tallyMu.Unlock()
		if r.Samples == nil {
			h.deliver(Event{Type: "reading", Subject: r.Subject, Data: r}, true)
		}
	}
	return nil
}

// serveEvents streams events as text/event-stream until the client goes away.
// Each subscriber gets only the events its token sees (Event.Subject) and, with ?subject=id,
// only that subject's events (the patient view), with the summary counting that subject only.
func (h *Hub) serveEvents(w http.ResponseWriter, r *http.Request, closing <-chan struct{}, tok token.Token) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", "the connection cannot stream events")
		return
	}
	subject := r.URL.Query().Get("subject")
	if len(subject) > 256 {
		httpapi.WriteError(w, http.StatusBadRequest, "bad-request", "subject is longer than 256 characters")
		return
	}
	if subject != "" && !tok.Sees(subject) {
		httpapi.WriteError(w, http.StatusForbidden, "forbidden", "your token is bound to another subject; it shows only its own subject's events")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": pulselake live feed\n\n")
	fl.Flush()
	sub := h.subscribe(tok, subject)
	defer h.unsubscribe(sub)
	ch := sub.ch
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-closing:
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
		case e := <-ch:
			data, err := json.Marshal(e.Data)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, data)
			// Send whatever else is ready before flushing.
			for drained := false; !drained; {
				select {
				case e := <-ch:
					if data, err := json.Marshal(e.Data); err == nil {
						fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Type, data)
					}
				default:
					drained = true
				}
			}
			fl.Flush()
		}
	}
}
