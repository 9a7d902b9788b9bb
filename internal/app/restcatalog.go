package app

import (
	"context"
	"net/http"

	"github.com/pulselake/pulselake/internal/restcatalog"
	"github.com/pulselake/pulselake/internal/token"
)

// restCatalogPrefix is where the lake's catalog is served over the Iceberg REST protocol: an
// Iceberg client's catalog URI is http://<serve>/iceberg.
const restCatalogPrefix = "/iceberg"

// startRESTCatalog serves the lake's own catalog over the Iceberg REST Catalog protocol
// (docs/lake.md, "REST catalog"), so engines can attach to the lake. Any pulselake token of
// scope read may read; changing the catalog needs scope admin. Subject-bound tokens are
// refused (403 subject-bound-token): the catalog hands out table metadata and the locations of
// data files holding every subject's rows, which no filter can narrow to one subject. It is
// served only when the lake's catalog is the SQL catalog: a lake on a REST catalog already
// has a server.
func startRESTCatalog(n *node) error {
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
	n.ws.HandleUnbound(restCatalogPrefix+"/", token.ScopeRead, func(w http.ResponseWriter, r *http.Request, tok token.Token) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), restTokenKey{}, tok)))
	})
	return nil
}

// restTokenKey carries the caller's verified token to restcatalog.Options.CanWrite.
type restTokenKey struct{}
