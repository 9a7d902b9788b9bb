// Package ecgstream classifies heartbeats as they arrive (docs/ecg.md, "Streaming"): a
// durable consumer of the ingest stream takes ecg_beat readings and the beats that the QRS
// detector cuts from ecg sample streams, classifies them (the built-in model, a model file or
// a KServe v2 server), and publishes each prediction back into the ingest stream as an
// ecg_prediction reading (so rules, the lake and the live feed see it), to ops.predictions
// and to the live feed.
//
// Invariants: a stream message is acknowledged once its predictions are stored in the
// stream; when classification or storing fails it is delivered again with a back-off, for as
// long as the stream keeps it (a model server that is down makes beats wait, never drops
// them). Its own predictions are never classified again.
//
// Concurrency: Run handles one message at a time; the package starts no goroutine that Run
// does not wait for.
package ecgstream

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/ecg"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
)

// Source is the stream source of predictions published back into the ingest stream
// (subject ingest.model.ecg, lake table landing.model_ecg).
const Source = "model:ecg"

// ConsumerName is the durable consumer of streaming classification.
const ConsumerName = "ecg"

// PredictionsTable is the ops table of predictions, with PredictionColumns.
const PredictionsTable = "predictions"

// PredictionColumns are the columns of ops.predictions: one row per classified beat.
var PredictionColumns = []lake.Column{
	{Name: "time", Type: lake.Timestamp},      // when the beat was classified
	{Name: "beat_time", Type: lake.Timestamp}, // the beat's R-peak time (ecg) or its reading's time (ecg_beat)
	{Name: "subject", Type: lake.String},
	{Name: "device", Type: lake.String},
	{Name: "model", Type: lake.String},
	{Name: "class", Type: lake.String},
	{Name: "score", Type: lake.Float64}, // probability of class
	{Name: "p_n", Type: lake.Float64},
	{Name: "p_s", Type: lake.Float64},
	{Name: "p_v", Type: lake.Float64},
	{Name: "p_f", Type: lake.Float64},
	{Name: "p_q", Type: lake.Float64},
	{Name: "run", Type: lake.Int64}, // consecutive beats of the device with this class
	{Name: "rr_known", Type: lake.Bool},
	{Name: "label", Type: lake.String},       // reference label of the source reading, if any
	{Name: "source_kind", Type: lake.String}, // ecg_beat or ecg
	{Name: "source_id", Type: lake.String},   // identity of the source reading
}

// Outputs are where the classifier's results go. Publish is required; the others may be nil.
type Outputs struct {
	// Publish stores a batch of predictions in the ingest stream (stream.Conn.Publish).
	Publish func(ctx context.Context, b *stream.Batch) (dupMsgs int, err error)
	// Row queues a row for the ops table (lake.RowBuffer.Add in zone ops).
	Row func(table string, cols []lake.Column, row []any)
	// Event publishes a prediction to the live feed.
	Event func(p ecg.LivePrediction)
	// Quarantine receives the stream messages the consumer terminated.
	Quarantine func(ctx context.Context, p stream.Poisoned) error
}

// Options configures a Classifier.
type Options struct {
	// Config is the ecg section of the configuration (defaults applied by New).
	Config ecg.Config
	// Dir resolves a relative Config.Model (the config file's directory).
	Dir string
	// JS is the JetStream whose ingest stream is consumed; Kinds decodes its readings.
	JS    jetstream.JetStream
	Kinds *reading.Registry
	Out   Outputs
}

// Classifier is streaming ECG classification. Create it with New, drive it with Run.
type Classifier struct {
	log      *slog.Logger
	cl       ecg.BatchClassifier
	out      Outputs
	parser   *reading.Parser
	live     *ecg.Live
	cons     jetstream.Consumer
	consumer *stream.Consumer

	lastEvict time.Time

	mBeats   *prometheus.CounterVec
	mErrors  prometheus.Counter
	mLatency prometheus.Histogram
	mDevices prometheus.Gauge
	mStreams prometheus.Gauge
}

// New opens the model (or checks the model server), registers the metrics and creates the
// durable consumer, so that no reading stored after New returns is missed.
func New(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, o Options) (*Classifier, error) {
	if o.JS == nil || o.Kinds == nil || o.Out.Publish == nil {
		return nil, fmt.Errorf("ecg: a stream, a kind registry and a publisher are required")
	}
	c := o.Config.WithDefaults()
	cl, err := openClassifier(ctx, log, c, o.Dir)
	if err != nil {
		return nil, err
	}
	p := &Classifier{log: log, cl: cl, out: o.Out, parser: reading.NewParser(o.Kinds),
		live: ecg.NewLive(ecg.LiveOptions{MaxDevices: c.MaxDevices, MaxStreams: c.MaxStreams, IdleTimeout: c.IdleTimeout.D()}),
		mBeats: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_ecg_beats_total",
			Help: "Heartbeats classified by streaming classification, by predicted class."}, []string{"class"}),
		mErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulselake_ecg_errors_total",
			Help: "Stream messages whose beats could not be classified or stored (redelivered later)."}),
		mLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pulselake_ecg_batch_seconds",
			Help: "Time to classify the beats of one stream message and store the predictions.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		mDevices: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pulselake_ecg_devices", Help: "Devices with streaming classification state."}),
		mStreams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pulselake_ecg_sample_streams", Help: "Devices sending raw ecg samples with QRS detector state."}),
	}
	for _, col := range []prometheus.Collector{p.mBeats, p.mErrors, p.mLatency, p.mDevices, p.mStreams} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("registering ecg metrics: %w", err)
		}
	}
	own := stream.SubjectFor(Source)
	p.consumer, err = stream.NewConsumer(log, reg, stream.ConsumerOptions{Name: ConsumerName, Kinds: o.Kinds,
		Handle: p.handle, Quarantine: o.Out.Quarantine,
		// Its own predictions are never classified again; messages without ECG readings are
		// skipped without decoding: by the kinds their header lists, or, for messages stored
		// without it, by their envelope (readings in it are in normalized form, so an ecg or
		// ecg_beat reading always contains this text).
		Skip: func(m *stream.Msg) bool {
			if m.Subject == own {
				return true
			}
			if kinds, ok := m.Kinds(); ok {
				return !slices.Contains(kinds, ecg.KindBeat) && !slices.Contains(kinds, ecg.KindSignal)
			}
			env, err := stream.Payload(m.Data)
			return err == nil && !bytes.Contains(env, []byte(`"kind":"ecg`)) // an undecodable one is quarantined
		},
		// Within a message, only the ECG readings are decoded.
		Filter: stream.Filter{Kinds: func(kind string) bool { return kind == ecg.KindBeat || kind == ecg.KindSignal }}})
	if err != nil {
		return nil, err
	}
	p.cons, err = stream.Follow(ctx, o.JS, stream.Follower{Durable: ConsumerName,
		Description: "pulselake: streaming ECG classification", AckWait: time.Minute, MaxAckPending: 256})
	if err != nil {
		return nil, err
	}
	log.Info("streaming ECG classification on", "model", cl.Name())
	return p, nil
}

// openClassifier is the KServe client when a model server is configured, else the local
// model (a file, or the built-in one).
func openClassifier(ctx context.Context, log *slog.Logger, c ecg.Config, dir string) (ecg.BatchClassifier, error) {
	if c.KServeURL != "" {
		k, err := ecg.NewKServe(ecg.KServeOptions{URL: c.KServeURL, Model: c.KServeModel, Version: c.KServeVersion,
			Tensor: c.KServeTensor, Input: c.KServeInput, Timeout: c.KServeTimeout.D(), Batch: c.KServeBatch})
		if err != nil {
			return nil, fmt.Errorf("ecg: %w", err)
		}
		if err := k.Ready(ctx); err != nil {
			log.Warn("ECG model server not ready; beats wait in the stream until it is", "err", err)
		}
		return k, nil
	}
	path := c.Model
	if path != "" && !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	l, err := ecg.NewLocal(path)
	if err != nil {
		return nil, fmt.Errorf("ecg.model: %w (write one with `pulselake ecg train`, or leave ecg.model empty for the built-in model)", err)
	}
	return l, nil
}

// Run consumes the ingest stream until ctx ends.
func (p *Classifier) Run(ctx context.Context) error { return p.consumer.Run(ctx, p.cons) }

// handle classifies the beats of one stream message and stores the predictions; an error
// means the message is delivered again later.
func (p *Classifier) handle(ctx context.Context, m *stream.Msg) error {
	start := time.Now()
	now := time.Now()
	if now.Sub(p.lastEvict) > time.Minute {
		p.live.Evict(now)
		p.lastEvict = now
	}
	var beats []ecg.LiveBeat
	for i := range m.Batch.Entries {
		e := &m.Batch.Entries[i]
		if e.Reading != nil {
			beats = p.live.Beats(e.Reading, e.Identity, now, beats)
		}
	}
	devs, streams := p.live.Devices()
	p.mDevices.Set(float64(devs))
	p.mStreams.Set(float64(streams))
	if len(beats) == 0 {
		return nil
	}
	preds, err := p.cl.ClassifyBeats(ctx, beats)
	if err != nil {
		p.mErrors.Inc()
		return fmt.Errorf("classifying %d beats: %w", len(beats), err)
	}
	out := make([]ecg.LivePrediction, len(beats))
	batch := stream.Batch{Source: Source, Received: now, Entries: make([]stream.Entry, 0, len(beats))}
	for i := range beats {
		bt, pr := &beats[i], preds[i]
		lp := ecg.LivePrediction{Subject: bt.Subject, Device: bt.Device, Time: bt.Time, Class: pr.Class.String(),
			Probs: make(map[string]float64, ecg.NumClasses), Score: pr.Probs[pr.Class], RRKnown: bt.RR.RRKnown(),
			Model: p.cl.Name(), Label: bt.Label, Kind: bt.Kind, Source: bt.Source.String()}
		for c, name := range ecg.Classes() {
			lp.Probs[name] = pr.Probs[c]
		}
		lp.Run = p.live.Record(bt.Subject, bt.Device, pr.Class)
		out[i] = lp
		r := lp.Reading()
		raw := r.AppendJSON(nil)
		// Parse what is published, so that every consumer decodes it (ranges, text limits).
		norm, errs := p.parser.Parse(raw)
		if errs != nil {
			p.log.Error("prediction is not a valid reading; not published", "device", bt.Device, "err", errs)
			continue
		}
		batch.Entries = append(batch.Entries, stream.Entry{Identity: norm.Identity(), Reading: &norm, Raw: raw})
	}
	if _, err := p.out.Publish(ctx, &batch); err != nil {
		p.mErrors.Inc()
		return fmt.Errorf("storing predictions: %w", err)
	}
	for i := range out {
		lp := &out[i]
		if p.out.Row != nil {
			p.out.Row(PredictionsTable, PredictionColumns, []any{
				now.UTC(), lp.Time.UTC(), lp.Subject, lp.Device, lp.Model, lp.Class, lp.Score,
				lp.Probs["N"], lp.Probs["S"], lp.Probs["V"], lp.Probs["F"], lp.Probs["Q"],
				int64(lp.Run), lp.RRKnown, optString(lp.Label), lp.Kind, lp.Source,
			})
		}
		if p.out.Event != nil {
			p.out.Event(*lp)
		}
		p.mBeats.WithLabelValues(lp.Class).Inc()
	}
	p.mLatency.Observe(time.Since(start).Seconds())
	return nil
}

func optString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
