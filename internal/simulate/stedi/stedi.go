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
	o = o.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Counts{}, fmt.Errorf("creating output folder: %w", err)
	}
	g := newGenerator(o)
	if err := g.open(dir); err != nil {
		return Counts{}, err
	}
	for i := range o.Customers {
		g.customer(i)
	}
	for _, w := range []*writer{g.cw, g.sw, g.aw} {
		if err := w.close(); err != nil {
			return g.c, err
		}
	}
	return g.c, nil
}

// withDefaults returns o with its documented defaults filled in.
func (o Options) withDefaults() Options {
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
	return o
}

const day = int64(24 * time.Hour / time.Millisecond)

// generator holds the state of one Generate run. Every random draw comes from rng in a fixed
// order, so the same options give the same files.
type generator struct {
	o          Options
	rng        *rand.Rand
	serials    []string // step trainer serial numbers, each shared by about customersPerSN customers
	start      int64    // o.Start in Unix milliseconds
	clock      int64    // end of the last session
	cw, sw, aw *writer  // customer, step trainer, accelerometer
	c          Counts
}

func newGenerator(o Options) *generator {
	rng := rand.New(rand.NewPCG(o.Seed, 0x57ed1))
	serials := make([]string, max(3, o.Customers/customersPerSN))
	for i := range serials {
		serials[i] = uuid(rng)
	}
	start := o.Start.UnixMilli()
	// Sessions never overlap in time, so every reading time is unique across the data set.
	return &generator{o: o, rng: rng, serials: serials, start: start, clock: start + 30*day}
}

// open creates the three output files in dir.
func (g *generator) open(dir string) error {
	var err error
	if g.cw, err = newWriter(filepath.Join(dir, CustomerFile)); err != nil {
		return err
	}
	if g.sw, err = newWriter(filepath.Join(dir, StepTrainerFile)); err != nil {
		g.cw.close()
		return err
	}
	if g.aw, err = newWriter(filepath.Join(dir, AccelerometerFile)); err != nil {
		g.cw.close()
		g.sw.close()
		return err
	}
	return nil
}

// session writes one step trainer session after the previous one, with the phone's
// accelerometer readings when user is not empty (some of them twice).
func (g *generator) session(user, serial string) {
	rng := g.rng
	g.clock += int64(rng.IntN(3600_000)) + 60_000
	for range g.o.ReadingsPerSession {
		g.clock += readingStep
		g.sw.put(StepTrainer{SensorReadingTime: g.clock, SerialNumber: serial, DistanceFromObject: 180 + rng.IntN(120)})
		g.c.StepTrainer++
		if user != "" {
			a := Accelerometer{Timestamp: g.clock, User: user, X: round(rng.NormFloat64()), Y: round(rng.NormFloat64()), Z: round(rng.NormFloat64())}
			g.aw.put(a)
			g.c.Accelerometer++
			if rng.Float64() < duplicateShare {
				g.aw.put(a)
				g.c.Accelerometer++
			}
		}
	}
}

// customer writes customer i (sometimes twice) with their sessions, and now and then a
// session of a trainer used without the app.
func (g *generator) customer(i int) {
	rng := g.rng
	cu := g.newCustomer(i)
	consented := rng.Float64() < consentShare
	hasPhone := rng.Float64() < phoneShare
	preConsent := rng.Float64() < preConsentShare
	g.shareDates(&cu, consented)
	if hasPhone {
		if preConsent {
			g.session(cu.Email, cu.SerialNumber) // recorded before consenting
		}
		// The consent date lies in the session clock's range, so some readings precede it.
		consentAt := g.clock + 1
		g.session(cu.Email, cu.SerialNumber)
		if consented {
			cu.ShareWithResearchAsOfDate = &consentAt
			if cu.LastUpdateDate < consentAt {
				cu.LastUpdateDate = consentAt
			}
		}
	}
	g.cw.put(cu)
	g.c.Customers++
	if rng.Float64() < duplicateShare {
		g.cw.put(cu)
		g.c.Customers++
	}
	if i%orphanTrainerPer == 0 {
		g.session("", g.serials[rng.IntN(len(g.serials))]) // a trainer used without the app
	}
}

// newCustomer returns customer i with a random name, trainer, phone, birthday and
// registration.
func (g *generator) newCustomer(i int) Customer {
	rng := g.rng
	first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
	cu := Customer{
		SerialNumber:     g.serials[rng.IntN(len(g.serials))],
		CustomerName:     first + " " + last,
		Email:            fmt.Sprintf("%s.%s.%d@test.com", first, last, i),
		Phone:            fmt.Sprintf("801555%04d", rng.IntN(10000)),
		BirthDay:         time.Date(1930+rng.IntN(75), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC).Format("2006-01-02"),
		RegistrationDate: g.start + int64(rng.IntN(30))*day + int64(rng.IntN(int(day))),
	}
	cu.LastUpdateDate = cu.RegistrationDate + int64(rng.IntN(int(60*day)))
	return cu
}

// shareDates sets the dates from which cu shares with research (when consented), the public
// and friends.
func (g *generator) shareDates(cu *Customer, consented bool) {
	rng := g.rng
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
