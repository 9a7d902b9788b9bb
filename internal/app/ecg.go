package app

import (
	"github.com/pulselake/pulselake/internal/ecg"
	"github.com/pulselake/pulselake/internal/ecgstream"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/web"
)

// startECG runs streaming ECG classification (config key ecg) when it is on.
func startECG(n *node) error {
	if !n.cfg.ECG.On() {
		return nil
	}
	c, err := ecgstream.New(n.ctx, n.log.With("component", "ecg"), n.reg, ecgstream.Options{
		Config: n.cfg.ECG, Dir: n.cfg.Dir(), JS: n.conn.JS, Kinds: n.kinds,
		Out: ecgstream.Outputs{
			Publish: n.conn.Publish,
			Row: func(table string, cols []lake.Column, row []any) {
				n.lake.ops.Add(lake.ZoneOps, table, cols, row)
			},
			Event: func(p ecg.LivePrediction) {
				n.hub.Publish(web.Event{Type: "prediction", Subject: p.Subject, Data: p})
			},
			Quarantine: n.quarantine,
		},
	})
	if err != nil {
		return err
	}
	n.runLeader(leaderProc{name: "ecg", run: c.Run})
	return nil
}
