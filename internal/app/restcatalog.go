package app

import (
	"context"
	"net/http"

	"github.com/pulselake/pulselake/internal/restcatalog"
	"github.com/pulselake/pulselake/internal/token"
	"github.com/pulselake/pulselake/internal/web"
)

// restCatalogPrefix is where the lake's catalog is served over the Iceberg REST protocol: an
// Iceberg client's catalog URI is http://<serve>/iceberg.
const restCatalogPrefix = "/iceberg"

// restCatalog serves the lake's own catalog over the Iceberg REST Catalog protocol
// (docs/lake.md, "REST catalog"), so engines can attach to the lake; it answers with that
// protocol's own error model. Any pulselake token of scope read may read; changing the
// catalog needs scope admin. It is nil unless the lake's catalog is the SQL catalog: a lake
// on a REST catalog already has a server.
func restCatalog(n *node) web.Handler {
	lc := n.lake.store.Config()
	if lc.Catalog.Type != "sql" {
		return nil
	}
	h := http.StripPrefix(restCatalogPrefix, restcatalog.Handler(n.lake.store.Catalog(), restcatalog.Options{
		Log:       n.log.With("component", "iceberg-rest"),
		Warehouse: lc.Warehouse,
		CanWrite: func(r *http.Request) bool {
			tok, ok := r.Context().Value(restTokenKey{}).(token.Token)
			return ok && tok.Scope.Allows(token.ScopeAdmin)
		},
	}))
	return func(w http.ResponseWriter, r *http.Request, tok token.Token) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), restTokenKey{}, tok)))
	}
}

// restTokenKey carries the caller's verified token to restcatalog.Options.CanWrite.
type restTokenKey struct{}
