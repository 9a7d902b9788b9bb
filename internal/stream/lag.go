package stream

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LagCollector exports, per durable consumer of the ingest and MQTT streams, how many
// messages wait to be delivered and how many are delivered but not yet acknowledged.
type LagCollector struct {
	conn    *Conn
	pending *prometheus.Desc
	ackPend *prometheus.Desc
}

// NewLagCollector returns a collector over conn's consumers.
func NewLagCollector(conn *Conn) *LagCollector {
	return &LagCollector{
		conn: conn,
		pending: prometheus.NewDesc("pulselake_stream_pending_messages",
			"Messages not yet delivered to a consumer (stream lag).", []string{"stream", "consumer"}, nil),
		ackPend: prometheus.NewDesc("pulselake_stream_ack_pending_messages",
			"Messages delivered to a consumer and not yet acknowledged.", []string{"stream", "consumer"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPend
}

// Collect implements prometheus.Collector.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range []string{IngestStream, MQTTStream} {
		s, err := c.conn.JS.Stream(ctx, name)
		if err != nil {
			continue
		}
		infos := s.ListConsumers(ctx)
		for ci := range infos.Info() {
			if ci.Config.Durable == "" {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(ci.NumPending), name, ci.Name)
			ch <- prometheus.MustNewConstMetric(c.ackPend, prometheus.GaugeValue, float64(ci.NumAckPending), name, ci.Name)
		}
	}
}
