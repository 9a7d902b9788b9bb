package reading

import (
	"fmt"
	"strings"
)

// Stable error codes of field errors. Clients and the quarantine zone rely on them; never rename.
const (
	CodeInvalidJSON     = "invalid-json"       // the payload is not a JSON object
	CodeMissingField    = "missing-field"      // a required field is absent or empty
	CodeUnknownField    = "unknown-field"      // a field the kind does not declare
	CodeInvalidType     = "invalid-type"       // a field has the wrong JSON type
	CodeInvalidTime     = "invalid-time"       // time is neither RFC 3339 nor epoch milliseconds
	CodeTimeOutOfRange  = "time-out-of-range"  // time before 1970 or too far in the future
	CodeUnknownKind     = "unknown-kind"       // kind is neither built in nor declared in config
	CodeInvalidID       = "invalid-identifier" // subject, device or id with characters or length not allowed
	CodeOutOfRange      = "value-out-of-range" // a value outside its kind's plausible range
	CodeInvalidValue    = "invalid-value"      // a text value not among the allowed ones
	CodeInvalidLength   = "invalid-length"     // an array of samples with the wrong length
	CodeInconsistent    = "inconsistent-values"
	CodeSubjectNotAllow = "subject-not-allowed" // the token may not write readings of this subject
	CodeRecordTooLarge  = "record-too-large"    // a record alone above the stream's message limit
)

// FieldError is one problem with one field of a payload.
type FieldError struct {
	Code    string `json:"code"`
	Path    string `json:"path"` // JSON pointer into the payload as received, "" for the whole payload
	Message string `json:"message"`
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%s at %s: %s", e.Code, e.Path, e.Message)
}

// Errors is every field error of one payload; Parse returns it when the payload is rejected.
type Errors []FieldError

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}
