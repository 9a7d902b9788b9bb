package withings

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// APIError is a Withings answer with a non-zero status (HTTP 200).
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("withings status %d: %s", e.Status, e.Message)
	switch e.Status {
	case 601:
		msg += " (the application's rate limit of 120 requests a minute; the next run retries)"
	case 401:
		msg += " (the access token was refused: connect withings again if this persists)"
	}
	return msg
}

// Temporary reports whether the same request may succeed later: status 601, "Too Many
// Request", is Withings' rate-limit answer.
func (e *APIError) Temporary() bool { return e.Status == 601 }

// HTTPError is an answer with an HTTP status other than 200.
type HTTPError struct {
	StatusCode int
	Header     map[string][]string // the answer's headers (Retry-After)
	Body       string              // at most 512 bytes
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("withings answered HTTP %d", e.StatusCode)
}

// envelope is every Withings answer: {"status":N,"body":{...},"error":"..."}.
type envelope struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
	Error  string          `json:"error"`
}

func decodeEnvelope(data []byte) (*envelope, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("decoding the withings answer: %w", err)
	}
	if !bytes.Contains(data, []byte(`"status"`)) {
		return nil, errors.New("decoding the withings answer: it has no status")
	}
	return &env, nil
}

// flexString decodes a JSON string or number (Withings sends userid both ways).
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a string or a number, got %s", b)
	}
	*s = flexString(n.String())
	return nil
}

// flexBool decodes true/false or 1/0 (Getmeas's "more" is documented as either).
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true", "1":
		*f = true
	case "false", "0", "null":
		*f = false
	default:
		return fmt.Errorf("want a boolean or 0/1, got %.20s", b)
	}
	return nil
}

type measure struct {
	Value int64 `json:"value"`
	Type  int   `json:"type"`
	Unit  int   `json:"unit"`
}

type measureGroup struct {
	GrpID        int64      `json:"grpid"`
	Attrib       int        `json:"attrib"`
	Date         int64      `json:"date"`
	Category     int        `json:"category"`
	DeviceID     flexString `json:"deviceid"`
	HashDeviceID flexString `json:"hash_deviceid"`
	Model        flexString `json:"model"`
	Measures     []measure  `json:"measures"`
}

type getmeasBody struct {
	MeasureGroups []measureGroup `json:"measuregrps"`
	More          flexBool       `json:"more"`
	Offset        int64          `json:"offset"`
}

// decodeGetmeas decodes a Getmeas answer; a non-zero status is *APIError.
func decodeGetmeas(data []byte) (*getmeasBody, error) {
	env, err := decodeEnvelope(data)
	if err != nil {
		return nil, err
	}
	if env.Status != 0 {
		return nil, &APIError{Status: env.Status, Message: env.Error}
	}
	var b getmeasBody
	if err := json.Unmarshal(env.Body, &b); err != nil {
		return nil, fmt.Errorf("decoding the withings measures: %w", err)
	}
	return &b, nil
}

// Measure types of the Withings reference.
const (
	typeDiastolic = 9
	typeSystolic  = 10
	typeHeartRate = 11
	typeSpO2      = 54
)

// Attributions of a measure group that pulselake does not take as the user's own.
const (
	attribAmbiguous    = 1 // captured by a device, may belong to another user of it
	attribCreation     = 4 // entered at account creation, may not be accurate
	attribManual       = 2 // entered by the user
	maxUnitMagnitude   = 18
	deviceHashPrefixLn = 8
)

// value is the measure's value × 10^unit, computed so that decimal values stay exact (120 with
// unit 0, 9650 with unit -2 is 96.5).
func (m measure) value() (float64, bool) {
	if m.Unit < -maxUnitMagnitude || m.Unit > maxUnitMagnitude {
		return 0, false
	}
	if m.Unit < 0 {
		return float64(m.Value) / math.Pow10(-m.Unit), true
	}
	return float64(m.Value) * math.Pow10(m.Unit), true
}

// mapGroups turns the groups dated in [start, end) into readings of subject; it returns the
// reasons groups were skipped.
func mapGroups(subject string, groups []measureGroup, start, end time.Time) ([]reading.Reading, []error) {
	var out []reading.Reading
	var skipped []error
	for _, g := range groups {
		t := time.Unix(g.Date, 0).UTC()
		if t.Before(start) || !t.Before(end) {
			continue
		}
		if g.Category != 0 && g.Category != 1 {
			continue // objectives, not measures
		}
		if g.Attrib == attribAmbiguous || g.Attrib == attribCreation {
			skipped = append(skipped, fmt.Errorf("group %d has attrib %d (not surely the user's own measure)", g.GrpID, g.Attrib))
			continue
		}
		vals := map[int]float64{}
		for _, m := range g.Measures {
			if _, dup := vals[m.Type]; dup {
				continue
			}
			if v, ok := m.value(); ok {
				vals[m.Type] = v
			} else {
				skipped = append(skipped, fmt.Errorf("group %d: measure type %d has unit %d", g.GrpID, m.Type, m.Unit))
			}
		}
		device := groupDevice(g)
		mk := func(kind string, values map[string]float64) {
			out = append(out, reading.Reading{ID: readingID(subject, g.GrpID, kind), Subject: subject, Device: device,
				Kind: kind, Time: t, Values: values})
		}
		dia, hasDia := vals[typeDiastolic]
		sys, hasSys := vals[typeSystolic]
		pulse, hasPulse := vals[typeHeartRate]
		switch {
		case hasDia && hasSys:
			v := map[string]float64{"systolic": sys, "diastolic": dia}
			if hasPulse {
				v["pulse"] = pulse
			}
			mk("blood_pressure", v)
		case hasDia || hasSys:
			skipped = append(skipped, fmt.Errorf("group %d has only one of systolic and diastolic", g.GrpID))
		case hasPulse:
			mk("heart_rate", map[string]float64{"bpm": pulse})
		}
		if spo2, ok := vals[typeSpO2]; ok {
			mk("spo2", map[string]float64{"percent": spo2})
		}
	}
	return out, skipped
}

// groupDevice names the device of a group.
func groupDevice(g measureGroup) string {
	hash := strings.ToLower(string(g.HashDeviceID))
	if hash == "" {
		hash = strings.ToLower(string(g.DeviceID))
	}
	var h strings.Builder
	for _, r := range hash {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' {
			h.WriteRune(r)
			if h.Len() == deviceHashPrefixLn {
				break
			}
		}
	}
	if h.Len() == 0 {
		if g.Attrib == attribManual {
			return "withings-manual"
		}
		return "withings"
	}
	name := "withings"
	if m := slug(string(g.Model)); m != "" {
		name += "-" + m
	}
	return name + "-" + h.String()
}

// slug lower-cases s and joins its runs of letters and digits with "-", at most 40 bytes.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			if b.Len() >= 40 {
				break
			}
		} else {
			dash = true
		}
	}
	return b.String()
}
