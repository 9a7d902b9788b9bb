package app

import (
	"github.com/pulselake/pulselake/internal/detectors"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/web"
)

const detectorsBucketDescription = "pulselake streaming anomaly detectors: baselines and alerts"

// startDetectors runs the configured streaming anomaly detectors (config key detectors).
func startDetectors(n *node) error {
	ds, err := n.cfg.CompiledDetectors()
	if err != nil {
		return err
	}
	if len(ds) == 0 {
		return nil
	}
	kv, err := n.conn.KV(n.ctx, detectors.Bucket, detectorsBucketDescription)
	if err != nil {
		return err
	}
	r, err := detectors.New(n.log.With("component", "anomaly"), n.reg, detectors.Options{
		Detectors: ds, JS: n.conn.JS, Kinds: n.kinds, State: kv, CheckpointEvery: n.cfg.DetectorsCheckpoint.D(),
		Out: detectors.Outputs{
			Row: func(table string, cols []lake.Column, row []any) {
				n.lake.ops.Add(lake.ZoneOps, table, cols, row)
			},
			Event:      func(e detectors.Anomaly) { n.hub.Publish(web.Event{Type: "anomaly", Subject: e.Subject, Data: e}) },
			Alerts:     n.alerting.outputs,
			Quarantine: n.quarantine,
		},
	})
	if err != nil {
		return err
	}
	n.alerting.addSource(r.Alerts)
	n.addEraser("anomaly detectors: alerts, baselines (serve memory)", r.EraseSubject)
	n.addEraser("anomaly detectors: checkpointed alerts, baselines (KV "+detectors.Bucket+")", r.EraseCheckpoint)
	n.onClose(r.Close)
	n.runLeader(leaderProc{name: "anomaly", run: r.Run}) // restores the checkpoint first
	return nil
}
