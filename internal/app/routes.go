package app

import (
	"net/http"
	"net/http/pprof"

	"github.com/pulselake/pulselake/internal/token"
	"github.com/pulselake/pulselake/internal/web"
)

// mountRoutes mounts the whole HTTP surface of serve (SPEC §4), each route with the token
// scope it needs; the handlers live in their packages. Handle routes filter what they show
// by a subject-bound token's subject; HandleUnbound routes cannot, and refuse such tokens
// (403 subject-bound-token). Every error body is {"error":{"code":...,"message":...}}
// (internal/httpapi), except under /iceberg/, which speaks the Iceberg REST protocol.
func mountRoutes(ws *web.Server, n *node) {
	// Health, metrics and the dashboard: no token.
	ws.HandlePublic("GET /healthz", http.HandlerFunc(web.Healthz))
	ws.HandlePublic("GET /readyz", http.HandlerFunc(ws.Readyz))
	ws.HandlePublic("GET /metrics", ws.Metrics())
	ws.HandlePublic("GET /assets/", http.StripPrefix("/assets/", web.Assets()))
	ws.HandlePublic("GET /{$}", web.Dashboard())
	ws.HandlePublic("GET /sources", web.Sources())
	ws.HandlePublic("GET /subjects", web.Subjects())
	ws.HandlePublic("GET /subjects/{id}", web.Subject())
	ws.HandlePublic("GET /favicon.ico", web.Favicon())

	// Readings in, events out, SQL over the lake.
	ws.Handle("POST /v1/readings", token.ScopeIngest, ws.PostReadings)
	ws.Handle("GET /v1/events", token.ScopeRead, ws.Events(n.hub))
	ws.Handle("POST /v1/query", token.ScopeRead, n.lake.engine.Handler(queryLimits(n.cfg)))

	// Subjects and one subject's readings over a time range, for the patient view.
	subjects := newSubjectsAPI(n)
	ws.Handle("GET /v1/subjects", token.ScopeRead, subjects.list)
	ws.Handle("GET /v1/subjects/{id}/series", token.ScopeRead, subjects.series)

	// Wearable exports uploaded for import, and their progress.
	ws.Handle("POST /v1/imports", token.ScopeIngest, n.imports.Post)
	ws.Handle("GET /v1/imports/{id}", token.ScopeIngest, n.imports.Get)

	// Alerts and silences.
	ws.Handle("GET /v1/alerts", token.ScopeRead, n.alerting.listAlerts)
	ws.Handle("GET /v1/silences", token.ScopeRead, n.alerting.listSilences)
	ws.HandleUnbound("POST /v1/silences", token.ScopeAdmin, n.alerting.changeSilences())
	ws.HandleUnbound("DELETE /v1/silences/{id}", token.ScopeAdmin, n.alerting.changeSilences())

	// Wearable connections (docs/sources.md). The OAuth redirect needs no token: its
	// single-use state authenticates it. Connecting needs admin or a token bound to the subject.
	ws.HandlePublic("GET /v1/connect/{provider}/callback", http.HandlerFunc(n.connectors.Callback))
	ws.Handle("POST /v1/connect/{provider}", token.ScopeRead, n.connectors.BeginHandler)
	ws.Handle("GET /v1/connections", token.ScopeRead, n.connectors.ListHandler)
	ws.HandleUnbound("DELETE /v1/connections/{id}", token.ScopeAdmin, n.connectors.DeleteHandler)

	// The lake's catalog for other engines: table metadata and data files hold every
	// subject's rows, so bound tokens are refused.
	if h := restCatalog(n); h != nil {
		ws.HandleUnbound(restCatalogPrefix+"/", token.ScopeRead, h)
	}

	// FHIR R4 vital-sign Observations (docs/formats.md); errors are OperationOutcomes.
	mountFHIR(ws, n)

	// Go runtime profiles.
	ws.Handle("GET /debug/pprof/", token.ScopeAdmin, profile(pprof.Index)) // the list, and each named profile
	ws.Handle("GET /debug/pprof/profile", token.ScopeAdmin, profile(pprof.Profile))
	ws.Handle("GET /debug/pprof/trace", token.ScopeAdmin, profile(pprof.Trace))
}
