package alert

import (
	"context"

	"github.com/pulselake/pulselake/internal/notify"
)

// NotifyFunc hands alerts to the notification pipeline (notify.Dispatcher.Notify).
type NotifyFunc func(ctx context.Context, alerts []notify.Alert) error

// RecordFunc receives every transition (the dashboard's event hub, the lake's ops.alerts).
type RecordFunc func(ctx context.Context, ts []Transition) error

// Outputs are where the alerts of every source go. The composition root builds one value and
// hands it to the rule engine and the detector runner alike, so both kinds of alerts reach
// the same places in the same shape.
type Outputs struct {
	// Notify receives firing and resolved alerts, when they change and when re-sent.
	Notify NotifyFunc
	// Record receives every transition, pending and inactive ones included.
	Record RecordFunc
}
