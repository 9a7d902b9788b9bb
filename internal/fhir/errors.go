package fhir

import (
	"fmt"
	"strings"

	"github.com/pulselake/pulselake/internal/reading"
)

// Quarantine codes of Observations that cannot become readings, beside the reading codes
// of internal/reading (missing-field, value-out-of-range, ...). Stable: never rename.
const (
	CodeInvalidResource = "invalid-resource"  // not an Observation, or not JSON of one
	CodeUnknownCode     = "unknown-code"      // Observation.code names nothing pulselake maps
	CodeInvalidUnit     = "invalid-unit"      // a Quantity without the UCUM unit of its code
	CodeUnsupported     = "unsupported-value" // a value[x] or effective[x] type not mapped
	CodeInvalidStatus   = "invalid-status"    // a status that holds no measurement
	CodeInvalidRef      = "invalid-reference" // subject or device not a literal Patient/Device reference
	CodeInvalidRequest  = "invalid-request"   // a Bundle entry's request pulselake does not serve
)

// OperationOutcome issue types (FHIR R4 value set issue-type) used here.
const (
	IssueInvalid      = "invalid"
	IssueStructure    = "structure"
	IssueRequired     = "required"
	IssueValue        = "value"
	IssueNotSupported = "not-supported"
	IssueForbidden    = "forbidden"
	IssueTooCostly    = "too-costly"
	IssueNotFound     = "not-found"
	IssueException    = "exception"
	IssueTransient    = "transient"
	IssueSecurity     = "security"
	IssueProcessing   = "processing"
)

// Issue is one reason an Observation cannot become a reading.
type Issue struct {
	Type       string // OperationOutcome issue type (IssueRequired, ...)
	Code       string // stable quarantine code
	Expression string // FHIRPath relative to the resource ("valueQuantity.unit"); "" for the resource
	Message    string
}

func (i Issue) Error() string {
	if i.Expression == "" {
		return i.Code + ": " + i.Message
	}
	return fmt.Sprintf("%s at %s: %s", i.Code, i.Expression, i.Message)
}

// Path is the issue's expression below prefix (e.g. "Bundle.entry[3].resource").
func (i Issue) Path(prefix string) string {
	switch {
	case i.Expression == "":
		return prefix
	case prefix == "":
		return i.Expression
	}
	return prefix + "." + i.Expression
}

// FieldErrors turns issues into the field errors kept with a quarantined record; paths are
// FHIRPath expressions from Observation.
func FieldErrors(issues []Issue) reading.Errors {
	errs := make(reading.Errors, len(issues))
	for j, iss := range issues {
		errs[j] = reading.FieldError{Code: iss.Code, Path: iss.Path(TypeObservation), Message: iss.Message}
	}
	return errs
}

// OutcomeOf turns issues into an OperationOutcome; prefix is the FHIRPath of the resource
// ("Bundle.entry[3].resource", or "Observation").
func OutcomeOf(issues []Issue, prefix string) *OperationOutcome {
	oo := &OperationOutcome{ResourceType: TypeOperationOutcome}
	for _, iss := range issues {
		oo.Issue = append(oo.Issue, OutcomeIssue{Severity: "error", Code: iss.Type,
			Diagnostics: iss.Code + ": " + iss.Message, Expression: []string{iss.Path(prefix)}})
	}
	return oo
}

// issueOfField maps a field error of the reading parser to an issue; paths maps the
// reading's JSON pointers to the Observation elements they came from.
func issueOfField(fe reading.FieldError, paths map[string]string) Issue {
	typ := IssueValue
	switch fe.Code {
	case reading.CodeMissingField:
		typ = IssueRequired
	case reading.CodeInvalidJSON, reading.CodeInvalidType, reading.CodeUnknownField:
		typ = IssueStructure
	case reading.CodeSubjectNotAllow:
		typ = IssueForbidden
	}
	expr := paths[fe.Path]
	if expr == "" && strings.HasPrefix(fe.Path, "/values/") {
		expr = paths["/values"]
	}
	return Issue{Type: typ, Code: fe.Code, Expression: expr, Message: fe.Message}
}
