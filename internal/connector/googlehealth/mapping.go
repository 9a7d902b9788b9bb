package googlehealth

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	health "google.golang.org/api/health/v4"

	"github.com/pulselake/pulselake/internal/reading"
)

// sleepStages maps the API's SleepStageType to SPEC §3's sleep stages.
var sleepStages = map[string]string{
	"AWAKE":    "wake",
	"LIGHT":    "light",
	"DEEP":     "deep",
	"REM":      "rem",
	"ASLEEP":   "asleep",
	"RESTLESS": "restless",
}

// maxDeviceLen bounds the device names made from data sources (reading.MaxIDLen is the hard
// limit).
const maxDeviceLen = 64

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("%s is missing", field)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q is not an RFC 3339 time", field, s)
	}
	return t.UTC(), nil
}

// windowTime is the time the data type's list filter applies to.
func windowTime(dataType string, dp *health.DataPoint) (time.Time, error) {
	switch dataType {
	case HeartRate:
		if dp.HeartRate != nil && dp.HeartRate.SampleTime != nil {
			return parseTime("heartRate.sampleTime.physicalTime", dp.HeartRate.SampleTime.PhysicalTime)
		}
	case OxygenSaturation:
		if dp.OxygenSaturation != nil && dp.OxygenSaturation.SampleTime != nil {
			return parseTime("oxygenSaturation.sampleTime.physicalTime", dp.OxygenSaturation.SampleTime.PhysicalTime)
		}
	case Steps:
		if dp.Steps != nil && dp.Steps.Interval != nil {
			return parseTime("steps.interval.startTime", dp.Steps.Interval.StartTime)
		}
	case Sleep:
		if dp.Sleep != nil && dp.Sleep.Interval != nil {
			return parseTime("sleep.interval.endTime", dp.Sleep.Interval.EndTime)
		}
	case Electrocardiogram:
		if dp.Electrocardiogram != nil && dp.Electrocardiogram.Interval != nil {
			return parseTime("electrocardiogram.interval.startTime", dp.Electrocardiogram.Interval.StartTime)
		}
	}
	return time.Time{}, fmt.Errorf("the point has no %s data", dataType)
}

// inWindow reports whether the point's filtered time lies in [start, end). A point without one
// is let through for mapPoint to report.
func inWindow(dataType string, dp *health.DataPoint, start, end time.Time) bool {
	t, err := windowTime(dataType, dp)
	return err != nil || (!t.Before(start) && t.Before(end))
}

// deviceName names the device of a point: the data source's device (manufacturer and name),
// else the ECG's device model, else the uploading platform, else "google-health"; reduced to
// the characters a reading's device allows.
func deviceName(dp *health.DataPoint) string {
	var parts []string
	if ds := dp.DataSource; ds != nil && ds.Device != nil {
		parts = append(parts, ds.Device.Manufacturer, ds.Device.DisplayName)
	}
	if ecg := dp.Electrocardiogram; ecg != nil && ecg.MedicalDeviceInfo != nil && slug(strings.Join(parts, "-")) == "" {
		parts = append(parts, ecg.MedicalDeviceInfo.DeviceModel)
	}
	if ds := dp.DataSource; ds != nil && slug(strings.Join(parts, "-")) == "" && ds.Platform != "PLATFORM_UNSPECIFIED" {
		parts = append(parts, ds.Platform)
	}
	if s := slug(strings.Join(parts, "-")); s != "" {
		return s
	}
	return "google-health"
}

// slug lower-cases s, turns runs of characters a device name does not allow into one "-",
// trims it to start and end with a letter or digit and bounds its length.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_'
		switch {
		case ok:
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		default:
			dash = true
		}
		if b.Len() >= maxDeviceLen {
			break
		}
	}
	out := b.String()
	if len(out) > maxDeviceLen {
		out = out[:maxDeviceLen]
	}
	return strings.Trim(out, "._-")
}

// mapPoint turns one data point of dataType into readings of subject.
func mapPoint(dataType, subject string, dp *health.DataPoint) ([]reading.Reading, error) {
	if dp == nil {
		return nil, errors.New("null data point")
	}
	device := deviceName(dp)
	one := func(kind string, t time.Time, id string, values map[string]float64) []reading.Reading {
		return []reading.Reading{{ID: id, Subject: subject, Device: device, Kind: kind, Time: t, Values: values}}
	}
	switch dataType {
	case HeartRate:
		t, err := windowTime(dataType, dp)
		if err != nil {
			return nil, err
		}
		return one("heart_rate", t, readingID(subject, dataType, dp.Name, device, t.Format(time.RFC3339Nano)),
			map[string]float64{"bpm": float64(dp.HeartRate.BeatsPerMinute)}), nil
	case OxygenSaturation:
		t, err := windowTime(dataType, dp)
		if err != nil {
			return nil, err
		}
		if math.IsNaN(dp.OxygenSaturation.Percentage) || math.IsInf(dp.OxygenSaturation.Percentage, 0) {
			return nil, errors.New("oxygenSaturation.percentage is not a number")
		}
		return one("spo2", t, readingID(subject, dataType, dp.Name, device, t.Format(time.RFC3339Nano)),
			map[string]float64{"percent": dp.OxygenSaturation.Percentage}), nil
	case Steps:
		t, err := windowTime(dataType, dp)
		if err != nil {
			return nil, err
		}
		te, err := parseTime("steps.interval.endTime", dp.Steps.Interval.EndTime)
		if err != nil {
			return nil, err
		}
		values := map[string]float64{"count": float64(dp.Steps.Count)}
		if d := te.Sub(t); d > 0 {
			values["interval_s"] = d.Seconds()
		}
		return one("steps", t, readingID(subject, dataType, dp.Name, device, t.Format(time.RFC3339Nano), te.Format(time.RFC3339Nano)), values), nil
	case Sleep:
		return mapSleep(subject, device, dp)
	case Electrocardiogram:
		return mapECG(subject, device, dp)
	}
	return nil, fmt.Errorf("unknown data type %q", dataType)
}

// mapSleep makes one sleep reading per stage segment; a session without stages (a nap the
// API did not stage) is one "asleep" reading over its interval.
func mapSleep(subject, device string, dp *health.DataPoint) ([]reading.Reading, error) {
	s := dp.Sleep
	if s == nil || s.Interval == nil {
		return nil, errors.New("the point has no sleep data")
	}
	sessStart, err := parseTime("sleep.interval.startTime", s.Interval.StartTime)
	if err != nil {
		return nil, err
	}
	sessEnd, err := parseTime("sleep.interval.endTime", s.Interval.EndTime)
	if err != nil {
		return nil, err
	}
	// The session's identity: its resource name when the API gives one, else its start.
	session := dp.Name
	if session == "" {
		session = sessStart.Format(time.RFC3339Nano)
	}
	mk := func(stage string, t, te time.Time) reading.Reading {
		return reading.Reading{
			ID:      readingID(subject, Sleep, session, device, t.Format(time.RFC3339Nano)),
			Subject: subject, Device: device, Kind: "sleep", Time: t,
			Values: map[string]float64{"duration_s": te.Sub(t).Seconds()},
			Text:   map[string]string{"stage": stage},
		}
	}
	if len(s.Stages) == 0 {
		if !sessEnd.After(sessStart) {
			return nil, errors.New("sleep session without stages ends before it starts")
		}
		return []reading.Reading{mk("asleep", sessStart, sessEnd)}, nil
	}
	out := make([]reading.Reading, 0, len(s.Stages))
	var bad []string
	for i, st := range s.Stages {
		if st == nil {
			bad = append(bad, fmt.Sprintf("stage %d is null", i))
			continue
		}
		stage, ok := sleepStages[st.Type]
		if !ok {
			bad = append(bad, fmt.Sprintf("stage %d has type %q", i, st.Type))
			continue
		}
		t, err1 := parseTime("startTime", st.StartTime)
		te, err2 := parseTime("endTime", st.EndTime)
		if err := errors.Join(err1, err2); err != nil {
			bad = append(bad, fmt.Sprintf("stage %d: %v", i, err))
			continue
		}
		if !te.After(t) {
			bad = append(bad, fmt.Sprintf("stage %d ends before it starts", i))
			continue
		}
		out = append(out, mk(stage, t, te))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sleep session has no usable stage: %s", strings.Join(bad, "; "))
	}
	return out, nil
}

// mapECG converts the waveform to millivolts (sample / millivoltsScalingFactor, as the API
// documents) and splits recordings longer than reading.MaxSamples into consecutive readings.
func mapECG(subject, device string, dp *health.DataPoint) ([]reading.Reading, error) {
	e := dp.Electrocardiogram
	if e == nil || e.Interval == nil {
		return nil, errors.New("the point has no electrocardiogram data")
	}
	t, err := parseTime("electrocardiogram.interval.startTime", e.Interval.StartTime)
	if err != nil {
		return nil, err
	}
	if e.SamplingFrequencyHertz <= 0 {
		return nil, fmt.Errorf("electrocardiogram.samplingFrequencyHertz is %d", e.SamplingFrequencyHertz)
	}
	if e.MillivoltsScalingFactor <= 0 {
		return nil, fmt.Errorf("electrocardiogram.millivoltsScalingFactor is %d", e.MillivoltsScalingFactor)
	}
	if len(e.WaveformSamples) == 0 {
		return nil, errors.New("electrocardiogram has no waveformSamples")
	}
	fs := float64(e.SamplingFrequencyHertz)
	scale := float64(e.MillivoltsScalingFactor)
	var out []reading.Reading
	for off := 0; off < len(e.WaveformSamples); off += reading.MaxSamples {
		chunk := e.WaveformSamples[off:min(off+reading.MaxSamples, len(e.WaveformSamples))]
		samples := make([]float64, len(chunk))
		for i, v := range chunk {
			samples[i] = float64(v) / scale
		}
		ct := t.Add(time.Duration(float64(off) / fs * float64(time.Second)))
		out = append(out, reading.Reading{
			ID:      readingID(subject, Electrocardiogram, dp.Name, device, t.Format(time.RFC3339Nano), strconv.Itoa(off)),
			Subject: subject, Device: device, Kind: "ecg", Time: ct,
			Values:  map[string]float64{"fs": fs},
			Samples: samples,
		})
	}
	return out, nil
}
