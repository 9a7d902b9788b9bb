package notify

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"maps"
	"slices"
	"time"
)

// Alert is what the rule engine hands to the notification pipeline: a set of labels that
// identify it, annotations that describe it, and its active interval. An alert whose EndsAt
// is set and not after now is resolved.
type Alert struct {
	Labels      map[string]string  `json:"labels"`
	Annotations map[string]string  `json:"annotations,omitempty"`
	Values      map[string]float64 `json:"values,omitempty"` // reading values that made the condition true
	StartsAt    time.Time          `json:"startsAt"`
	EndsAt      time.Time          `json:"endsAt,omitzero"`
	// GeneratorURL links to where the alert came from (optional).
	GeneratorURL string `json:"generatorURL,omitempty"`
}

// Resolved reports whether the alert has ended at time now.
func (a *Alert) Resolved(now time.Time) bool { return !a.EndsAt.IsZero() && !a.EndsAt.After(now) }

// Status is "resolved" or "firing" at time now.
func (a *Alert) Status(now time.Time) string {
	if a.Resolved(now) {
		return StatusResolved
	}
	return StatusFiring
}

// Alert and notification statuses.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Fingerprint identifies an alert by its labels.
type Fingerprint [16]byte

func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// FingerprintOf hashes a label set (order-independent).
func FingerprintOf(labels map[string]string) Fingerprint {
	keys := slices.Sorted(maps.Keys(labels))
	h := sha256.New()
	var n [8]byte
	for _, k := range keys {
		binary.BigEndian.PutUint64(n[:], uint64(len(k)))
		h.Write(n[:])
		h.Write([]byte(k))
		v := labels[k]
		binary.BigEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		h.Write([]byte(v))
	}
	var f Fingerprint
	copy(f[:], h.Sum(nil))
	return f
}
