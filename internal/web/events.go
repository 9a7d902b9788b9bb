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
	conn    *stream.Conn
	kinds   *reading.Registry
	log     *slog.Logger
	dropped prometheus.Counter

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
}

// MaxReadingsPerSecond bounds the reading events sent to each subscriber.
const MaxReadingsPerSecond = 400

const subscriberBuffer = 1024

// NewHub returns a hub over the ingest stream.
func NewHub(log *slog.Logger, reg prometheus.Registerer, conn *stream.Conn, kinds *reading.Registry) *Hub {
	h := &Hub{conn: conn, kinds: kinds, log: log, subs: map[*subscriber]struct{}{}}
	h.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pulselake_events_dropped_total", Help: "Live events not delivered to a slow subscriber.",
	})
	reg.MustRegister(h.dropped)
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
		if !sub.tok.Sees(e.Subject) {
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
		if !sub.tok.Bound() {
			h.send(sub, all)
			continue
		}
		own := bySubject[sub.tok.Subject]
		if own == nil {
			own = map[string]int{}
		}
		h.send(sub, Event{Type: "summary", Subject: sub.tok.Subject, Data: map[string]any{"readings": own, "time": now}})
	}
}

func (h *Hub) subscribe(tok token.Token) *subscriber {
	sub := &subscriber{ch: make(chan Event, subscriberBuffer), tok: tok, budget: MaxReadingsPerSecond}
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

// follow reads new batches from the ingest stream and publishes their readings.
func (h *Hub) follow(ctx context.Context, done chan struct{}) {
	defer close(done)
	c, err := h.conn.JS.OrderedConsumer(ctx, stream.IngestStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{stream.IngestSubjects}, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		h.log.Warn("live feed: following the stream", "err", err)
		return
	}
	p := reading.NewParser(h.kinds)
	counts, bySubject := map[string]int{}, map[string]map[string]int{}
	rejected := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	msgs, err := c.Messages(jetstream.PullMaxBytes(stream.FollowerPullBytes))
	if err != nil {
		h.log.Warn("live feed: following the stream", "err", err)
		return
	}
	defer msgs.Stop()
	next := make(chan jetstream.Msg)
	go func() {
		defer close(next)
		for {
			m, err := msgs.Next()
			if err != nil {
				return
			}
			select {
			case next <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			msgs.Stop()
			for range next {
			}
			return
		case <-tick.C:
			h.publishSummary(time.Now().UTC(), counts, bySubject, rejected)
			counts, bySubject, rejected = map[string]int{}, map[string]map[string]int{}, 0
		case m, ok := <-next:
			if !ok {
				return
			}
			b, err := stream.Decode(m.Data(), p)
			if err != nil {
				continue
			}
			for _, e := range b.Entries {
				if !e.Accepted() {
					// A rejected record's subject is unvalidated: the event is nobody's, so
					// subject-bound subscribers never get it.
					rejected++
					h.deliver(Event{Type: "rejected", Data: map[string]any{"source": b.Source, "errors": e.Errors, "origin": e.Origin}}, true)
					continue
				}
				r := e.Reading
				counts[r.Kind]++
				own := bySubject[r.Subject]
				if own == nil {
					own = map[string]int{}
					bySubject[r.Subject] = own
				}
				own[r.Kind]++
				if r.Samples == nil {
					h.deliver(Event{Type: "reading", Subject: r.Subject, Data: r}, true)
				}
			}
		}
	}
}

// serveEvents streams events as text/event-stream until the client goes away.
// Each subscriber gets only the events its token sees (Event.Subject).
func (h *Hub) serveEvents(w http.ResponseWriter, r *http.Request, closing <-chan struct{}, tok token.Token) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpapi.WriteError(w, http.StatusInternalServerError, "internal", "the connection cannot stream events")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": pulselake live feed\n\n")
	fl.Flush()
	sub := h.subscribe(tok)
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
