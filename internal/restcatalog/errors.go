package restcatalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
)

// Error types of the spec's ErrorModel, as Iceberg clients (Java, Python, Go) match them.
const (
	typeBadRequest         = "BadRequestException"
	typeForbidden          = "ForbiddenException"
	typeNoSuchNamespace    = "NoSuchNamespaceException"
	typeNoSuchTable        = "NoSuchTableException"
	typeAlreadyExists      = "AlreadyExistsException"
	typeNamespaceNotEmpty  = "NamespaceNotEmptyException"
	typeCommitFailed       = "CommitFailedException"
	typeCommitStateUnknown = "CommitStateUnknownException"
	typeUnprocessable      = "UnprocessableEntityException"
	typeNotImplemented     = "NotImplementedException"
	typeTooLarge           = "RequestTooLargeException"
	typeNotFound           = "NotFoundException"
	typeServiceFailure     = "ServiceFailureException"
)

// Sentinels of the handler; statusOf maps them (and iceberg-go's) to status codes.
var (
	// ErrBadRequest marks a request that is malformed or names an invalid field.
	ErrBadRequest = errors.New("bad request")
	// ErrForbidden marks a mutation by a caller that may only read.
	ErrForbidden = errors.New("forbidden")
	// ErrCommitFailed marks a commit whose requirements the table no longer meets.
	ErrCommitFailed = errors.New("commit failed")
	// ErrUnprocessable marks a request that is well-formed but contradicts itself.
	ErrUnprocessable = errors.New("unprocessable request")
	// ErrNotImplemented marks an operation this server (or its catalog) does not offer.
	ErrNotImplemented = errors.New("not implemented")
	// ErrTooLarge marks a request body over Options.MaxBodyBytes.
	ErrTooLarge = errors.New("request body too large")
	// ErrNoEndpoint marks a path and method that are not part of the protocol served here.
	ErrNoEndpoint = errors.New("no such endpoint")
)

// statusOf maps an error to its HTTP status code and ErrorModel type. It is the only place
// where errors become status codes.
func statusOf(err error) (int, string) {
	switch {
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, typeTooLarge
	case errors.Is(err, ErrBadRequest), errors.Is(err, iceberg.ErrInvalidArgument),
		errors.Is(err, catalog.ErrInvalidIdentifier):
		return http.StatusBadRequest, typeBadRequest
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden, typeForbidden
	case errors.Is(err, ErrUnprocessable):
		return http.StatusUnprocessableEntity, typeUnprocessable
	case errors.Is(err, catalog.ErrNoSuchTable):
		return http.StatusNotFound, typeNoSuchTable
	case errors.Is(err, catalog.ErrNoSuchNamespace):
		return http.StatusNotFound, typeNoSuchNamespace
	case errors.Is(err, ErrNoEndpoint):
		return http.StatusNotFound, typeNotFound
	case errors.Is(err, catalog.ErrTableAlreadyExists), errors.Is(err, catalog.ErrNamespaceAlreadyExists),
		errors.Is(err, catalog.ErrViewAlreadyExists):
		return http.StatusConflict, typeAlreadyExists
	case errors.Is(err, catalog.ErrNamespaceNotEmpty):
		return http.StatusConflict, typeNamespaceNotEmpty
	case errors.Is(err, ErrCommitFailed), errors.Is(err, table.ErrCommitFailed):
		return http.StatusConflict, typeCommitFailed
	case errors.Is(err, ErrNotImplemented), errors.Is(err, iceberg.ErrNotImplemented):
		return http.StatusNotImplemented, typeNotImplemented
	case errors.Is(err, errCommitUnknown):
		return http.StatusInternalServerError, typeCommitStateUnknown
	default:
		return http.StatusInternalServerError, typeServiceFailure
	}
}

// errCommitUnknown marks a commit that failed in a way that leaves its outcome unknown to the
// server (e.g. an I/O error after the metadata file was written); clients must reload.
var errCommitUnknown = errors.New("commit state unknown")

// errorModel is the spec's IcebergErrorResponse.
type errorModel struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    int    `json:"code"`
}

// writeError answers err as an ErrorModel (HEAD requests get the status alone). Server-side
// failures are logged; their message is still returned so operators can act on it.
func writeError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	code, typ := statusOf(err)
	if code >= 500 && code != http.StatusNotImplemented {
		log.Error("iceberg REST request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(code)
		return
	}
	writeJSON(w, code, errorModel{errorBody{Message: err.Error(), Type: typ, Code: code}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		code, data = http.StatusInternalServerError, fmt.Appendf(nil,
			`{"error":{"message":%q,"type":%q,"code":500}}`, "encoding the response: "+err.Error(), typeServiceFailure)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}
