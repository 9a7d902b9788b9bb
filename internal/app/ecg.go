package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/ecg"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/web"
)

// ecgSource is the stream source of predictions published back into the ingest stream
// (subject ingest.model.ecg, lake table landing.model_ecg).
const ecgSource = "model:ecg"

// ecgConsumer is the durable consumer of streaming classification.
const ecgConsumer = "ecg"

// predictionColumns are the columns of ops.predictions: one row per classified beat.
var predictionColumns = []lake.Column{
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

// ecgPart classifies heartbeats as they arrive (docs/ecg.md, "Streaming"): a durable
// consumer of the ingest stream takes ecg_beat readings and beats that the QRS detector cuts
// from ecg sample streams, classifies them (built-in model or a KServe v2 server), and
// publishes each prediction back into the ingest stream as an ecg_prediction reading (so
// rules, the lake and the live feed see it), to ops.predictions and to the event feed. A
// stream message is acknowledged once its predictions are stored in the stream.
type ecgPart struct {
	n     *node
	cl    ecg.BatchClassifier
	cons  jetstream.Consumer
	live  *ecg.Live
	cfg   ecg.Config
	kinds *reading.Registry

	lastEvict time.Time

	mBeats   *prometheus.CounterVec
	mErrors  prometheus.Counter
	mLatency prometheus.Histogram
	mDevices prometheus.Gauge
	mStreams prometheus.Gauge
}

func startECG(n *node) error {
	c := n.cfg.ECG
	if !c.On() {
		return nil
	}
	c = c.WithDefaults()
	var cl ecg.BatchClassifier
	if c.KServeURL != "" {
		k, err := ecg.NewKServe(ecg.KServeOptions{URL: c.KServeURL, Model: c.KServeModel, Version: c.KServeVersion,
			Tensor: c.KServeTensor, Input: c.KServeInput, Timeout: c.KServeTimeout.D(), Batch: c.KServeBatch})
		if err != nil {
			return fmt.Errorf("ecg: %w", err)
		}
		if err := k.Ready(n.ctx); err != nil {
			n.log.Warn("ECG model server not ready; beats wait in the stream until it is", "component", "ecg", "err", err)
		}
		cl = k
	} else {
		path := c.Model
		if path != "" && !filepath.IsAbs(path) {
			path = filepath.Join(n.cfg.Dir(), path)
		}
		l, err := ecg.NewLocal(path)
		if err != nil {
			return fmt.Errorf("ecg.model: %w (write one with `pulselake ecg train`, or leave ecg.model empty for the built-in model)", err)
		}
		cl = l
	}
	p := &ecgPart{n: n, cl: cl, cfg: c, kinds: n.kinds,
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
		if err := n.reg.Register(col); err != nil {
			return fmt.Errorf("registering ecg metrics: %w", err)
		}
	}
	// The consumer exists before serve accepts readings, so none posted after start is missed.
	var err error
	p.cons, err = stream.Follow(n.ctx, n.conn.JS, stream.Follower{Durable: ecgConsumer,
		Description: "pulselake: streaming ECG classification", AckWait: time.Minute, MaxAckPending: 256})
	if err != nil {
		return err
	}
	n.runProc("ecg", p.run)
	n.log.Info("streaming ECG classification on", "component", "ecg", "model", cl.Name())
	return nil
}

func (p *ecgPart) run(ctx context.Context) error {
	it, err := p.cons.Messages(jetstream.PullMaxBytes(stream.FollowerPullBytes))
	if err != nil {
		return fmt.Errorf("consuming %s: %w", stream.IngestStream, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	parser := reading.NewParser(p.kinds)
	own := stream.SubjectFor(ecgSource)
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			p.n.log.Warn("ecg: reading from the ingest stream", "err", err)
			continue
		}
		// Our own predictions are never classified again; messages without ECG readings are
		// skipped without decoding (readings in the envelope are in normalized form, so an
		// ecg or ecg_beat reading always contains this text).
		if msg.Subject() == own || !bytes.Contains(msg.Data(), []byte(`"kind":"ecg`)) {
			_ = msg.Ack()
			continue
		}
		p.handle(ctx, msg, parser)
	}
}

func (p *ecgPart) handle(ctx context.Context, msg jetstream.Msg, parser *reading.Parser) {
	start := time.Now()
	b, err := stream.Decode(msg.Data(), parser)
	if err != nil {
		p.n.log.Error("ecg: skipping undecodable ingest message", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	now := time.Now()
	if now.Sub(p.lastEvict) > time.Minute {
		p.live.Evict(now)
		p.lastEvict = now
	}
	var beats []ecg.LiveBeat
	for i := range b.Entries {
		e := &b.Entries[i]
		if e.Reading != nil {
			beats = p.live.Beats(e.Reading, e.Identity, now, beats)
		}
	}
	devs, streams := p.live.Devices()
	p.mDevices.Set(float64(devs))
	p.mStreams.Set(float64(streams))
	if len(beats) == 0 {
		_ = msg.Ack()
		return
	}
	preds, err := p.cl.ClassifyBeats(ctx, beats)
	if err != nil {
		p.mErrors.Inc()
		p.n.log.Error("ecg: classifying beats failed; the message will be redelivered", "beats", len(beats), "err", err)
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	out := make([]ecg.LivePrediction, len(beats))
	batch := stream.Batch{Source: ecgSource, Received: now, Entries: make([]stream.Entry, 0, len(beats))}
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
		norm, errs := parser.Parse(raw)
		if errs != nil {
			p.n.log.Error("ecg: prediction is not a valid reading; not published", "device", bt.Device, "err", errs)
			continue
		}
		batch.Entries = append(batch.Entries, stream.Entry{Identity: norm.Identity(), Reading: &norm, Raw: raw})
	}
	if _, err := p.n.conn.Publish(ctx, &batch); err != nil {
		p.mErrors.Inc()
		p.n.log.Error("ecg: storing predictions failed; the message will be redelivered", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	for i := range out {
		lp := &out[i]
		p.n.lake.ops.Add(lake.ZoneOps, "predictions", predictionColumns, []any{
			now.UTC(), lp.Time.UTC(), lp.Subject, lp.Device, lp.Model, lp.Class, lp.Score,
			lp.Probs["N"], lp.Probs["S"], lp.Probs["V"], lp.Probs["F"], lp.Probs["Q"],
			int64(lp.Run), lp.RRKnown, optString(lp.Label), lp.Kind, lp.Source,
		})
		p.n.hub.Publish(web.Event{Type: "prediction", Subject: lp.Subject, Data: lp})
		p.mBeats.WithLabelValues(lp.Class).Inc()
	}
	_ = msg.Ack()
	p.mLatency.Observe(time.Since(start).Seconds())
}

func optString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
