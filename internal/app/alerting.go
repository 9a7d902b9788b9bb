package app

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/alert"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
	"github.com/pulselake/pulselake/internal/web"
)

// KV buckets of the alerting pipeline.
const (
	alertsBucket   = "pulselake_alerts"
	nflogBucket    = "pulselake_notify_log"
	silencesBucket = "pulselake_silences"
)

// alerting is the rule engine and the notification pipeline.
type alerting struct {
	engine     *rules.Engine
	dispatcher *notify.Dispatcher
	silences   *notify.Silences
	// outputs take the alerts of the rule engine and of every other source (anomaly
	// detectors) to the dispatcher, the event hub and ops.alerts.
	outputs alert.Outputs
	sources []func(state string) []alert.Alert // other alerts of GET /v1/alerts
}

// ws0 is the external URL put in notifications before the HTTP server is bound.
func ws0(cfg *config.Config) string { return "http://" + cfg.HTTP.Listen }

func startAlerting(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, cfg *config.Config, conn *stream.Conn, kinds *reading.Registry, hub *web.Hub, externalURL string, record func([]alert.Transition), quarantine func(context.Context, stream.Poisoned) error) (*alerting, error) {
	alertsKV, err := conn.KV(ctx, alertsBucket, "pulselake alert state")
	if err != nil {
		return nil, err
	}
	nflogKV, err := conn.KV(ctx, nflogBucket, "pulselake notification log")
	if err != nil {
		return nil, err
	}
	sil, err := OpenSilences(ctx, log.With("component", "silences"), conn)
	if err != nil {
		return nil, err
	}
	disp, err := notify.New(ctx, log.With("component", "notify"), reg, notify.Options{
		Config: cfg.NotifyConfig(), Silences: sil, Log: nflogKV, ExternalURL: externalURL,
	})
	if err != nil {
		sil.Close()
		return nil, err
	}
	out := alert.Outputs{
		Notify: disp.Notify,
		Record: func(_ context.Context, ts []alert.Transition) error {
			for _, t := range ts {
				hub.Publish(web.Event{Type: "alert", Subject: t.Alert.Subject, Data: t.Alert})
			}
			record(ts)
			return nil
		},
	}
	eng, err := rules.NewEngine(ctx, log.With("component", "rules"), reg, rules.Options{
		Rules: cfg.AllRules(), RuleFiles: cfg.RuleFiles, Dir: cfg.Dir(), WatchInterval: 5 * time.Second,
		Registry: kinds, JS: conn.JS, State: alertsKV, Notify: out.Notify, Sink: out.Record, Quarantine: quarantine,
	})
	if err != nil {
		sil.Close()
		return nil, err
	}
	return &alerting{engine: eng, dispatcher: disp, silences: sil, outputs: out}, nil
}

// OpenSilences opens the silences over a dialled connection (serve and `pulselake silence`
// share the bucket; each sees the other's changes through its watch).
func OpenSilences(ctx context.Context, log *slog.Logger, conn *stream.Conn) (*notify.Silences, error) {
	kv, err := conn.KV(ctx, silencesBucket, "pulselake silences")
	if err != nil {
		return nil, err
	}
	return notify.NewSilences(ctx, log, notify.SilencesOptions{KV: kv})
}

// listAlerts serves GET /v1/alerts: a subject-bound token sees the alerts of its subject only.
func (a *alerting) listAlerts(w http.ResponseWriter, r *http.Request, tok token.Token) {
	rules.AlertsHandler(func(state string) []alert.Alert { return a.alertsFor(tok, state) }).ServeHTTP(w, r)
}

// listSilences serves GET /v1/silences: a subject-bound token sees the silences that name its
// subject (an equality matcher on subject, so they mute nothing else).
func (a *alerting) listSilences(w http.ResponseWriter, r *http.Request, tok token.Token) {
	notify.SilencesHandler(a.silences, func(s notify.Silence) bool { return tok.Sees(notify.SilenceSubject(s)) }).ServeHTTP(w, r)
}

// changeSilences serves POST /v1/silences and DELETE /v1/silences/{id}; they need scope
// admin, which is never bound to a subject.
func (a *alerting) changeSilences() web.Handler {
	h := notify.SilencesHandler(a.silences, nil)
	return func(w http.ResponseWriter, r *http.Request, _ token.Token) { h.ServeHTTP(w, r) }
}

// alertsFor lists the alerts tok sees (token.Token.Sees), newest first.
func (a *alerting) alertsFor(tok token.Token, state string) []alert.Alert {
	all := a.alerts(state)
	if !tok.Bound() {
		return all
	}
	out := all[:0]
	for _, al := range all {
		if tok.Sees(al.Subject) {
			out = append(out, al)
		}
	}
	return out
}

// alerts lists the rule engine's alerts and those of the other sources (anomaly
// detectors), newest first.
func (a *alerting) alerts(state string) []alert.Alert {
	out := a.engine.Alerts(state)
	for _, src := range a.sources {
		out = append(out, src(state)...)
	}
	alert.SortNewest(out)
	return out
}

// addSource adds alerts that GET /v1/alerts lists beside the rule engine's. Call it before
// the HTTP server starts.
func (a *alerting) addSource(list func(state string) []alert.Alert) {
	a.sources = append(a.sources, list)
}

func (a *alerting) close() { a.silences.Close() }
