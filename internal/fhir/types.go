// Package fhir maps pulselake readings to HL7 FHIR R4 vital-sign Observations and back
// (JSON only, SPEC §11, docs/formats.md "FHIR R4").
//
// It holds the subset of the FHIR R4 resources pulselake speaks (Bundle, Observation,
// OperationOutcome, CapabilityStatement), the code table (LOINC and MDC codes, UCUM units)
// of the built-in kinds and of the kinds declared in configuration with a LOINC code, and
// the validation of the vital-signs profile's required elements. An Observation that
// cannot become a reading is never dropped: it comes back with Issues, each with an
// OperationOutcome issue type, the FHIRPath expression of the element and a message, and
// a stable quarantine code.
//
// A Mapper is immutable and safe for concurrent use; a Decoder holds a reading parser and
// is for one goroutine at a time.
package fhir

import "encoding/json"

// Code systems and fixed URIs.
const (
	SystemLOINC    = "http://loinc.org"
	SystemUCUM     = "http://unitsofmeasure.org"
	SystemMDC      = "urn:oid:2.16.840.1.113883.6.24" // ISO/IEEE 11073-10101 nomenclature
	SystemCategory = "http://terminology.hl7.org/CodeSystem/observation-category"
	// SystemReadingID is the identifier system of a reading's own idempotency key: an
	// Observation identifier of this system gives the reading that id unchanged.
	SystemReadingID = "urn:pulselake:reading-id"
	// ProfileVitalSigns is the canonical URL of the R4 vital-signs profile.
	ProfileVitalSigns = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
)

// Resource types and Bundle types.
const (
	TypeBundle           = "Bundle"
	TypeObservation      = "Observation"
	TypeOperationOutcome = "OperationOutcome"

	BundleTransaction         = "transaction"
	BundleBatch               = "batch"
	BundleTransactionResponse = "transaction-response"
	BundleBatchResponse       = "batch-response"
	BundleSearchset           = "searchset"
)

// ContentType is the media type of FHIR JSON.
const ContentType = "application/fhir+json"

// Bundle is a FHIR R4 Bundle (the elements pulselake reads and writes).
type Bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id,omitempty"`
	Type         string        `json:"type"`
	Timestamp    string        `json:"timestamp,omitempty"`
	Total        *int          `json:"total,omitempty"`
	Link         []BundleLink  `json:"link,omitempty"`
	Entry        []BundleEntry `json:"entry,omitempty"`
}

// BundleLink is one of Bundle.link.
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is one of Bundle.entry. Resource is kept as received.
type BundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *EntrySearch    `json:"search,omitempty"`
	Request  *EntryRequest   `json:"request,omitempty"`
	Response *EntryResponse  `json:"response,omitempty"`
}

// EntrySearch is Bundle.entry.search of a searchset.
type EntrySearch struct {
	Mode string `json:"mode,omitempty"`
}

// EntryRequest is Bundle.entry.request of a transaction or batch.
type EntryRequest struct {
	Method      string `json:"method"`
	URL         string `json:"url"`
	IfNoneExist string `json:"ifNoneExist,omitempty"`
}

// EntryResponse is Bundle.entry.response of a transaction-response or batch-response.
type EntryResponse struct {
	Status   string            `json:"status"`
	Location string            `json:"location,omitempty"`
	Outcome  *OperationOutcome `json:"outcome,omitempty"`
}

// Observation is a FHIR R4 Observation: the elements of the vital-signs profile pulselake
// maps. Elements it does not map (interpretation, note, bodySite, ...) are ignored; value
// types it does not support are kept raw to be reported.
type Observation struct {
	ResourceType      string            `json:"resourceType"`
	ID                string            `json:"id,omitempty"`
	Meta              *Meta             `json:"meta,omitempty"`
	Identifier        []Identifier      `json:"identifier,omitempty"`
	Status            string            `json:"status"`
	Category          []CodeableConcept `json:"category,omitempty"`
	Code              *CodeableConcept  `json:"code,omitempty"`
	Subject           *Reference        `json:"subject,omitempty"`
	EffectiveDateTime string            `json:"effectiveDateTime,omitempty"`
	EffectivePeriod   *Period           `json:"effectivePeriod,omitempty"`
	ValueQuantity     *Quantity         `json:"valueQuantity,omitempty"`
	ValueSampledData  *SampledData      `json:"valueSampledData,omitempty"`
	Device            *Reference        `json:"device,omitempty"`
	Component         []Component       `json:"component,omitempty"`

	// Value types pulselake does not map, kept to report them.
	ValueCodeableConcept json.RawMessage `json:"valueCodeableConcept,omitempty"`
	ValueString          json.RawMessage `json:"valueString,omitempty"`
	ValueBoolean         json.RawMessage `json:"valueBoolean,omitempty"`
	ValueInteger         json.RawMessage `json:"valueInteger,omitempty"`
	ValueRange           json.RawMessage `json:"valueRange,omitempty"`
	ValueRatio           json.RawMessage `json:"valueRatio,omitempty"`
	ValueTime            json.RawMessage `json:"valueTime,omitempty"`
	ValueDateTime        json.RawMessage `json:"valueDateTime,omitempty"`
	ValuePeriod          json.RawMessage `json:"valuePeriod,omitempty"`
	DataAbsentReason     json.RawMessage `json:"dataAbsentReason,omitempty"`
	EffectiveInstant     json.RawMessage `json:"effectiveInstant,omitempty"`
	EffectiveTiming      json.RawMessage `json:"effectiveTiming,omitempty"`
}

// Component is one of Observation.component.
type Component struct {
	Code             *CodeableConcept `json:"code,omitempty"`
	ValueQuantity    *Quantity        `json:"valueQuantity,omitempty"`
	ValueSampledData *SampledData     `json:"valueSampledData,omitempty"`
	DataAbsentReason json.RawMessage  `json:"dataAbsentReason,omitempty"`
}

// Meta is Resource.meta.
type Meta struct {
	Profile []string `json:"profile,omitempty"`
}

// Identifier is a FHIR Identifier.
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value,omitempty"`
}

// CodeableConcept is a FHIR CodeableConcept.
type CodeableConcept struct {
	Coding []Coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

// Coding is a FHIR Coding.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// Reference is a FHIR Reference (literal references only).
type Reference struct {
	Reference string `json:"reference,omitempty"`
	Display   string `json:"display,omitempty"`
}

// Period is a FHIR Period.
type Period struct {
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
}

// Quantity is a FHIR Quantity.
type Quantity struct {
	Value  *float64 `json:"value,omitempty"`
	Unit   string   `json:"unit,omitempty"`
	System string   `json:"system,omitempty"`
	Code   string   `json:"code,omitempty"`
}

// SampledData is a FHIR R4 SampledData: data holds decimals separated by single spaces,
// each one origin + factor × d in origin's unit, period milliseconds apart.
type SampledData struct {
	Origin     *Quantity `json:"origin,omitempty"`
	Period     *float64  `json:"period,omitempty"`
	Factor     *float64  `json:"factor,omitempty"`
	LowerLimit *float64  `json:"lowerLimit,omitempty"`
	UpperLimit *float64  `json:"upperLimit,omitempty"`
	Dimensions *int      `json:"dimensions,omitempty"`
	Data       string    `json:"data,omitempty"`
}

// OperationOutcome is a FHIR R4 OperationOutcome.
type OperationOutcome struct {
	ResourceType string         `json:"resourceType"`
	Issue        []OutcomeIssue `json:"issue"`
}

// OutcomeIssue is one of OperationOutcome.issue.
type OutcomeIssue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// Outcome returns an OperationOutcome of one error issue.
func Outcome(code, expression, diagnostics string) *OperationOutcome {
	iss := OutcomeIssue{Severity: "error", Code: code, Diagnostics: diagnostics}
	if expression != "" {
		iss.Expression = []string{expression}
	}
	return &OperationOutcome{ResourceType: TypeOperationOutcome, Issue: []OutcomeIssue{iss}}
}

// CapabilityStatement is a FHIR R4 CapabilityStatement (the elements pulselake states).
type CapabilityStatement struct {
	ResourceType   string              `json:"resourceType"`
	Status         string              `json:"status"`
	Date           string              `json:"date"`
	Kind           string              `json:"kind"`
	Software       *CapabilitySoftware `json:"software,omitempty"`
	Implementation *CapabilityImpl     `json:"implementation,omitempty"`
	FHIRVersion    string              `json:"fhirVersion"`
	Format         []string            `json:"format"`
	Rest           []CapabilityRest    `json:"rest"`
}

// CapabilitySoftware is CapabilityStatement.software.
type CapabilitySoftware struct {
	Name string `json:"name"`
}

// CapabilityImpl is CapabilityStatement.implementation.
type CapabilityImpl struct {
	Description string `json:"description"`
	URL         string `json:"url,omitempty"`
}

// CapabilityRest is CapabilityStatement.rest.
type CapabilityRest struct {
	Mode          string               `json:"mode"`
	Documentation string               `json:"documentation,omitempty"`
	Security      *CapabilitySecurity  `json:"security,omitempty"`
	Resource      []CapabilityResource `json:"resource"`
	Interaction   []Interaction        `json:"interaction,omitempty"`
}

// CapabilitySecurity is CapabilityStatement.rest.security.
type CapabilitySecurity struct {
	Description string `json:"description"`
}

// CapabilityResource is CapabilityStatement.rest.resource.
type CapabilityResource struct {
	Type              string        `json:"type"`
	Profile           string        `json:"profile,omitempty"`
	Interaction       []Interaction `json:"interaction"`
	Versioning        string        `json:"versioning,omitempty"`
	ConditionalCreate bool          `json:"conditionalCreate,omitempty"`
	SearchParam       []SearchParam `json:"searchParam,omitempty"`
}

// Interaction is an interaction code (read, search-type, transaction, batch).
type Interaction struct {
	Code string `json:"code"`
}

// SearchParam is CapabilityStatement.rest.resource.searchParam.
type SearchParam struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Documentation string `json:"documentation,omitempty"`
}
