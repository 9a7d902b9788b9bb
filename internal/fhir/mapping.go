package fhir

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// Quantity describes one measured value: its code and its UCUM unit.
type quantityDef struct {
	field       string   // the reading's value
	system      string   // code system of the value's code (LOINC)
	code        string   // code of the value (the component's code in a panel)
	display     string   // display of that code
	unit        string   // UCUM code written
	unitDisplay string   // human-readable unit written (Quantity.unit)
	units       []string // UCUM codes accepted
}

// codeDef maps one kind to its Observation code.
type codeDef struct {
	kind     string
	system   string
	code     string
	display  string
	also     []Coding      // further codings written beside code (SpO2's pulse-oximetry code)
	value    *quantityDef  // the valueQuantity, or nil
	parts    []quantityDef // the components of a panel (blood pressure)
	sampled  bool          // valueSampledData per lead (ECG)
	activity bool          // category activity is accepted beside vital-signs
}

// Codes of the built-in kinds (SPEC §11). LOINC codes and UCUM units as the R4 vital-signs
// profiles fix them (hl7.org/fhir/R4/observation-vitalsigns.html); ECG as the FHIR R4
// SampledData example (observation-example-sample-data) codes it, in the ISO/IEEE 11073
// nomenclature (MDC).
var heartRate = quantityDef{field: "bpm", system: SystemLOINC, code: "8867-4", display: "Heart rate",
	unit: "/min", unitDisplay: "beats/minute", units: []string{"/min"}}

func builtinCodes() []codeDef {
	return []codeDef{
		{kind: "heart_rate", system: SystemLOINC, code: "8867-4", display: "Heart rate", value: &heartRate},
		{kind: "blood_pressure", system: SystemLOINC, code: "85354-9", display: "Blood pressure panel with all children optional",
			parts: []quantityDef{
				{field: "systolic", system: SystemLOINC, code: "8480-6", display: "Systolic blood pressure", unit: "mm[Hg]", unitDisplay: "mmHg", units: []string{"mm[Hg]"}},
				{field: "diastolic", system: SystemLOINC, code: "8462-4", display: "Diastolic blood pressure", unit: "mm[Hg]", unitDisplay: "mmHg", units: []string{"mm[Hg]"}},
				heartRate.withField("pulse"),
			}},
		{kind: "spo2", system: SystemLOINC, code: "2708-6", display: "Oxygen saturation in Arterial blood",
			also:  []Coding{{System: SystemLOINC, Code: "59408-5", Display: "Oxygen saturation in Arterial blood by Pulse oximetry"}},
			value: &quantityDef{field: "percent", unit: "%", unitDisplay: "%", units: []string{"%"}}},
		{kind: "steps", system: SystemLOINC, code: "55423-8", display: "Number of steps in unspecified time Pedometer", activity: true,
			value: &quantityDef{field: "count", unit: "{steps}", unitDisplay: "steps", units: []string{"{steps}", "{step}", "{count}", "1"}}},
		{kind: "ecg", system: SystemMDC, code: "131328", display: "MDC_ECG_ELEC_POTL", sampled: true},
	}
}

func (q quantityDef) withField(f string) quantityDef { q.field = f; return q }

// Declared is the FHIR code of a kind declared in configuration (kinds[].loinc, .ucum):
// its one number value becomes valueQuantity.
type Declared struct {
	Kind  string
	LOINC string
	UCUM  string
}

// Mapper maps readings to Observations and back. It is immutable and safe for concurrent use.
type Mapper struct {
	reg    *reading.Registry
	codes  []codeDef
	byKind map[string]*codeDef
	byCode map[string]*codeDef // system|code → kind
}

// NewMapper returns the mapper of the built-in kinds and the declared ones of reg.
func NewMapper(reg *reading.Registry, declared []Declared) (*Mapper, error) {
	m := &Mapper{reg: reg, codes: builtinCodes(), byKind: map[string]*codeDef{}, byCode: map[string]*codeDef{}}
	for _, d := range declared {
		k, ok := reg.Kind(d.Kind)
		if !ok {
			return nil, fmt.Errorf("mapping kind %q to LOINC %s: no such kind", d.Kind, d.LOINC)
		}
		var field string
		for _, f := range k.Fields {
			if f.Type == reading.Number {
				field = f.Name
				break
			}
		}
		if field == "" || d.UCUM == "" {
			return nil, fmt.Errorf("mapping kind %q to LOINC %s: it needs one number value and a UCUM unit", d.Kind, d.LOINC)
		}
		m.codes = append(m.codes, codeDef{kind: d.Kind, system: SystemLOINC, code: d.LOINC, display: d.Kind,
			value: &quantityDef{field: field, unit: d.UCUM, unitDisplay: d.UCUM, units: []string{d.UCUM}}})
	}
	for i := range m.codes {
		c := &m.codes[i]
		key := c.system + "|" + c.code
		if prev, dup := m.byCode[key]; dup {
			return nil, fmt.Errorf("mapping kind %q to %s: the code already maps kind %s", c.kind, key, prev.kind)
		}
		m.byCode[key] = c
		for _, a := range c.also {
			m.byCode[a.System+"|"+a.Code] = c
		}
		m.byKind[c.kind] = c
	}
	return m, nil
}

// Kinds returns the kinds that have an Observation code, in table order.
func (m *Mapper) Kinds() []string {
	out := make([]string, len(m.codes))
	for i, c := range m.codes {
		out[i] = c.kind
	}
	return out
}

// KindsOf returns the kinds a search token (system|code, or a bare code) names.
func (m *Mapper) KindsOf(token string) []string {
	system, code, hasSystem := strings.Cut(token, "|")
	if !hasSystem {
		system, code = "", token
	}
	var out []string
	for key, c := range m.byCode {
		s, k, _ := strings.Cut(key, "|")
		if k == code && (!hasSystem || system == "" || system == s) && !slices.Contains(out, c.kind) {
			out = append(out, c.kind)
		}
	}
	slices.Sort(out)
	return out
}

// Codes returns the system|code of every mapped code, sorted (CapabilityStatement, docs).
func (m *Mapper) Codes() []string {
	out := make([]string, 0, len(m.byCode))
	for k := range m.byCode {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Fields returns the value fields a kind's Observation carries, for reading them back
// from the lake.
func (m *Mapper) Fields(kind string) []string {
	c, ok := m.byKind[kind]
	if !ok {
		return nil
	}
	switch {
	case c.value != nil && kind == "steps":
		return []string{"count", "interval_s"}
	case c.value != nil:
		return []string{c.value.field}
	case c.sampled:
		return []string{"fs", "samples"}
	}
	fs := make([]string, len(c.parts))
	for i, p := range c.parts {
		fs[i] = p.field
	}
	return fs
}

// timeFormat writes a FHIR dateTime/instant in UTC to the microsecond.
const timeFormat = "2006-01-02T15:04:05.999999Z07:00"

// Encode returns the Observation of r; id is its logical id (the reading's identity).
// False when r's kind has no Observation code or lacks the value the code needs.
func (m *Mapper) Encode(r *reading.Reading, id string) (*Observation, bool) {
	c, ok := m.byKind[r.Kind]
	if !ok {
		return nil, false
	}
	o := &Observation{
		ResourceType: TypeObservation, ID: id,
		Meta:     &Meta{Profile: []string{ProfileVitalSigns}},
		Status:   "final",
		Category: []CodeableConcept{{Coding: []Coding{{System: SystemCategory, Code: "vital-signs", Display: "Vital Signs"}}, Text: "Vital Signs"}},
		Code:     &CodeableConcept{Coding: append([]Coding{{System: c.system, Code: c.code, Display: c.display}}, c.also...), Text: c.display},
		Subject:  &Reference{Reference: "Patient/" + r.Subject},
		Device:   &Reference{Reference: "Device/" + r.Device},
	}
	if r.ID != "" {
		o.Identifier = []Identifier{identifierOf(r.ID)}
	}
	o.EffectiveDateTime = r.Time.UTC().Format(timeFormat)
	switch {
	case c.value != nil:
		v, ok := r.Values[c.value.field]
		if !ok {
			return nil, false
		}
		o.ValueQuantity = c.value.quantity(v)
		if s, ok := r.Values["interval_s"]; ok && r.Kind == "steps" {
			end := r.Time.Add(time.Duration(math.Round(s*1e6)) * time.Microsecond)
			o.EffectiveDateTime = ""
			o.EffectivePeriod = &Period{Start: r.Time.UTC().Format(timeFormat), End: end.UTC().Format(timeFormat)}
		}
	case c.sampled:
		fs, ok := r.Values["fs"]
		if !ok || len(r.Samples) == 0 {
			return nil, false
		}
		o.Component = []Component{{
			Code:             &CodeableConcept{Coding: []Coding{{System: SystemMDC, Code: c.code, Display: c.display}}},
			ValueSampledData: sampledData(fs, r.Samples),
		}}
	default:
		for _, p := range c.parts {
			v, ok := r.Values[p.field]
			if !ok {
				continue
			}
			o.Component = append(o.Component, Component{
				Code:          &CodeableConcept{Coding: []Coding{{System: p.system, Code: p.code, Display: p.display}}, Text: p.display},
				ValueQuantity: p.quantity(v),
			})
		}
	}
	return o, true
}

func (q *quantityDef) quantity(v float64) *Quantity {
	return &Quantity{Value: &v, Unit: q.unitDisplay, System: SystemUCUM, Code: q.unit}
}

// sampledData writes one lead of samples in mV at fs Hz.
func sampledData(fs float64, samples []float64) *SampledData {
	period := 1000 / fs
	dims := 1
	b := make([]byte, 0, len(samples)*8)
	for i, s := range samples {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendFloat(b, s, 'g', -1, 64)
	}
	zero := 0.0
	return &SampledData{Origin: &Quantity{Value: &zero, Unit: "mV", System: SystemUCUM, Code: "mV"}, Period: &period, Dimensions: &dims, Data: string(b)}
}

// identifierOf is the Observation identifier of a reading id: the identifier it was made
// from when it came from one ("fhir:system|value"), else the id under SystemReadingID.
func identifierOf(id string) Identifier {
	if rest, ok := strings.CutPrefix(id, idPrefix); ok {
		if system, value, ok := strings.Cut(rest, "|"); ok && value != "" {
			return Identifier{System: system, Value: value}
		}
	}
	return Identifier{System: SystemReadingID, Value: id}
}
