package app

import (
	"net/http"
	"net/http/pprof"

	"github.com/pulselake/pulselake/internal/token"
)

// mountProfiles serves Go's runtime profiles under /debug/pprof/ to admin tokens, for
// looking at a running serve's memory and CPU: `curl -H "Authorization: Bearer $TOKEN"
// http://127.0.0.1:8080/debug/pprof/heap > heap.pb.gz; go tool pprof heap.pb.gz`.
func mountProfiles(n *node) error {
	for pattern, h := range map[string]http.HandlerFunc{
		"GET /debug/pprof/":        pprof.Index, // also every named profile: heap, goroutine, allocs, ...
		"GET /debug/pprof/profile": pprof.Profile,
		"GET /debug/pprof/trace":   pprof.Trace,
	} {
		n.ws.Handle(pattern, token.ScopeAdmin, func(w http.ResponseWriter, r *http.Request, _ token.Token) { h(w, r) })
	}
	return nil
}
