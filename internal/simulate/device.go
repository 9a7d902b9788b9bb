// Package simulate runs fleets of simulated devices — blood-pressure cuffs, heart-rate
// wearables, accelerometers — that send realistic readings to a pulselake server over HTTP
// or MQTT, with a configurable share of abnormal (clinically alarming but valid) and invalid
// (out of range, to exercise quarantine) readings. Runs are deterministic for a seed.
//
// Value distributions are calibrated on real data shipped beside the project
// (../shared/data): home blood pressure of one person (systolic 131.7 ± 7.6 mmHg, diastolic
// 79.9 ± 7.1, correlation 0.80, pulse 68.9 ± 7.3) and Fitbit heart rate of one user
// (80.2 ± 17.6 bpm, 5th–95th percentile 59–112, higher in the afternoon).
package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/pulselake/pulselake/internal/ecg"
	"github.com/pulselake/pulselake/internal/ecg/excerpt"
	"github.com/pulselake/pulselake/internal/reading"
)

// Calibration from ../shared/data (see the package comment).
const (
	bpSystolicMean  = 131.7
	bpSystolicSD    = 7.6
	bpDiastolicMean = 79.9
	bpDiastolicSD   = 7.1
	bpCorrelation   = 0.80
	bpPulseMean     = 68.9
	bpPulseSD       = 7.3
	hrMean          = 80.2
	hrSD            = 17.6
	// Between-person spread of the baseline, a fraction of the within-person SD.
	personSpread = 1.5
)

// generator makes the readings of one device.
type generator interface {
	next(rng *rand.Rand, t time.Time, abnormal bool) reading.Reading
}

// device is one simulated device with its own baseline.
type device struct {
	subject, id, kind string
	gen               generator
}

func newDevice(kind string, n int, rng *rand.Rand) (*device, error) {
	d := &device{subject: fmt.Sprintf("patient-%04d", n), kind: kind}
	switch kind {
	case "bp":
		d.id, d.kind = fmt.Sprintf("bp-%04d", n), "blood_pressure"
		d.gen = &bpGen{sys: bpSystolicMean + rng.NormFloat64()*bpSystolicSD*personSpread, dia: bpDiastolicMean + rng.NormFloat64()*bpDiastolicSD*personSpread}
	case "hr":
		d.id, d.kind = fmt.Sprintf("hr-%04d", n), "heart_rate"
		d.gen = &hrGen{base: 72 + rng.NormFloat64()*6}
	case "accelerometer":
		d.id, d.kind = fmt.Sprintf("acc-%04d", n), "accelerometer"
		d.gen = &accGen{cadence: 1.6 + rng.Float64()*0.4, phase: rng.Float64() * 2 * math.Pi}
	case "ecg":
		beats, err := excerpt.DemoBeats()
		if err != nil {
			return nil, err
		}
		d.id, d.kind = fmt.Sprintf("ecg-%04d", n), "ecg_beat"
		d.gen = &ecgGen{beats: beats, pos: rng.IntN(len(beats))}
	default:
		return nil, fmt.Errorf("unknown device kind %q; want bp, hr, accelerometer or ecg", kind)
	}
	return d, nil
}

func (d *device) reading(rng *rand.Rand, t time.Time, abnormal bool) reading.Reading {
	r := d.gen.next(rng, t, abnormal)
	r.Subject, r.Device, r.Kind, r.Time = d.subject, d.id, d.kind, t.UTC().Truncate(time.Microsecond)
	return r
}

type bpGen struct{ sys, dia float64 }

func (g *bpGen) next(rng *rand.Rand, _ time.Time, abnormal bool) reading.Reading {
	z1, z2 := rng.NormFloat64(), rng.NormFloat64()
	sys := g.sys + bpSystolicSD*z1
	dia := g.dia + bpDiastolicSD*(bpCorrelation*z1+math.Sqrt(1-bpCorrelation*bpCorrelation)*z2)
	if abnormal { // hypertensive crisis (AHA: systolic >= 180 or diastolic >= 120)
		sys, dia = 185+rng.Float64()*40, 110+rng.Float64()*20
	}
	pulse := bpPulseMean + bpPulseSD*rng.NormFloat64()
	return reading.Reading{Values: map[string]float64{"systolic": math.Round(sys), "diastolic": math.Round(dia), "pulse": math.Round(pulse)}}
}

type hrGen struct {
	base float64
	prev float64
}

func (g *hrGen) next(rng *rand.Rand, t time.Time, abnormal bool) reading.Reading {
	// Afternoon peak as in the Fitbit data, plus a slowly wandering activity level (AR(1)).
	hour := float64(t.Hour()) + float64(t.Minute())/60
	circadian := 8 * math.Sin((hour-8)/24*2*math.Pi)
	g.prev = 0.9*g.prev + rng.NormFloat64()*hrSD*math.Sqrt(1-0.81)*0.6
	bpm := g.base + circadian + g.prev
	if abnormal { // tachycardia at rest or bradycardia
		if rng.IntN(2) == 0 {
			bpm = 150 + rng.Float64()*40
		} else {
			bpm = 32 + rng.Float64()*6
		}
	}
	return reading.Reading{Values: map[string]float64{"bpm": math.Round(math.Max(35, math.Min(220, bpm)))}}
}

// ecgGen replays real heartbeats (MIT-BIH excerpt shipped with the ECG package) as
// ecg_beat readings in the 187-sample form, labelled with their reference AAMI class. The
// beats carry their own rhythm, so the abnormal share does not apply.
type ecgGen struct {
	beats []ecg.Beat
	pos   int
}

func (g *ecgGen) next(_ *rand.Rand, _ time.Time, _ bool) reading.Reading {
	b := g.beats[g.pos%len(g.beats)]
	g.pos++
	samples := make([]float64, len(b.Samples))
	for i, v := range b.Samples {
		samples[i] = float64(v)
	}
	return reading.Reading{Samples: samples, Text: map[string]string{"label": b.Class.String()}}
}

type accGen struct{ cadence, phase float64 }

func (g *accGen) next(rng *rand.Rand, t time.Time, abnormal bool) reading.Reading {
	s := float64(t.UnixNano())/1e9*g.cadence*2*math.Pi + g.phase
	x := 0.15*math.Sin(s) + 0.03*rng.NormFloat64()
	y := 0.10*math.Cos(s) + 0.03*rng.NormFloat64()
	z := 1 + 0.25*math.Sin(2*s) + 0.03*rng.NormFloat64()
	if abnormal { // a fall: a short impact spike
		x, y, z = 3+rng.Float64()*5, -2-rng.Float64()*4, 6+rng.Float64()*6
	}
	r3 := func(v float64) float64 { return math.Round(v*1000) / 1000 }
	return reading.Reading{Values: map[string]float64{"x": r3(x), "y": r3(y), "z": r3(z)}}
}
