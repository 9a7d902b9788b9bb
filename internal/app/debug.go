package app

import (
	"net/http"

	"github.com/pulselake/pulselake/internal/httpapi"
	"github.com/pulselake/pulselake/internal/token"
	"github.com/pulselake/pulselake/internal/web"
)

// profile serves one of Go's runtime profile handlers (net/http/pprof) under /debug/pprof/, for looking at a
// running serve's memory and CPU: `curl -H "Authorization: Bearer $TOKEN"
// http://127.0.0.1:8080/debug/pprof/heap > heap.pb.gz; go tool pprof heap.pb.gz`. Its errors
// (an unknown profile, a bad parameter) are sent as the API's error body.
func profile(h http.HandlerFunc) web.Handler {
	jh := httpapi.PlainErrors(h)
	return func(w http.ResponseWriter, r *http.Request, _ token.Token) { jh.ServeHTTP(w, r) }
}
