package fhir

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pulselake/pulselake/internal/reading"
)

// DefaultDevice is the device of an Observation that names none.
const DefaultDevice = "unspecified"

// idPrefix marks a reading id made from an Observation identifier.
const idPrefix = "fhir:"

// Decoder turns Observations into validated readings. It is not safe for concurrent use.
type Decoder struct {
	m *Mapper
	p *reading.Parser
}

// NewDecoder returns a decoder of m's codes.
func (m *Mapper) NewDecoder() *Decoder {
	return &Decoder{m: m, p: reading.NewParser(m.reg)}
}

// SetNow sets the clock readings' times are checked against (tests).
func (d *Decoder) SetNow(now func() time.Time) { d.p.Now = now }

// statuses holds the Observation statuses that carry a measurement.
var statuses = map[string]bool{"final": true, "amended": true, "corrected": true, "preliminary": true}

// Observation decodes one Observation resource into readings (one, or one per lead of a
// multi-lead ECG), validated as POST /v1/readings validates readings. ifNoneExist is the
// entry's conditional-create criterion ("identifier=system|value"), "" when none. On
// failure it returns every issue found and no reading.
func (d *Decoder) Observation(raw []byte, ifNoneExist string) ([]reading.Reading, []Issue) {
	var o Observation
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, []Issue{{IssueStructure, CodeInvalidResource, "", "resource is not a JSON Observation: " + shorten(err.Error())}}
	}
	if o.ResourceType != TypeObservation {
		return nil, []Issue{{IssueNotSupported, CodeInvalidResource, "resourceType",
			fmt.Sprintf("resourceType %q is not supported; send Observation resources", o.ResourceType)}}
	}
	var b builder
	b.o = &o
	c := b.header(d.m)
	key := b.idKey(ifNoneExist)
	if c == nil || len(b.issues) > 0 {
		return nil, b.issues
	}
	var rs []reading.Reading
	switch {
	case c.value != nil:
		rs = b.quantity(c)
	case c.sampled:
		rs = b.sampled(c, key)
	default:
		rs = b.panel(c)
	}
	if len(b.issues) > 0 {
		return nil, b.issues
	}
	if key != "" && len(rs) == 1 {
		rs[0].ID = readingID(key)
	}
	// The reading parser checks what every reading must satisfy (ranges, identifiers, time).
	out := rs[:0]
	var buf []byte
	for _, r := range rs {
		buf = r.AppendJSON(buf[:0])
		parsed, errs := d.p.Parse(buf)
		for _, fe := range errs {
			b.issues = append(b.issues, issueOfField(fe, b.paths))
		}
		out = append(out, parsed)
	}
	if len(b.issues) > 0 {
		return nil, b.issues
	}
	return out, nil
}

// builder collects the parts of one Observation's readings and the issues found.
type builder struct {
	o       *Observation
	subject string
	device  string
	t       time.Time
	end     time.Time // end of effectivePeriod; zero when none
	issues  []Issue
	paths   map[string]string // reading JSON pointer → Observation element
}

func (b *builder) add(typ, code, expr, format string, args ...any) {
	b.issues = append(b.issues, Issue{Type: typ, Code: code, Expression: expr, Message: fmt.Sprintf(format, args...)})
}

// header checks the elements every vital-sign Observation needs and returns the code's
// mapping (nil when the code is unknown).
func (b *builder) header(m *Mapper) *codeDef {
	o := b.o
	b.paths = map[string]string{"/subject": "subject.reference", "/device": "device.reference", "/id": "identifier", "/time": "effectiveDateTime"}
	switch {
	case o.Status == "":
		b.add(IssueRequired, reading.CodeMissingField, "status", "status is required (final, amended, corrected or preliminary)")
	case !statuses[o.Status]:
		b.add(IssueValue, CodeInvalidStatus, "status", "status %q holds no measurement to store; send final, amended, corrected or preliminary", o.Status)
	}
	c := b.code(m)
	b.category(c)
	b.subject, b.device = b.references()
	b.effective()
	return c
}

// code finds the mapping of Observation.code.
func (b *builder) code(m *Mapper) *codeDef {
	if b.o.Code == nil || len(b.o.Code.Coding) == 0 {
		b.add(IssueRequired, reading.CodeMissingField, "code", "code is required: a LOINC coding such as %s|8867-4 (heart rate)", SystemLOINC)
		return nil
	}
	var found *codeDef
	for i, cd := range b.o.Code.Coding {
		c, ok := m.byCode[cd.System+"|"+cd.Code]
		if !ok {
			continue
		}
		if found != nil && found != c {
			b.add(IssueInvalid, reading.CodeInconsistent, fmt.Sprintf("code.coding[%d]", i),
				"code names two different measurements (%s and %s); send one per Observation", found.kind, c.kind)
			return nil
		}
		found = c
	}
	if found == nil {
		b.add(IssueNotSupported, CodeUnknownCode, "code",
			"no coding of code is one pulselake maps (%s); supported: %s; other codes are kept in quarantine", codingsText(b.o.Code.Coding), strings.Join(m.Codes(), ", "))
	}
	return found
}

// category checks for the vital-signs category (or activity, for steps).
func (b *builder) category(c *codeDef) {
	for _, cc := range b.o.Category {
		for _, cd := range cc.Coding {
			if cd.System == SystemCategory && (cd.Code == "vital-signs" || (cd.Code == "activity" && c != nil && c.activity)) {
				return
			}
		}
	}
	b.add(IssueRequired, reading.CodeMissingField, "category",
		"category must include the coding %s|vital-signs (the vital-signs profile requires it)", SystemCategory)
}

// references reads subject (Patient/<id>, required) and device (Device/<id>).
func (b *builder) references() (subject, device string) {
	o := b.o
	if o.Subject == nil || o.Subject.Reference == "" {
		b.add(IssueRequired, reading.CodeMissingField, "subject", "subject is required: a reference Patient/<subject>")
	} else if id, ok := refID(o.Subject.Reference, "Patient"); ok {
		subject = id
	} else {
		b.add(IssueValue, CodeInvalidRef, "subject.reference", "subject %q is not a reference Patient/<id>", shorten(o.Subject.Reference))
	}
	device = DefaultDevice
	if o.Device != nil && o.Device.Reference != "" {
		if id, ok := refID(o.Device.Reference, "Device", "DeviceMetric"); ok {
			device = id
		} else {
			b.add(IssueValue, CodeInvalidRef, "device.reference", "device %q is not a reference Device/<id>", shorten(o.Device.Reference))
		}
	}
	return subject, device
}

// refID returns the id of a literal reference Type/id (relative or absolute) of one of types.
func refID(ref string, types ...string) (string, bool) {
	ref = strings.TrimSuffix(ref, "/")
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	j := strings.LastIndexByte(ref, '/')
	if j <= 0 {
		return "", false
	}
	typ := ref[:j]
	if k := strings.LastIndexByte(typ, '/'); k >= 0 {
		typ = typ[k+1:]
	}
	for _, t := range types {
		if typ == t && j+1 < len(ref) {
			return ref[j+1:], true
		}
	}
	return "", false
}

// effective reads effectiveDateTime or effectivePeriod.
func (b *builder) effective() {
	o := b.o
	switch {
	case o.EffectiveDateTime != "":
		t, err := ParseDateTime(o.EffectiveDateTime)
		if err != nil {
			b.add(IssueValue, reading.CodeInvalidTime, "effectiveDateTime", "%v", err)
		}
		b.t = t
	case o.EffectivePeriod != nil:
		b.paths["/time"] = "effectivePeriod.start"
		t, err := ParseDateTime(o.EffectivePeriod.Start)
		if err != nil {
			b.add(IssueValue, reading.CodeInvalidTime, "effectivePeriod.start", "%v", err)
		}
		b.t = t
		if o.EffectivePeriod.End != "" {
			end, err := ParseDateTime(o.EffectivePeriod.End)
			switch {
			case err != nil:
				b.add(IssueValue, reading.CodeInvalidTime, "effectivePeriod.end", "%v", err)
			case end.Before(t):
				b.add(IssueValue, reading.CodeInconsistent, "effectivePeriod.end", "end %s is before start %s", o.EffectivePeriod.End, o.EffectivePeriod.Start)
			default:
				b.end = end
			}
		}
	case o.EffectiveInstant != nil || o.EffectiveTiming != nil:
		b.add(IssueNotSupported, CodeUnsupported, "effective", "effectiveInstant and effectiveTiming are not supported; send effectiveDateTime or effectivePeriod")
	default:
		b.add(IssueRequired, reading.CodeMissingField, "effective", "effectiveDateTime or effectivePeriod is required (when the measurement was made)")
	}
}

// ParseDateTime parses a FHIR dateTime precise at least to the day (the vital-signs
// profile's invariant vs-1): YYYY-MM-DD (midnight UTC) or a date and time with its zone.
func ParseDateTime(s string) (time.Time, error) {
	if len(s) == len("2006-01-02") {
		t, err := time.Parse(time.DateOnly, s)
		if err == nil {
			return t, nil
		}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("dateTime %q is not a date (YYYY-MM-DD) nor a date and time with zone (2026-11-23T10:00:00Z); vital signs need at least the day", shorten(s))
	}
	return t.UTC(), nil
}

// idKey returns the key the reading id derives from: the ifNoneExist identifier, else the
// first identifier with a value, else "".
func (b *builder) idKey(ifNoneExist string) string {
	if ifNoneExist != "" {
		v, ok := strings.CutPrefix(ifNoneExist, "identifier=")
		if !ok || v == "" || strings.ContainsAny(v, "&,") {
			b.add(IssueNotSupported, CodeInvalidRequest, "", "ifNoneExist %q is not supported: only identifier=system|value is", shorten(ifNoneExist))
			return ""
		}
		if !strings.Contains(v, "|") {
			v = "|" + v
		}
		return v
	}
	for _, id := range b.o.Identifier {
		if id.Value != "" {
			return id.System + "|" + id.Value
		}
	}
	return ""
}

// readingID is the reading id of an identifier key: the value itself for pulselake's own
// identifiers, else "fhir:system|value", hashed when too long or not printable.
func readingID(key string) string {
	if v, ok := strings.CutPrefix(key, SystemReadingID+"|"); ok && len(v) <= reading.MaxIDLen && printable(v) {
		return v
	}
	id := idPrefix + key
	if len(id) <= reading.MaxIDLen && printable(id) {
		return id
	}
	sum := sha256.Sum256([]byte(key))
	return idPrefix + "sha256:" + hex.EncodeToString(sum[:16])
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// base returns a reading of the Observation's subject, device, kind and time.
func (b *builder) base(kind string) reading.Reading {
	return reading.Reading{Subject: b.subject, Device: b.device, Kind: kind, Time: b.t, Values: map[string]float64{}}
}

// unsupportedValue reports a value[x] of a type pulselake does not map.
func (b *builder) unsupportedValue(want string) bool {
	o := b.o
	for _, v := range []struct {
		name string
		raw  json.RawMessage
	}{{"valueCodeableConcept", o.ValueCodeableConcept}, {"valueString", o.ValueString}, {"valueBoolean", o.ValueBoolean},
		{"valueInteger", o.ValueInteger}, {"valueRange", o.ValueRange}, {"valueRatio", o.ValueRatio}, {"valueTime", o.ValueTime},
		{"valueDateTime", o.ValueDateTime}, {"valuePeriod", o.ValuePeriod}} {
		if name := v.name; v.raw != nil {
			b.add(IssueNotSupported, CodeUnsupported, name, "%s is not supported for this code; send %s", name, want)
			return true
		}
	}
	if o.ValueQuantity != nil && want != "valueQuantity" {
		b.add(IssueNotSupported, CodeUnsupported, "valueQuantity", "valueQuantity is not supported for this code; send %s", want)
		return true
	}
	if o.DataAbsentReason != nil {
		b.add(IssueRequired, reading.CodeMissingField, "value", "the Observation has no value (dataAbsentReason): there is no measurement to store")
		return true
	}
	return false
}

// quantity reads a single-valued Observation (heart rate, SpO2, steps, declared kinds).
func (b *builder) quantity(c *codeDef) []reading.Reading {
	o := b.o
	if o.ValueQuantity == nil {
		if !b.unsupportedValue("valueQuantity") {
			b.add(IssueRequired, reading.CodeMissingField, "value", "valueQuantity is required (in %s)", c.value.unit)
		}
		return nil
	}
	v, ok := b.checkQuantity(o.ValueQuantity, c.value, "valueQuantity")
	if !ok {
		return nil
	}
	r := b.base(c.kind)
	r.Values[c.value.field] = v
	b.paths["/values/"+c.value.field] = "valueQuantity.value"
	if !b.end.IsZero() && c.kind == "steps" {
		if d := b.end.Sub(b.t); d > 0 {
			r.Values["interval_s"] = d.Seconds()
			b.paths["/values/interval_s"] = "effectivePeriod.end"
		}
	}
	return []reading.Reading{r}
}

// checkQuantity checks a Quantity of q at expr: a value, a unit, and q's UCUM code.
func (b *builder) checkQuantity(qt *Quantity, q *quantityDef, expr string) (float64, bool) {
	ok := true
	if qt.Value == nil {
		b.add(IssueRequired, reading.CodeMissingField, expr+".value", "value is required")
		ok = false
	}
	if qt.Unit == "" {
		b.add(IssueRequired, reading.CodeMissingField, expr+".unit", "unit is required (e.g. %q)", q.unitDisplay)
		ok = false
	}
	if qt.System != SystemUCUM {
		b.add(IssueValue, CodeInvalidUnit, expr+".system", "system must be %s (UCUM), got %q", SystemUCUM, shorten(qt.System))
		ok = false
	} else if !contains(q.units, qt.Code) {
		b.add(IssueValue, CodeInvalidUnit, expr+".code", "unit code must be %s, got %q; convert the value", strings.Join(q.units, " or "), shorten(qt.Code))
		ok = false
	}
	if !ok {
		return 0, false
	}
	return *qt.Value, true
}

// panel reads a blood-pressure panel: systolic and diastolic components, optional pulse.
// Components of other codes are not stored.
func (b *builder) panel(c *codeDef) []reading.Reading {
	if b.unsupportedValue("component") {
		return nil
	}
	r := b.base(c.kind)
	for i, comp := range b.o.Component {
		if comp.Code == nil {
			b.add(IssueRequired, reading.CodeMissingField, fmt.Sprintf("component[%d].code", i), "component code is required")
			continue
		}
		for j := range c.parts {
			p := &c.parts[j]
			if !hasCoding(comp.Code, p.system, p.code) {
				continue
			}
			expr := fmt.Sprintf("component[%d].valueQuantity", i)
			if comp.ValueQuantity == nil {
				b.add(IssueRequired, reading.CodeMissingField, expr, "component %s (%s) needs valueQuantity in %s", p.code, p.display, p.unit)
				break
			}
			if v, ok := b.checkQuantity(comp.ValueQuantity, p, expr); ok {
				r.Values[p.field] = v
				b.paths["/values/"+p.field] = expr + ".value"
			}
			break
		}
	}
	for _, p := range c.parts[:2] {
		if _, ok := r.Values[p.field]; !ok && !b.reported() {
			b.add(IssueRequired, reading.CodeMissingField, "component",
				"a component coded %s|%s (%s) with valueQuantity in %s is required", p.system, p.code, p.display, p.unit)
		}
	}
	return []reading.Reading{r}
}

// reported tells whether an issue about a component was already added.
func (b *builder) reported() bool {
	for _, iss := range b.issues {
		if strings.HasPrefix(iss.Expression, "component[") {
			return true
		}
	}
	return false
}

// Sample limits of ECG leads.
const maxDataLen = 16 << 20 // characters of one SampledData.data

// sampled reads an ECG: valueSampledData, or one component with valueSampledData per lead.
func (b *builder) sampled(c *codeDef, key string) []reading.Reading {
	o := b.o
	if o.ValueSampledData != nil {
		r, ok := b.lead(c, o.ValueSampledData, "valueSampledData")
		if !ok {
			return nil
		}
		return []reading.Reading{r}
	}
	if b.unsupportedValue("valueSampledData") {
		return nil
	}
	var rs []reading.Reading
	var leads []string
	for i, comp := range o.Component {
		if comp.ValueSampledData == nil {
			continue
		}
		r, ok := b.lead(c, comp.ValueSampledData, fmt.Sprintf("component[%d].valueSampledData", i))
		if !ok {
			continue
		}
		lead := strconv.Itoa(i)
		if comp.Code != nil && len(comp.Code.Coding) > 0 {
			lead = comp.Code.Coding[0].Code
		}
		rs, leads = append(rs, r), append(leads, lead)
	}
	if len(rs) == 0 && len(b.issues) == 0 {
		b.add(IssueRequired, reading.CodeMissingField, "value", "an ECG needs valueSampledData, or a component with valueSampledData per lead")
	}
	if len(rs) > 1 {
		// Leads of one recording share subject, device and time: each gets an id of its own.
		for i := range rs {
			k := key
			if k == "" {
				k = "ecg|" + b.subject + "|" + b.device + "|" + b.t.Format(time.RFC3339Nano)
			}
			rs[i].ID = readingID(k + "#lead-" + leads[i])
		}
	}
	return rs
}

// lead reads one lead's SampledData at expr into an ecg reading (samples in mV).
func (b *builder) lead(c *codeDef, sd *SampledData, expr string) (reading.Reading, bool) {
	n := len(b.issues)
	scale := 0.0
	switch {
	case sd.Origin == nil || sd.Origin.Value == nil:
		b.add(IssueRequired, reading.CodeMissingField, expr+".origin", "origin (a Quantity in mV) is required")
	case sd.Origin.System != SystemUCUM || mvScale[sd.Origin.Code] == 0:
		b.add(IssueValue, CodeInvalidUnit, expr+".origin.code", "origin must be in UCUM mV, uV or V, got %q", shorten(sd.Origin.Code))
	default:
		scale = mvScale[sd.Origin.Code]
	}
	if sd.Period == nil || !(*sd.Period > 0) || math.IsInf(*sd.Period, 0) {
		b.add(IssueRequired, reading.CodeMissingField, expr+".period", "period (milliseconds between samples, above 0) is required")
	}
	if sd.Dimensions == nil || *sd.Dimensions != 1 {
		b.add(IssueValue, reading.CodeInvalidValue, expr+".dimensions", "dimensions must be 1: one lead per valueSampledData")
	}
	if sd.Data == "" || len(sd.Data) > maxDataLen {
		b.add(IssueRequired, reading.CodeMissingField, expr+".data", "data (samples separated by spaces) is required, at most %d characters", maxDataLen)
	}
	if len(b.issues) > n {
		return reading.Reading{}, false
	}
	factor := 1.0
	if sd.Factor != nil {
		factor = *sd.Factor
	}
	fields := strings.Fields(sd.Data)
	if len(fields) > reading.MaxSamples {
		b.add(IssueValue, reading.CodeInvalidLength, expr+".data", "%d samples, at most %d per lead", len(fields), reading.MaxSamples)
		return reading.Reading{}, false
	}
	samples := make([]float64, len(fields))
	for i, f := range fields {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			b.add(IssueValue, reading.CodeInvalidValue, expr+".data", "sample %d %q is not a number (E, L and U are not supported)", i, shorten(f))
			return reading.Reading{}, false
		}
		samples[i] = (*sd.Origin.Value + factor*v) * scale
	}
	r := b.base(c.kind)
	// fs to a millionth of a hertz: 1000/period does not give back e.g. 360 exactly.
	r.Values["fs"] = math.Round(1000 / *sd.Period * 1e6) / 1e6
	r.Samples = samples
	b.paths["/values/fs"] = expr + ".period"
	b.paths["/values/samples"] = expr + ".data"
	return r, true
}

// mvScale converts SampledData origin units to mV.
var mvScale = map[string]float64{"mV": 1, "uV": 1e-3, "V": 1e3}

func hasCoding(cc *CodeableConcept, system, code string) bool {
	for _, cd := range cc.Coding {
		if cd.System == system && cd.Code == code {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func codingsText(cs []Coding) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, shorten(c.System+"|"+c.Code))
	}
	return strings.Join(parts, ", ")
}

// shorten bounds text quoted back in messages.
func shorten(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
