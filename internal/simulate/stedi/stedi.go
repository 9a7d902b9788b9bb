// Package stedi generates synthetic data in the shape of the STEDI Step Trainer exports used
// to teach lakehouse curation: customer records from a web site, readings of the step
// trainer's distance sensor, and accelerometer readings of the customers' phones, as three
// JSON-lines files with epoch-millisecond times.
//
// The data reproduces the problems the curation has to solve:
//   - About half the customers consented to share their data with research
//     (shareWithResearchAsOfDate set); the others must not appear in trusted or curated tables.
//   - Phones record some readings before the customer consented; those must be dropped too.
//   - A fulfilment defect gave many customers the same few step-trainer serial numbers, so a
//     serial number does not identify a customer.
//   - Some customer and accelerometer records are repeated verbatim (re-sent exports).
//
// Every accelerometer reading has a unique timestamp shared with exactly one step-trainer
// reading (the trainer and the phone record together), so readings can be matched on time.
// The same seed and options always give byte-identical files.
package stedi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// File names written by Generate.
const (
	CustomerFile      = "customer.json"
	StepTrainerFile   = "step_trainer.json"
	AccelerometerFile = "accelerometer.json"
)

// Customer is one record of the customer export.
type Customer struct {
	SerialNumber              string `json:"serialNumber"`
	CustomerName              string `json:"customerName"`
	Email                     string `json:"email"`
	Phone                     string `json:"phone"`
	BirthDay                  string `json:"birthDay"`
	RegistrationDate          int64  `json:"registrationDate"`
	LastUpdateDate            int64  `json:"lastUpdateDate"`
	ShareWithResearchAsOfDate *int64 `json:"shareWithResearchAsOfDate"`
	ShareWithPublicAsOfDate   *int64 `json:"shareWithPublicAsOfDate"`
	ShareWithFriendsAsOfDate  *int64 `json:"shareWithFriendsAsOfDate"`
}

// StepTrainer is one reading of a step trainer's distance sensor.
type StepTrainer struct {
	SensorReadingTime  int64  `json:"sensorReadingTime"`
	SerialNumber       string `json:"serialNumber"`
	DistanceFromObject int    `json:"distanceFromObject"`
}

// Accelerometer is one reading of a customer's phone.
type Accelerometer struct {
	Timestamp int64   `json:"timestamp"`
	User      string  `json:"user"`
	X         float64 `json:"x"`
	Y         float64 `json:"y"`
	Z         float64 `json:"z"`
}

// Options configures Generate.
type Options struct {
	Customers int    // number of distinct customers (default 1000)
	Seed      uint64 // random seed (default 1)
	// Start is the earliest registration (default 2022-06-01T00:00:00Z).
	Start time.Time
	// ReadingsPerSession is how many readings a phone records in one exercise session
	// (default 20).
	ReadingsPerSession int
}

// Counts reports what Generate wrote (lines, including repeated ones).
type Counts struct {
	Customers, StepTrainer, Accelerometer int
}

const (
	consentShare     = 0.5  // customers who consented to research
	phoneShare       = 0.8  // customers whose phone sent accelerometer data
	duplicateShare   = 0.02 // records repeated verbatim
	preConsentShare  = 0.3  // sessions recorded before the consent date
	customersPerSN   = 10   // fulfilment defect: customers per serial number, on average
	readingStep      = 200  // ms between readings of a session
	orphanTrainerPer = 10   // one trainer-only session (no phone) per this many customers
)

var firstNames = []string{"Frank", "Jerry", "Spencer", "Sarah", "Lyn", "Ben", "Santosh", "Trevor", "Eric", "Dan", "Olivia", "Amaya", "Rosa", "Kwame", "Mei", "Aiko", "Lars", "Chloe", "Ravi", "Zoe"}
var lastNames = []string{"Doshi", "Aaron", "Davis", "Lincoln", "Mitra", "Miller", "Clayton", "Jones", "Stark", "Khan", "Hansen", "Ortiz", "Mensah", "Wong", "Tanaka", "Berg", "Dubois", "Patel", "Fischer", "Smith"}

// Generate writes customer.json, step_trainer.json and accelerometer.json into dir (created
// if missing) and returns their line counts.
func Generate(dir string, o Options) (Counts, error) {
	if o.Customers <= 0 {
		o.Customers = 1000
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2022, 6, 1, 0, 0, 0, 0, time.UTC)
	}
	if o.ReadingsPerSession <= 0 {
		o.ReadingsPerSession = 20
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Counts{}, fmt.Errorf("creating output folder: %w", err)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x57ed1))
	serials := make([]string, max(3, o.Customers/customersPerSN))
	for i := range serials {
		serials[i] = uuid(rng)
	}
	start := o.Start.UnixMilli()
	const day = int64(24 * time.Hour / time.Millisecond)

	var c Counts
	cw, err := newWriter(filepath.Join(dir, CustomerFile))
	if err != nil {
		return c, err
	}
	sw, err := newWriter(filepath.Join(dir, StepTrainerFile))
	if err != nil {
		cw.close()
		return c, err
	}
	aw, err := newWriter(filepath.Join(dir, AccelerometerFile))
	if err != nil {
		cw.close()
		sw.close()
		return c, err
	}
	// Sessions never overlap in time, so every reading time is unique across the data set.
	clock := start + 30*day
	session := func(user, serial string) {
		clock += int64(rng.IntN(3600_000)) + 60_000
		for range o.ReadingsPerSession {
			clock += readingStep
			sw.put(StepTrainer{SensorReadingTime: clock, SerialNumber: serial, DistanceFromObject: 180 + rng.IntN(120)})
			c.StepTrainer++
			if user != "" {
				a := Accelerometer{Timestamp: clock, User: user, X: round(rng.NormFloat64()), Y: round(rng.NormFloat64()), Z: round(rng.NormFloat64())}
				aw.put(a)
				c.Accelerometer++
				if rng.Float64() < duplicateShare {
					aw.put(a)
					c.Accelerometer++
				}
			}
		}
	}
	for i := range o.Customers {
		first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
		cu := Customer{
			SerialNumber:     serials[rng.IntN(len(serials))],
			CustomerName:     first + " " + last,
			Email:            fmt.Sprintf("%s.%s.%d@test.com", first, last, i),
			Phone:            fmt.Sprintf("801555%04d", rng.IntN(10000)),
			BirthDay:         time.Date(1930+rng.IntN(75), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC).Format("2006-01-02"),
			RegistrationDate: start + int64(rng.IntN(30))*day + int64(rng.IntN(int(day))),
		}
		cu.LastUpdateDate = cu.RegistrationDate + int64(rng.IntN(int(60*day)))
		consented := rng.Float64() < consentShare
		hasPhone := rng.Float64() < phoneShare
		preConsent := rng.Float64() < preConsentShare
		// The consent date lies in the session clock's range, so some readings precede it.
		var consentAt int64
		if consented {
			at := cu.LastUpdateDate
			cu.ShareWithResearchAsOfDate = &at
		}
		if rng.Float64() < 0.5 {
			at := cu.RegistrationDate + int64(rng.IntN(int(day)))
			cu.ShareWithPublicAsOfDate = &at
		}
		if rng.Float64() < 0.3 {
			at := cu.RegistrationDate + int64(rng.IntN(int(day)))
			cu.ShareWithFriendsAsOfDate = &at
		}
		if hasPhone {
			if preConsent {
				session(cu.Email, cu.SerialNumber) // recorded before consenting
			}
			consentAt = clock + 1
			session(cu.Email, cu.SerialNumber)
			if consented {
				cu.ShareWithResearchAsOfDate = &consentAt
				if cu.LastUpdateDate < consentAt {
					cu.LastUpdateDate = consentAt
				}
			}
		}
		cw.put(cu)
		c.Customers++
		if rng.Float64() < duplicateShare {
			cw.put(cu)
			c.Customers++
		}
		if i%orphanTrainerPer == 0 {
			session("", serials[rng.IntN(len(serials))]) // a trainer used without the app
		}
	}
	for _, w := range []*writer{cw, sw, aw} {
		if err := w.close(); err != nil {
			return c, err
		}
	}
	return c, nil
}

func round(v float64) float64 { return math.Round(v*1000) / 1000 }

func uuid(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

type writer struct {
	f   *os.File
	bw  *bufio.Writer
	enc *json.Encoder
	err error
}

func newWriter(path string) (*writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	return &writer{f: f, bw: bw, enc: json.NewEncoder(bw)}, nil
}

func (w *writer) put(v any) {
	if w.err == nil {
		w.err = w.enc.Encode(v)
	}
}

func (w *writer) close() error {
	err := w.err
	if e := w.bw.Flush(); err == nil {
		err = e
	}
	if e := w.f.Close(); err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", w.f.Name(), err)
	}
	return nil
}
