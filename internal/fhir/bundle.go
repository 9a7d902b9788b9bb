package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pulselake/pulselake/internal/reading"
)

// BundleError is a Bundle that cannot be processed at all; Status is the HTTP status.
type BundleError struct {
	Status int
	Issue  Issue
}

func (e *BundleError) Error() string { return e.Issue.Error() }

// TooManyEntries is the BundleError of a Bundle above the entry limit.
func tooManyEntries(n, limit int) *BundleError {
	return &BundleError{Status: 413, Issue: Issue{Type: IssueTooCostly, Code: "batch-too-large", Expression: "entry",
		Message: fmt.Sprintf("the Bundle has %d entries, more than the limit of %d (ingest.max_batch); split it into smaller Bundles", n, limit)}}
}

// ParseBundle parses a Bundle of at most maxEntries entries. With requests true it must be
// a transaction or batch whose entries are requests (POST /fhir/r4); otherwise any Bundle
// type is read for the resources of its entries (file imports).
func ParseBundle(data []byte, maxEntries int, requests bool) (*Bundle, error) {
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, &BundleError{Status: 400, Issue: Issue{Type: IssueStructure, Code: reading.CodeInvalidJSON,
			Message: "the body is not a JSON Bundle: " + shorten(err.Error())}}
	}
	if b.ResourceType != TypeBundle {
		return nil, &BundleError{Status: 400, Issue: Issue{Type: IssueNotSupported, Code: CodeInvalidResource, Expression: "resourceType",
			Message: fmt.Sprintf("resourceType %q is not supported here; send a Bundle of type transaction or batch", shorten(b.ResourceType))}}
	}
	if requests && b.Type != BundleTransaction && b.Type != BundleBatch {
		return nil, &BundleError{Status: 400, Issue: Issue{Type: IssueNotSupported, Code: CodeInvalidRequest, Expression: "type",
			Message: fmt.Sprintf("Bundle type %q is not supported; send transaction (all or nothing) or batch (each entry on its own)", shorten(b.Type))}}
	}
	if len(b.Entry) > maxEntries {
		return nil, tooManyEntries(len(b.Entry), maxEntries)
	}
	if len(b.Entry) == 0 {
		return nil, &BundleError{Status: 400, Issue: Issue{Type: IssueRequired, Code: reading.CodeMissingField, Expression: "entry",
			Message: "the Bundle has no entries; send one entry per Observation"}}
	}
	return &b, nil
}

// Entry is one entry of a Bundle decoded.
type Entry struct {
	Raw      []byte            // the resource as received; the whole entry when it has none
	Readings []reading.Reading // the readings of a valid Observation
	Issues   []Issue           // why it is refused; expressions relative to the resource
	// EntryLevel marks issues about the entry (its request) rather than its resource.
	EntryLevel bool
}

// Entries decodes the entries of b; with requests, each must be a POST of an Observation
// (conditional on ifNoneExist when given).
func (d *Decoder) Entries(b *Bundle, requests bool) []Entry {
	out := make([]Entry, len(b.Entry))
	for i, be := range b.Entry {
		e := &out[i]
		e.Raw = be.Resource
		if len(be.Resource) == 0 {
			e.Raw, _ = json.Marshal(be)
			e.EntryLevel = true
			e.Issues = []Issue{{IssueRequired, reading.CodeMissingField, "resource", "entry has no resource; send the Observation in entry.resource"}}
			continue
		}
		ifNoneExist := ""
		if requests {
			if iss, ok := checkRequest(be.Request); !ok {
				e.EntryLevel = true
				e.Issues = []Issue{iss}
				continue
			}
			ifNoneExist = be.Request.IfNoneExist
		}
		e.Readings, e.Issues = d.Observation(be.Resource, ifNoneExist)
	}
	return out
}

// checkRequest checks an entry's request: POST Observation.
func checkRequest(r *EntryRequest) (Issue, bool) {
	if r == nil {
		return Issue{IssueRequired, reading.CodeMissingField, "request", "entry.request is required in a transaction or batch: {\"method\":\"POST\",\"url\":\"Observation\"}"}, false
	}
	url := strings.TrimSuffix(r.URL, "/")
	if r.Method != "POST" || (url != TypeObservation && !strings.HasSuffix(url, "/"+TypeObservation)) {
		return Issue{IssueNotSupported, CodeInvalidRequest, "request",
			fmt.Sprintf("request %s %s is not supported; pulselake takes POST Observation (conditional on ifNoneExist identifier=...)", shorten(r.Method), shorten(r.URL))}, false
	}
	return Issue{}, true
}

// EntryPath is the FHIRPath of entry i's resource, or of the entry for entry-level issues.
func EntryPath(i int, entryLevel bool) string {
	if entryLevel {
		return fmt.Sprintf("Bundle.entry[%d]", i)
	}
	return fmt.Sprintf("Bundle.entry[%d].resource", i)
}

// NDJSON splits a Bulk Data NDJSON body into its resources (blank lines skipped).
func NDJSON(data []byte, maxEntries int) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(out) == maxEntries {
			return nil, tooManyEntries(len(out)+1, maxEntries)
		}
		out = append(out, line)
	}
	return out, nil
}
