package restcatalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
)

// unitSeparator joins the levels of a multi-level namespace in a path segment (%1F) and in
// the `parent` query parameter, as the spec prescribes.
const unitSeparator = "\x1f"

// parseNamespace decodes the {namespace} path segment (already percent-decoded): levels
// separated by the unit separator, none empty.
func parseNamespace(seg string) ([]string, error) {
	if seg == "" {
		return nil, fmt.Errorf("%w: the namespace in the path is empty", ErrBadRequest)
	}
	levels := strings.Split(seg, unitSeparator)
	for i, l := range levels {
		if l == "" {
			return nil, fmt.Errorf("%w: level %d of namespace %q is empty; levels are separated by %%1F and none may be empty",
				ErrBadRequest, i+1, strings.ReplaceAll(seg, unitSeparator, "%1F"))
		}
	}
	return levels, nil
}

// tableName checks the {table} path segment or a request's table name.
func tableName(field, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s is empty", ErrBadRequest, field)
	}
	return nil
}

// readBody reads a request body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes; the limit is %d bytes", ErrTooLarge, r.ContentLength, limit)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, fmt.Errorf("%w: the limit is %d bytes", ErrTooLarge, limit)
		}
		return nil, fmt.Errorf("%w: reading the body: %v", ErrBadRequest, err)
	}
	return data, nil
}

// decodeJSON decodes exactly one JSON object from data into dst. Unknown fields are allowed:
// clients of newer spec versions send fields this server does not use.
func decodeJSON(data []byte, what string, dst any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("%w: the body is empty; send a JSON %s", ErrBadRequest, what)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("%w: the body is not a valid %s: %s", ErrBadRequest, what, jsonProblem(err))
	}
	if dec.More() {
		return fmt.Errorf("%w: the body holds more than one JSON value; send one %s", ErrBadRequest, what)
	}
	return nil
}

// jsonProblem names the field a JSON error is about when the decoder knows it.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %q must be %s, not %s", te.Field, te.Type, te.Value)
	}
	return err.Error()
}

// identifier is the spec's TableIdentifier.
type identifier struct {
	Namespace []string `json:"namespace"`
	Name      string   `json:"name"`
}

func (id *identifier) check(field string) error {
	if id == nil {
		return fmt.Errorf("%w: %s is missing", ErrBadRequest, field)
	}
	if len(id.Namespace) == 0 {
		return fmt.Errorf("%w: %s.namespace is missing or empty", ErrBadRequest, field)
	}
	for i, l := range id.Namespace {
		if l == "" {
			return fmt.Errorf("%w: %s.namespace[%d] is empty", ErrBadRequest, field, i)
		}
	}
	return tableName(field+".name", id.Name)
}

func (id identifier) ident() table.Identifier {
	return append(append(table.Identifier{}, id.Namespace...), id.Name)
}

// createNamespaceRequest is the spec's CreateNamespaceRequest.
type createNamespaceRequest struct {
	Namespace  []string           `json:"namespace"`
	Properties iceberg.Properties `json:"properties"`
}

func decodeCreateNamespace(data []byte) (createNamespaceRequest, error) {
	var req createNamespaceRequest
	if err := decodeJSON(data, "CreateNamespaceRequest", &req); err != nil {
		return req, err
	}
	if len(req.Namespace) == 0 {
		return req, fmt.Errorf(`%w: "namespace" is missing or empty; send e.g. {"namespace":["trusted"]}`, ErrBadRequest)
	}
	for i, l := range req.Namespace {
		if l == "" {
			return req, fmt.Errorf("%w: namespace[%d] is empty", ErrBadRequest, i)
		}
		if strings.Contains(l, unitSeparator) {
			return req, fmt.Errorf("%w: namespace[%d] contains the unit separator (0x1F), which separates levels in paths", ErrBadRequest, i)
		}
	}
	return req, nil
}

// updateNamespacePropertiesRequest is the spec's UpdateNamespacePropertiesRequest.
type updateNamespacePropertiesRequest struct {
	Removals []string           `json:"removals"`
	Updates  iceberg.Properties `json:"updates"`
}

func decodeUpdateNamespaceProperties(data []byte) (updateNamespacePropertiesRequest, error) {
	var req updateNamespacePropertiesRequest
	if err := decodeJSON(data, "UpdateNamespacePropertiesRequest", &req); err != nil {
		return req, err
	}
	for _, k := range req.Removals {
		if _, ok := req.Updates[k]; ok {
			return req, fmt.Errorf("%w: property %q is both in removals and in updates", ErrUnprocessable, k)
		}
	}
	return req, nil
}

// createTableRequest is the spec's CreateTableRequest.
type createTableRequest struct {
	Name          string                 `json:"name"`
	Location      string                 `json:"location"`
	Schema        *iceberg.Schema        `json:"schema"`
	PartitionSpec *iceberg.PartitionSpec `json:"partition-spec"`
	WriteOrder    *table.SortOrder       `json:"write-order"`
	StageCreate   bool                   `json:"stage-create"`
	Properties    iceberg.Properties     `json:"properties"`
}

func decodeCreateTable(data []byte) (createTableRequest, error) {
	var req createTableRequest
	if err := decodeJSON(data, "CreateTableRequest", &req); err != nil {
		return req, err
	}
	if err := tableName(`"name"`, req.Name); err != nil {
		return req, err
	}
	if req.Schema == nil {
		return req, fmt.Errorf(`%w: "schema" is missing`, ErrBadRequest)
	}
	return req, nil
}

// commitTableRequest is the spec's CommitTableRequest.
type commitTableRequest struct {
	Identifier   *identifier        `json:"identifier"`
	Requirements table.Requirements `json:"requirements"`
	Updates      table.Updates      `json:"updates"`
}

func decodeCommitTable(data []byte) (commitTableRequest, error) {
	var req commitTableRequest
	if err := decodeJSON(data, "CommitTableRequest", &req); err != nil {
		return req, err
	}
	if req.Identifier != nil {
		if err := req.Identifier.check(`"identifier"`); err != nil {
			return req, err
		}
	}
	for i, u := range req.Updates {
		if u == nil {
			return req, fmt.Errorf("%w: updates[%d] is null", ErrBadRequest, i)
		}
	}
	for i, q := range req.Requirements {
		if q == nil {
			return req, fmt.Errorf("%w: requirements[%d] is null", ErrBadRequest, i)
		}
	}
	return req, nil
}

// renameTableRequest is the spec's RenameTableRequest.
type renameTableRequest struct {
	Source      *identifier `json:"source"`
	Destination *identifier `json:"destination"`
}

func decodeRenameTable(data []byte) (renameTableRequest, error) {
	var req renameTableRequest
	if err := decodeJSON(data, "RenameTableRequest", &req); err != nil {
		return req, err
	}
	if err := req.Source.check(`"source"`); err != nil {
		return req, err
	}
	return req, req.Destination.check(`"destination"`)
}

// registerTableRequest is the spec's RegisterTableRequest.
type registerTableRequest struct {
	Name             string `json:"name"`
	MetadataLocation string `json:"metadata-location"`
	Overwrite        bool   `json:"overwrite"`
}

func decodeRegisterTable(data []byte) (registerTableRequest, error) {
	var req registerTableRequest
	if err := decodeJSON(data, "RegisterTableRequest", &req); err != nil {
		return req, err
	}
	if err := tableName(`"name"`, req.Name); err != nil {
		return req, err
	}
	if req.MetadataLocation == "" {
		return req, fmt.Errorf(`%w: "metadata-location" is missing`, ErrBadRequest)
	}
	if req.Overwrite {
		return req, fmt.Errorf(`%w: "overwrite": true is not supported; drop the table first`, ErrNotImplemented)
	}
	return req, nil
}
