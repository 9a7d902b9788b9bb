package reading

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
)

// Body formats accepted by SplitBody.
const (
	FormatJSON   = "json"   // one object or an array of objects
	FormatNDJSON = "ndjson" // one object per line
)

// ErrUnsupportedMedia is returned for a content type that is neither JSON nor NDJSON.
var ErrUnsupportedMedia = errors.New("unsupported content type; send application/json (one reading or an array) or application/x-ndjson (one reading per line)")

// ErrTooManyRecords is returned when a body holds more records than the batch limit.
type ErrTooManyRecords struct{ Limit int }

func (e ErrTooManyRecords) Error() string {
	return fmt.Sprintf("batch holds more than %d readings; split it into smaller batches", e.Limit)
}

// ErrMalformedBody is returned when a JSON body cannot be split into records at all.
type ErrMalformedBody struct{ Reason string }

func (e ErrMalformedBody) Error() string { return "malformed body: " + e.Reason }

// FormatOf maps a Content-Type header to a body format.
func FormatOf(contentType string) (string, error) {
	if contentType == "" {
		return FormatJSON, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", ErrUnsupportedMedia
	}
	switch mt {
	case "application/json":
		return FormatJSON, nil
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines":
		return FormatNDJSON, nil
	}
	return "", ErrUnsupportedMedia
}

// SplitBody splits a request body into the raw bytes of each record, without copying.
// NDJSON lines are split on '\n' (blank lines skipped); a malformed line is still returned as a
// record so the parser rejects it on its own. A JSON body is one object or an array of them;
// if the array itself is malformed, the whole body is one malformed record.
func SplitBody(body []byte, format string, maxRecords int) ([][]byte, error) {
	switch format {
	case FormatNDJSON:
		return splitLines(body, maxRecords)
	case FormatJSON:
		return splitJSON(body, maxRecords)
	}
	return nil, ErrUnsupportedMedia
}

func splitLines(body []byte, maxRecords int) ([][]byte, error) {
	var recs [][]byte
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(recs) == maxRecords {
			return nil, ErrTooManyRecords{maxRecords}
		}
		recs = append(recs, line)
	}
	return recs, nil
}

func splitJSON(body []byte, maxRecords int) ([][]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, ErrMalformedBody{"the body is empty; send one reading or an array of readings"}
	}
	if trimmed[0] != '[' {
		return [][]byte{trimmed}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil {
		return nil, ErrMalformedBody{err.Error()}
	}
	var recs [][]byte
	for dec.More() {
		start := dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, ErrMalformedBody{fmt.Sprintf("array element %d: %v", len(recs), err)}
		}
		if len(recs) == maxRecords {
			return nil, ErrTooManyRecords{maxRecords}
		}
		recs = append(recs, bytes.TrimLeft(trimmed[start:dec.InputOffset()], " \t\r\n,"))
	}
	if _, err := dec.Token(); err != nil {
		return nil, ErrMalformedBody{"array is not closed: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, ErrMalformedBody{"data after the closing ]"}
	}
	return recs, nil
}
