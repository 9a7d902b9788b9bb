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

	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
)

// Event is one server-sent event of the live feed (GET /v1/events): a reading, a rejected
// record, an alert, a prediction, or a per-second summary.
type Event struct {
	Type string `json:"type"` // reading, rejected, alert, prediction, summary
	Data any    `json:"data"`
}

// Hub fans live events out to subscribers. While anyone listens it follows the ingest stream
// from its end (an ordered consumer); other packages publish alerts and predictions into it.
// Each subscriber has a bounded buffer: a slow browser misses events (counted) rather than
// slowing anything down. Readings are sampled to at most MaxReadingsPerSecond per second;
// the summary event always carries the full counts.
type Hub struct {
	conn    *stream.Conn
	kinds   *reading.Registry
	log     *slog.Logger
	dropped prometheus.Counter

	mu      sync.Mutex
	subs    map[chan Event]struct{}
	cancel  context.CancelFunc
	stopped chan struct{}
}

// MaxReadingsPerSecond bounds the reading events sent to each subscriber.
const MaxReadingsPerSecond = 400

const subscriberBuffer = 1024

// NewHub returns a hub over the ingest stream.
func NewHub(log *slog.Logger, reg prometheus.Registerer, conn *stream.Conn, kinds *reading.Registry) *Hub {
	h := &Hub{conn: conn, kinds: kinds, log: log, subs: map[chan Event]struct{}{}}
	h.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pulselake_events_dropped_total", Help: "Live events not delivered to a slow subscriber.",
	})
	reg.MustRegister(h.dropped)
	return h
}

// Publish sends an event to every subscriber without blocking.
func (h *Hub) Publish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- e:
		default:
			h.dropped.Inc()
		}
	}
}

func (h *Hub) subscribe() chan Event {
	ch := make(chan Event, subscriberBuffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[ch] = struct{}{}
	if h.cancel == nil && h.conn != nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel, h.stopped = cancel, make(chan struct{})
		go h.follow(ctx, h.stopped)
	}
	return ch
}

func (h *Hub) unsubscribe(ch chan Event) {
	h.mu.Lock()
	delete(h.subs, ch)
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
	counts := map[string]int{}
	rejected, budget := 0, MaxReadingsPerSecond
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
			h.Publish(Event{Type: "summary", Data: map[string]any{"readings": counts, "rejected": rejected, "time": time.Now().UTC()}})
			counts, rejected, budget = map[string]int{}, 0, MaxReadingsPerSecond
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
					rejected++
					if budget > 0 {
						budget--
						h.Publish(Event{Type: "rejected", Data: map[string]any{"source": b.Source, "errors": e.Errors, "origin": e.Origin}})
					}
					continue
				}
				counts[e.Reading.Kind]++
				if budget > 0 && e.Reading.Samples == nil {
					budget--
					h.Publish(Event{Type: "reading", Data: e.Reading})
				}
			}
		}
	}
}

// serveEvents streams events as text/event-stream until the client goes away.
func (h *Hub) serveEvents(w http.ResponseWriter, r *http.Request, closing <-chan struct{}) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": pulselake live feed\n\n")
	fl.Flush()
	ch := h.subscribe()
	defer h.unsubscribe(ch)
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
