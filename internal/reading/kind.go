package reading

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
)

// FieldType is the JSON type of a value field.
type FieldType int

const (
	Number  FieldType = iota // a JSON number
	Text                     // a JSON string, optionally restricted to an enumeration
	Samples                  // a JSON array of numbers
)

func (t FieldType) String() string {
	switch t {
	case Number:
		return "number"
	case Text:
		return "string"
	case Samples:
		return "array of numbers"
	}
	return "unknown"
}

// Field declares one entry of a kind's "values" object.
type Field struct {
	Name     string
	Type     FieldType
	Unit     string
	Required bool
	// Range of a Number, or of every element of Samples. Nil means unbounded on that side.
	Min, Max *float64
	// MinExclusive makes Min an exclusive bound (value > Min).
	MinExclusive bool
	// Enum lists the allowed values of a Text field; empty allows any short text.
	Enum []string
	// Len is the exact number of elements of a Samples field; 0 allows 1..MaxSamples.
	Len int
}

// Kind declares a kind of reading: its value fields and cross-field checks.
type Kind struct {
	Name   string
	Fields []Field
	// Check validates relations between values after each field passed its own checks.
	Check func(r *Reading) Errors
	index map[string]int
}

// Field returns the declaration of the named value field.
func (k *Kind) Field(name string) (Field, bool) {
	i, ok := k.index[name]
	if !ok {
		return Field{}, false
	}
	return k.Fields[i], true
}

// Limits of identifiers and arrays. Subjects and devices appear in MQTT topics, NATS subjects
// and lake partitions, so they are restricted to a portable character set.
const (
	MaxIDLen      = 128
	MaxTextLen    = 64
	MaxSamples    = 1 << 16 // one ecg reading: 65,536 samples, 4.5 min at 250 Hz
	MaxKindFields = 64
)

var kindRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// CheckIdent checks a subject or device name given outside a reading (a token's subject
// binding, a command-line flag): the rule readings' subject and device fields follow.
func CheckIdent(what, s string) error {
	if len(s) == 0 || len(s) > MaxIDLen || !validIdent(s) {
		return fmt.Errorf("%s %q must be 1..%d characters of A-Z a-z 0-9 . _ : @ + - starting with a letter or digit", what, s, MaxIDLen)
	}
	return nil
}

// validIdent reports whether s is a subject or device name: a letter or digit, then letters,
// digits and . _ : @ + - (the length is checked by the callers).
func validIdent(s string) bool {
	if s == "" || !alnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !alnum(c) && c != '.' && c != '_' && c != ':' && c != '@' && c != '+' && c != '-' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }

func ptr(v float64) *float64 { return &v }

// Plausible ranges of the built-in kinds (SPEC §3). Values outside them are physiologically
// impossible or a device fault; such readings are rejected into quarantine, never clamped.
const (
	heartRateMin = 20  // bpm; below the slowest recorded sustained bradycardia
	heartRateMax = 300 // bpm; above the fastest recorded ventricular rates
	systolicMin  = 40  // mmHg; AHA: below this a cuff cannot measure
	systolicMax  = 300 // mmHg; upper limit of validated oscillometric cuffs
	diastolicMin = 20  // mmHg
	diastolicMax = 200 // mmHg
	spo2Min      = 50  // percent; pulse oximeters are not calibrated below ~70, 50 is a hard floor
	spo2Max      = 100 // percent
	accelMaxG    = 16  // g; the widest range of common MEMS accelerometers (±16 g)
	ecgFsMin     = 50  // Hz; below this QRS complexes cannot be resolved
	ecgFsMax     = 10000
	ecgMaxMV     = 50 // mV; far above any surface ECG amplitude
	beatLen      = 187
)

// SleepStages are the stages of a sleep reading: Fitbit's stage and classic sleep levels.
var SleepStages = []string{"wake", "light", "deep", "rem", "asleep", "restless"}

// Builtin returns the built-in kinds of SPEC §3.
func Builtin() []*Kind {
	return []*Kind{
		{Name: "heart_rate", Fields: []Field{
			{Name: "bpm", Type: Number, Unit: "1/min", Required: true, Min: ptr(heartRateMin), Max: ptr(heartRateMax)},
		}},
		{Name: "blood_pressure", Fields: []Field{
			{Name: "systolic", Type: Number, Unit: "mmHg", Required: true, Min: ptr(systolicMin), Max: ptr(systolicMax)},
			{Name: "diastolic", Type: Number, Unit: "mmHg", Required: true, Min: ptr(diastolicMin), Max: ptr(diastolicMax)},
			{Name: "pulse", Type: Number, Unit: "1/min", Min: ptr(heartRateMin), Max: ptr(heartRateMax)},
		}, Check: checkBloodPressure},
		{Name: "spo2", Fields: []Field{
			{Name: "percent", Type: Number, Unit: "%", Required: true, Min: ptr(spo2Min), Max: ptr(spo2Max)},
		}},
		{Name: "steps", Fields: []Field{
			{Name: "count", Type: Number, Unit: "1", Required: true, Min: ptr(0)},
			{Name: "interval_s", Type: Number, Unit: "s", Min: ptr(0), MinExclusive: true},
		}},
		{Name: "sleep", Fields: []Field{
			{Name: "stage", Type: Text, Required: true, Enum: SleepStages},
			{Name: "duration_s", Type: Number, Unit: "s", Required: true, Min: ptr(0), MinExclusive: true},
		}},
		{Name: "accelerometer", Fields: []Field{
			{Name: "x", Type: Number, Unit: "g", Required: true, Min: ptr(-accelMaxG), Max: ptr(accelMaxG)},
			{Name: "y", Type: Number, Unit: "g", Required: true, Min: ptr(-accelMaxG), Max: ptr(accelMaxG)},
			{Name: "z", Type: Number, Unit: "g", Required: true, Min: ptr(-accelMaxG), Max: ptr(accelMaxG)},
		}},
		{Name: "distance", Fields: []Field{
			{Name: "distance_cm", Type: Number, Unit: "cm", Required: true, Min: ptr(0)},
		}},
		{Name: "ecg_beat", Fields: []Field{
			{Name: "samples", Type: Samples, Unit: "1", Required: true, Min: ptr(0), Max: ptr(1), Len: beatLen},
			{Name: "label", Type: Text},
		}},
		{Name: "ecg", Fields: []Field{
			{Name: "fs", Type: Number, Unit: "Hz", Required: true, Min: ptr(ecgFsMin), Max: ptr(ecgFsMax)},
			{Name: "samples", Type: Samples, Unit: "mV", Required: true, Min: ptr(-ecgMaxMV), Max: ptr(ecgMaxMV)},
		}},
	}
}

func checkBloodPressure(r *Reading) Errors {
	if r.Values["diastolic"] >= r.Values["systolic"] {
		return Errors{{Code: CodeInconsistent, Path: "/values/diastolic",
			Message: fmt.Sprintf("diastolic %g must be below systolic %g; check the field order", r.Values["diastolic"], r.Values["systolic"])}}
	}
	return nil
}

// Registry holds the kinds a server accepts. It is immutable and safe for concurrent use.
type Registry struct {
	kinds map[string]*Kind
}

// NewRegistry returns a registry of the built-in kinds plus extra ones (from configuration).
// An extra kind may not redefine a built-in one.
func NewRegistry(extra ...*Kind) (*Registry, error) {
	r := &Registry{kinds: map[string]*Kind{}}
	for _, k := range Builtin() {
		if err := r.add(k); err != nil {
			return nil, err
		}
	}
	for _, k := range extra {
		if _, dup := r.kinds[k.Name]; dup {
			return nil, fmt.Errorf("declaring kind %q: a kind of that name already exists", k.Name)
		}
		if err := r.add(k); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *Registry) add(k *Kind) error {
	if !kindRe.MatchString(k.Name) {
		return fmt.Errorf("declaring kind %q: names are lower case letters, digits and '_', starting with a letter", k.Name)
	}
	if len(k.Fields) == 0 || len(k.Fields) > MaxKindFields {
		return fmt.Errorf("declaring kind %q: it needs 1..%d values", k.Name, MaxKindFields)
	}
	k.index = make(map[string]int, len(k.Fields))
	for i, f := range k.Fields {
		if !kindRe.MatchString(f.Name) {
			return fmt.Errorf("declaring kind %q: value name %q must be lower case letters, digits and '_'", k.Name, f.Name)
		}
		if _, dup := k.index[f.Name]; dup {
			return fmt.Errorf("declaring kind %q: value %q declared twice", k.Name, f.Name)
		}
		if f.Min != nil && f.Max != nil && *f.Min > *f.Max {
			return fmt.Errorf("declaring kind %q: value %q has min %g above max %g", k.Name, f.Name, *f.Min, *f.Max)
		}
		k.index[f.Name] = i
	}
	r.kinds[k.Name] = k
	return nil
}

// Kind returns the named kind.
func (r *Registry) Kind(name string) (*Kind, bool) {
	k, ok := r.kinds[name]
	return k, ok
}

// Names returns the kind names in sorted order.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// checkNumber validates one number against a field's range.
func (f Field) checkNumber(v float64) (string, bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "must be a finite number", false
	}
	if f.Min != nil {
		if f.MinExclusive && v <= *f.Min {
			return fmt.Sprintf("%g is not above %g %s", v, *f.Min, f.Unit), false
		}
		if !f.MinExclusive && v < *f.Min {
			return fmt.Sprintf("%g is below the plausible minimum %g %s", v, *f.Min, f.Unit), false
		}
	}
	if f.Max != nil && v > *f.Max {
		return fmt.Sprintf("%g is above the plausible maximum %g %s", v, *f.Max, f.Unit), false
	}
	return "", true
}

func (f Field) allows(s string) bool {
	return len(f.Enum) == 0 || slices.Contains(f.Enum, s)
}
