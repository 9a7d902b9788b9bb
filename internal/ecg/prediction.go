package ecg

import (
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// PredictionKindName is the kind of the readings streaming classification publishes back
// into the ingest stream: one per classified beat, so that alert rules, the lake
// (trusted.ecg_prediction) and the live feed see predictions like any reading. The
// classifier never classifies readings of this kind, so predictions cannot loop.
const PredictionKindName = "ecg_prediction"

// Value names of an ecg_prediction reading.
const (
	PredClass  = "class"     // predicted AAMI class: N, S, V, F or Q
	PredRun    = "run"       // consecutive beats of this device with this class, this one included
	PredScore  = "score"     // probability of the predicted class
	PredModel  = "model"     // which model classified the beat
	PredLabel  = "label"     // reference label carried by the source reading, if any
	PredSource = "source_id" // identity of the reading the beat came from
	PredRRKnow = "rr"        // 1 when RR features were known, 0 when the beat was classified by shape alone
)

// probName is the value name of the probability of class c: p_n, p_s, p_v, p_f, p_q.
func probName(c int) string { return "p_" + strings.ToLower(className(c)) }

// PredictionKind declares the ecg_prediction kind (the configuration adds it to every
// registry, so a stream holding predictions stays readable when classification is off).
func PredictionKind() *reading.Kind {
	zero, one := 0.0, 1.0
	k := &reading.Kind{Name: PredictionKindName, Fields: []reading.Field{
		{Name: PredClass, Type: reading.Text, Required: true, Enum: Classes()},
		{Name: PredRun, Type: reading.Number, Unit: "1", Required: true, Min: &one},
		{Name: PredScore, Type: reading.Number, Unit: "1", Required: true, Min: &zero, Max: &one},
		{Name: PredRRKnow, Type: reading.Number, Unit: "1", Min: &zero, Max: &one},
		{Name: PredModel, Type: reading.Text},
		{Name: PredLabel, Type: reading.Text},
		{Name: PredSource, Type: reading.Text},
	}}
	for c := 0; c < NumClasses; c++ {
		k.Fields = append(k.Fields, reading.Field{Name: probName(c), Type: reading.Number, Unit: "1", Required: true, Min: &zero, Max: &one})
	}
	return k
}

// LivePrediction is one classified beat of the live path.
type LivePrediction struct {
	Subject string             `json:"subject"`
	Device  string             `json:"device"`
	Time    time.Time          `json:"time"` // the beat's R-peak time (ecg) or its reading's time (ecg_beat)
	Class   string             `json:"class"`
	Probs   map[string]float64 `json:"probs"`
	Score   float64            `json:"score"`
	Run     int                `json:"run"`
	RRKnown bool               `json:"rr_known"`
	Model   string             `json:"model"`
	Label   string             `json:"label,omitempty"`
	Kind    string             `json:"source_kind"` // ecg_beat or ecg
	Source  string             `json:"source"`      // identity of the source reading
}

// Reading returns p as an ecg_prediction reading. Its identity is the default hash of
// (subject, device, kind, time): one prediction per beat, whatever re-delivery happens.
func (p *LivePrediction) Reading() reading.Reading {
	r := reading.Reading{Subject: p.Subject, Device: p.Device, Kind: PredictionKindName, Time: p.Time,
		Values: map[string]float64{PredRun: float64(p.Run), PredScore: p.Score},
		Text:   map[string]string{PredClass: p.Class, PredModel: truncateText(p.Model), PredSource: p.Source}}
	if p.RRKnown {
		r.Values[PredRRKnow] = 1
	} else {
		r.Values[PredRRKnow] = 0
	}
	for c := 0; c < NumClasses; c++ {
		r.Values[probName(c)] = p.Probs[className(c)]
	}
	if p.Label != "" {
		r.Text[PredLabel] = truncateText(p.Label)
	}
	return r
}

func truncateText(s string) string {
	if len(s) > reading.MaxTextLen {
		return s[:reading.MaxTextLen]
	}
	return s
}
