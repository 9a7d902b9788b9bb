// Package applehealth reads an Apple Health export (export.zip, or its export.xml alone) as
// pulselake readings (wire format v1, source "apple-health").
//
// The export is read as a stream: export.xml is decoded token by token (encoding/xml's
// RawToken), straight out of the zip, never extracted to disk, so memory stays flat for
// exports of several gigabytes. What is read:
//
//   - HKQuantityTypeIdentifierHeartRate → heart_rate {bpm};
//   - HKCorrelationTypeIdentifierBloodPressure → blood_pressure {systolic, diastolic}. The
//     correlation's child records (…BloodPressureSystolic/…Diastolic) also appear at the top
//     level of the file; those copies are skipped, so each measurement is stored once. A
//     top-level systolic/diastolic pair that belongs to no correlation (same source, device
//     and times) still becomes one reading;
//   - HKQuantityTypeIdentifierOxygenSaturation (a fraction 0..1) → spo2 {percent};
//   - HKQuantityTypeIdentifierStepCount → steps {count, interval_s = end − start};
//   - HKCategoryTypeIdentifierSleepAnalysis → sleep {stage, duration_s} (see sleepStages;
//     InBed is skipped: it is time in bed, overlapping the asleep/awake samples, not a stage);
//   - electrocardiograms/ecg_*.csv → ecg {fs, samples in mV}.
//
// Every reading gets a stable id derived from the subject and the record's type, device,
// instants and value, so importing the same export (or a later export holding the same
// records) again stores nothing twice. Instants are compared, not the date text: Apple
// writes dates in the phone's time zone at export time.
//
// The device of a reading is the record's sourceName plus the hardware named in its device
// attribute: samples of an iPhone and a Watch that overlap in time stay two devices' readings
// and are never summed.
//
// Files are found by structure, not by name, since the export's names are localised: the
// XML entry whose root element is <HealthData>, and CSV files whose header names a sample
// rate in hertz.
//
// Nothing here is concurrent: a Reader is used by one goroutine.
package applehealth

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/connector/counting"
	"github.com/pulselake/pulselake/internal/reading"
)

// Source is the batch source of imported readings (landing.apple_health).
const Source = "apple-health"

// Emit receives one reading in wire format v1 and where in the export it came from.
type Emit func(raw []byte, origin string) error

// EmitReading receives a reading both as a typed reading (not yet checked against the
// kinds: reading.Parser.Check does that) and in wire format v1, and where in the export it
// came from. r is the caller's to keep and modify.
type EmitReading func(r *reading.Reading, raw []byte, origin string) error

// Options configures a read.
type Options struct {
	// Subject of every reading (the export names no subject pulselake could use).
	Subject string
	// Progress, when set, is called with the number of bytes of the file read so far.
	Progress func(read int64)
	// Skipped, when set, is told about files of the archive that are not read and why.
	Skipped func(name, why string)
	// EmitReading, when set, receives the readings of export.xml instead of emit, typed
	// beside their wire format, so that they need not be parsed again. Records the reader
	// cannot read (kept in quarantine with their reason) and ECG readings still go to emit.
	EmitReading EmitReading
}

// Stats counts what a read saw.
type Stats struct {
	Records  int64 // Record and Correlation elements read
	Readings int64 // readings emitted
	Ignored  int64 // records of types pulselake does not import
	Merged   int64 // top-level blood-pressure records skipped: their correlation holds them
	ECGs     int64 // electrocardiogram files read
}

// ErrNotExport: the file is neither an Apple Health export.zip nor its export.xml.
var ErrNotExport = errors.New("not an Apple Health export: no XML file with root element <HealthData> found")

// maxProbe bounds how much of an XML file is read to find its root element; the internal
// DTD at the top of export.xml is about 10 KB.
const maxProbe = 4 << 20

// Detect reports whether the file at p is an Apple Health export (a zip holding a
// <HealthData> XML file, or that XML file).
func Detect(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		return false
	}
	if zr, err := zip.NewReader(f, st.Size()); err == nil {
		_, err := findXML(zr)
		return err == nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false
	}
	return isHealthData(f)
}

// isHealthData reports whether r is XML whose root element is HealthData.
func isHealthData(r io.Reader) bool {
	d := xml.NewDecoder(io.LimitReader(r, maxProbe))
	for {
		tok, err := d.RawToken()
		if err != nil {
			return false
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name.Local == "HealthData"
		}
	}
}

// findXML returns the zip entry holding the export's records.
func findXML(zr *zip.Reader) (*zip.File, error) {
	for _, f := range zr.File {
		if !strings.EqualFold(path.Ext(f.Name), ".xml") || f.FileInfo().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			continue
		}
		ok := isHealthData(rc)
		rc.Close()
		if ok {
			return f, nil
		}
	}
	return nil, ErrNotExport
}

// Read reads the export.zip or export.xml at p.
func Read(ctx context.Context, p string, o Options, emit Emit) (Stats, error) {
	var st Stats
	f, err := os.Open(p)
	if err != nil {
		return st, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, err
	}
	cr := &counting.ReaderAt{R: f, Report: o.Progress}
	zr, zerr := zip.NewReader(cr, fi.Size())
	if zerr != nil {
		// Not a zip: the XML file itself.
		br := bufio.NewReaderSize(io.NewSectionReader(cr, 0, fi.Size()), 256<<10)
		head, _ := br.Peek(512)
		if !strings.Contains(string(head), "<") {
			return st, ErrNotExport
		}
		err := readXML(ctx, br, path.Base(p), o, emit, &st)
		return st, err
	}
	xf, err := findXML(zr)
	if err != nil {
		return st, err
	}
	rc, err := xf.Open()
	if err != nil {
		return st, fmt.Errorf("opening %s in the archive: %w", xf.Name, err)
	}
	err = readXML(ctx, bufio.NewReaderSize(rc, 256<<10), path.Base(xf.Name), o, emit, &st)
	rc.Close()
	if err != nil {
		return st, err
	}
	for _, f := range zr.File {
		if !strings.EqualFold(path.Ext(f.Name), ".csv") || f.FileInfo().IsDir() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		rc, err := f.Open()
		if err != nil {
			return st, fmt.Errorf("opening %s in the archive: %w", f.Name, err)
		}
		n, err := ReadECG(io.LimitReader(rc, maxECGFile), path.Base(f.Name), o, emit)
		rc.Close()
		switch {
		case errors.Is(err, errNotECG):
			if o.Skipped != nil {
				o.Skipped(f.Name, "a CSV file that is not an electrocardiogram")
			}
		case err != nil:
			return st, err
		default:
			st.ECGs++
			st.Readings += int64(n)
		}
	}
	return st, nil
}

// ReadXML reads export.xml from r; name is used in origins (name:line).
func ReadXML(ctx context.Context, r io.Reader, name string, o Options, emit Emit) (Stats, error) {
	var st Stats
	err := readXML(ctx, r, name, o, emit, &st)
	return st, err
}

// record is the part of a <Record> element pulselake reads. The byte fields of a top-level
// record are views of the scanner's buffer, valid until the scanner moves on (it is converted
// at once); those of a correlation and its children are copies (see recordOf).
type record struct {
	typ, value                       string
	source, device, unit, start, end []byte
}

// bpKey identifies a blood-pressure measurement: its correlation and the correlation's
// child records share it.
type bpKey struct {
	device     string
	start, end int64 // Unix microseconds
}

type bpHalf struct {
	sys, dia       float64
	hasSys, hasDia bool
	line           int
}

// maxPendingBP bounds the top-level blood-pressure records held until the end of the file
// (a person measuring four times a day for 50 years holds about 73,000).
const maxPendingBP = 1 << 20

type xmlReader struct {
	o       Options
	emit    Emit
	st      *Stats
	name    string
	buf     []byte
	pending map[bpKey]*bpHalf // top-level BP records not (yet) matched to a correlation
	claimed map[bpKey]struct{}
	devices map[string]string // deviceName of (sourceName, device attribute), cached
	key     []byte            // scratch: a devices key
	subject []byte            // the subject as a JSON string
	idIn    []byte            // scratch: what an id hashes
	id      [3 + 32]byte      // the last id made by idOf
	slab    []byte            // emitted readings are carved from it (see finish)
	origin  []byte            // scratch: an origin
	// The typed reading being written between begin and finish (with Options.EmitReading).
	cur      reading.Reading
	vals     [3]namedValue // its numeric values
	nvals    int
	readings []reading.Reading // typed readings are cut from it, like raw ones from slab
}

type namedValue struct {
	name string
	v    float64
}

// value appends the numeric value name to the reading being written: to b in wire format,
// and to the typed reading as the wire format reads back (see appendNum).
func (x *xmlReader) value(b []byte, name string, v float64) []byte {
	if x.nvals > 0 {
		b = append(b, ',')
	}
	b = append(append(append(b, '"'), name...), `":`...)
	b = appendNum(b, v)
	if x.nvals < len(x.vals) {
		x.vals[x.nvals] = namedValue{name, round9(v)}
	}
	x.nvals++
	return b
}

// maxDevices bounds the device names cached.
const maxDevices = 4096

// device is deviceName, cached: an export names a few dozen devices over millions of records.
func (x *xmlReader) device(source, device []byte) string {
	x.key = append(append(append(x.key[:0], source...), 0), device...)
	if d, ok := x.devices[string(x.key)]; ok {
		return d
	}
	d := deviceName(string(source), string(device))
	if len(x.devices) < maxDevices {
		x.devices[string(x.key)] = d
	}
	return d
}

func readXML(ctx context.Context, r io.Reader, name string, o Options, emit Emit, st *Stats) error {
	x := &xmlReader{o: o, emit: emit, st: st, name: name, pending: map[bpKey]*bpHalf{}, claimed: map[bpKey]struct{}{}, devices: map[string]string{},
		subject: appendJSONString(nil, o.Subject)}
	sc := newScanner(r)
	depth := 0
	// The correlation being read (its Record children are at depth 3), if any.
	var corr *record
	var corrLine int
	var corrChildren []record
	for {
		kind, el, err := sc.next()
		if err != nil {
			if errors.Is(err, errSyntax) {
				return fmt.Errorf("reading %s: %w", name, err)
			}
			return fmt.Errorf("reading %s at line %d: %w", name, sc.line, err)
		}
		if kind == tokEOF {
			break
		}
		if kind == tokStart || kind == tokSelfClose {
			depth++
			switch {
			case depth == 1:
				if string(el) != "HealthData" {
					return ErrNotExport
				}
			case depth == 2 && string(el) == "Record":
				st.Records++
				if st.Records%4096 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				if rec, ok := recordOf(sc.attrs, true, false); ok {
					if err := x.topRecord(rec, sc.line); err != nil {
						return err
					}
				} else {
					st.Ignored++
				}
			case depth == 2 && string(el) == "Correlation":
				st.Records++
				rec, _ := recordOf(sc.attrs, false, true)
				corr, corrLine, corrChildren = &rec, sc.line, corrChildren[:0]
			case depth == 3 && corr != nil && string(el) == "Record" && len(corrChildren) < maxChildren:
				rec, _ := recordOf(sc.attrs, false, true)
				corrChildren = append(corrChildren, rec)
			}
			if kind == tokStart {
				continue
			}
		}
		// An end tag, or the end of a self-closing element.
		if depth == 2 && corr != nil && string(el) == "Correlation" {
			if err := x.correlation(*corr, corrChildren, corrLine); err != nil {
				return err
			}
			corr = nil
		}
		depth--
	}
	return x.unmatchedBP()
}

// maxChildren bounds the records of one correlation that are kept.
const maxChildren = 64

// recordOf reads the attributes of a Record or Correlation. With onlyWanted, records of
// types that are not imported return false before anything is copied. With own, the byte
// fields are copies; else they are views of as (entity references decoded into a copy).
func recordOf(as []attr, onlyWanted, own bool) (record, bool) {
	var r record
	if onlyWanted {
		wanted := false
		for _, a := range as {
			if string(a.name) == "type" {
				switch string(a.value) {
				case typeHeartRate, typeSpO2, typeSteps, typeSleep, typeSystolic, typeDiastolic:
					wanted = true
				}
				break
			}
		}
		if !wanted {
			return r, false
		}
	}
	for _, a := range as {
		switch string(a.name) {
		case "type":
			r.typ = internType(a.value)
		case "sourceName":
			r.source = textBytes(a.value, own)
		case "device":
			r.device = view(a.value, own) // as written: decoded only by deviceName, once per device
		case "unit":
			r.unit = textBytes(a.value, own)
		case "startDate":
			r.start = view(a.value, own)
		case "endDate":
			r.end = view(a.value, own)
		case "value":
			r.value = text(a.value)
		}
	}
	return r, true
}

// view returns v, or a copy of it with own.
func view(v []byte, own bool) []byte {
	if own {
		return bytes.Clone(v)
	}
	return v
}

// textBytes is text as bytes: v itself (a copy with own) when it holds no reference.
func textBytes(v []byte, own bool) []byte {
	if bytes.IndexByte(v, '&') < 0 {
		return view(v, own)
	}
	if out, err := unescape(nil, v); err == nil {
		return out
	}
	return bytes.Clone(v)
}

// internType returns the constant for the record types read (no allocation), else a copy.
func internType(b []byte) string {
	switch string(b) {
	case typeHeartRate:
		return typeHeartRate
	case typeSpO2:
		return typeSpO2
	case typeSteps:
		return typeSteps
	case typeSleep:
		return typeSleep
	case typeSystolic:
		return typeSystolic
	case typeDiastolic:
		return typeDiastolic
	case typeBPCorrelate:
		return typeBPCorrelate
	}
	return string(b)
}

// Record types read.
const (
	typeHeartRate   = "HKQuantityTypeIdentifierHeartRate"
	typeSystolic    = "HKQuantityTypeIdentifierBloodPressureSystolic"
	typeDiastolic   = "HKQuantityTypeIdentifierBloodPressureDiastolic"
	typeSpO2        = "HKQuantityTypeIdentifierOxygenSaturation"
	typeSteps       = "HKQuantityTypeIdentifierStepCount"
	typeSleep       = "HKCategoryTypeIdentifierSleepAnalysis"
	typeBPCorrelate = "HKCorrelationTypeIdentifierBloodPressure"
)

// sleepStages maps HKCategoryValueSleepAnalysis values to SPEC §3 sleep stages. InBed is
// not a stage (it overlaps the samples below) and is skipped.
var sleepStages = map[string]string{
	"HKCategoryValueSleepAnalysisAsleep":            "asleep", // before iOS 16
	"HKCategoryValueSleepAnalysisAsleepUnspecified": "asleep",
	"HKCategoryValueSleepAnalysisAwake":             "wake",
	"HKCategoryValueSleepAnalysisAsleepCore":        "light",
	"HKCategoryValueSleepAnalysisAsleepDeep":        "deep",
	"HKCategoryValueSleepAnalysisAsleepREM":         "rem",
}

// percentPerFraction: HealthKit stores oxygen saturation as a fraction of 1 (unit "%" in the
// export, value 0.97); readings carry percent.
const percentPerFraction = 100

// topRecord converts one top-level Record element: blood pressure halves wait for their pair,
// the other supported types become one reading each.
func (x *xmlReader) topRecord(r record, line int) error {
	switch r.typ {
	case typeHeartRate, typeSpO2, typeSteps, typeSleep, typeSystolic, typeDiastolic:
	default:
		x.st.Ignored++
		return nil
	}
	start, ok1 := parseTime(r.start)
	end, ok2 := parseTime(r.end)
	if !ok1 || !ok2 {
		// Kept for the ingester to reject with its reason (quarantine): nothing is dropped
		// silently.
		return x.reject(r, line, "unreadable startDate/endDate")
	}
	device := x.device(r.source, r.device)
	switch r.typ {
	case typeSystolic, typeDiastolic:
		return x.bloodPressureHalf(r, line, device, start, end)
	case typeSleep:
		return x.sleepStage(r, line, device, start, end)
	}
	v, err := strconv.ParseFloat(r.value, 64)
	if err != nil {
		return x.reject(r, line, "unreadable value")
	}
	id := x.idOf(r.typ, device, start, end, r.value)
	var b []byte
	switch r.typ {
	case typeHeartRate:
		b = x.begin(id, device, "heart_rate", start)
		b = x.value(b, "bpm", v)
	case typeSpO2:
		if string(r.unit) == "%" && v <= 1 {
			v *= percentPerFraction
		}
		b = x.begin(id, device, "spo2", start)
		b = x.value(b, "percent", v)
	case typeSteps:
		b = x.begin(id, device, "steps", start)
		b = x.value(b, "count", v)
		b = x.value(b, "interval_s", end.Sub(start).Seconds())
	}
	return x.finish(b, line)
}

// bloodPressureHalf holds a systolic or diastolic record until its other half arrives (or the
// correlation that joins them has already been read: then it is merged).
func (x *xmlReader) bloodPressureHalf(r record, line int, device string, start, end time.Time) error {
	v, err := strconv.ParseFloat(r.value, 64)
	if err != nil {
		return x.reject(r, line, "unreadable value")
	}
	k := bpKey{device, start.UnixMicro(), end.UnixMicro()}
	if _, ok := x.claimed[k]; ok {
		x.st.Merged++
		return nil
	}
	h := x.pending[k]
	if h == nil {
		if len(x.pending) >= maxPendingBP {
			x.st.Ignored++
			return nil
		}
		h = &bpHalf{line: line}
		x.pending[k] = h
	}
	if r.typ == typeSystolic {
		h.sys, h.hasSys = v, true
	} else {
		h.dia, h.hasDia = v, true
	}
	return nil
}

// sleepStage emits a sleep reading for a sleep-analysis record with a known stage.
func (x *xmlReader) sleepStage(r record, line int, device string, start, end time.Time) error {
	stage, ok := sleepStages[r.value]
	if !ok {
		x.st.Ignored++ // InBed, and values added by later iOS versions
		return nil
	}
	b := x.begin(x.idOf(r.typ, device, start, end, r.value), device, "sleep", start)
	b = append(b, `"stage":"`...)
	b = append(b, stage...)
	b = append(b, `","duration_s":`...)
	d := end.Sub(start).Seconds()
	b = appendNum(b, d)
	x.vals[0], x.nvals = namedValue{"duration_s", round9(d)}, 1
	if x.o.EmitReading != nil {
		x.cur.Text = map[string]string{"stage": stage}
	}
	return x.finish(b, line)
}

func (x *xmlReader) correlation(c record, children []record, line int) error {
	if c.typ != typeBPCorrelate {
		x.st.Ignored++
		return nil
	}
	start, ok1 := parseTime(c.start)
	_, ok2 := parseTime(c.end)
	if !ok1 || !ok2 {
		return x.reject(c, line, "unreadable startDate/endDate")
	}
	device := x.device(c.source, c.device)
	var sys, dia float64
	var hasSys, hasDia bool
	for _, ch := range children {
		v, err := strconv.ParseFloat(ch.value, 64)
		if err != nil {
			continue
		}
		switch ch.typ {
		case typeSystolic:
			sys, hasSys = v, true
		case typeDiastolic:
			dia, hasDia = v, true
		default:
			continue
		}
		// The child's top-level copy: skip it, before or after this point of the file.
		cs, ok1 := parseTime(ch.start)
		ce, ok2 := parseTime(ch.end)
		if ok1 && ok2 {
			k := bpKey{x.device(ch.source, ch.device), cs.UnixMicro(), ce.UnixMicro()}
			if h, ok := x.pending[k]; ok {
				x.st.Merged += int64(btoi(h.hasSys) + btoi(h.hasDia))
				delete(x.pending, k)
			}
			if len(x.claimed) < maxPendingBP {
				x.claimed[k] = struct{}{}
			}
		}
	}
	if !hasSys || !hasDia {
		return x.reject(c, line, "a blood-pressure correlation without both systolic and diastolic records")
	}
	return x.bp(device, start, sys, dia, line)
}

func (x *xmlReader) bp(device string, start time.Time, sys, dia float64, line int) error {
	b := x.begin(x.idOf(typeBPCorrelate, device, start, start, ""), device, "blood_pressure", start)
	b = x.value(b, "systolic", sys)
	b = x.value(b, "diastolic", dia)
	return x.finish(b, line)
}

// unmatchedBP emits the top-level systolic/diastolic pairs no correlation held.
func (x *xmlReader) unmatchedBP() error {
	for k, h := range x.pending {
		if !h.hasSys || !h.hasDia {
			x.st.Ignored++
			continue
		}
		if err := x.bp(k.device, time.UnixMicro(k.start).UTC(), h.sys, h.dia, h.line); err != nil {
			return err
		}
	}
	clear(x.pending)
	return nil
}

// reject emits a record pulselake cannot read as a reading the ingester refuses, so it is
// kept in quarantine with its reason rather than lost.
func (x *xmlReader) reject(r record, line int, why string) error {
	b := x.buf[:0]
	b = append(b, `{"subject":`...)
	b = appendJSONString(b, x.o.Subject)
	b = append(b, `,"kind":"apple_health_record","apple_health":{"type":`...)
	b = appendJSONString(b, r.typ)
	b = append(b, `,"startDate":`...)
	b = appendJSONString(b, string(r.start))
	b = append(b, `,"endDate":`...)
	b = appendJSONString(b, string(r.end))
	b = append(b, `,"value":`...)
	b = appendJSONString(b, r.value)
	b = append(b, `,"problem":`...)
	b = appendJSONString(b, why)
	b = append(b, "}}"...)
	x.buf = b
	x.st.Readings++
	return x.emit(x.carve(b), x.originOf(line))
}

// begin starts a reading's JSON up to the opening of its values.
func (x *xmlReader) begin(id []byte, device, kind string, t time.Time) []byte {
	b := x.buf[:0]
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","subject":`...)
	b = append(b, x.subject...)
	b = append(b, `,"device":"`...)
	b = append(b, device...)
	b = append(b, `","kind":"`...)
	b = append(b, kind...)
	b = append(b, `","time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","values":{`...)
	x.cur = reading.Reading{Subject: x.o.Subject, Device: device, Kind: kind, Time: t.UTC()}
	x.nvals = 0
	return b
}

// finish ends the reading begun by begin and emits it: typed (with Options.EmitReading)
// and in wire format.
func (x *xmlReader) finish(b []byte, line int) error {
	b = append(b, "}}"...)
	x.buf = b
	x.st.Readings++
	raw := x.carve(b)
	if x.o.EmitReading == nil || x.nvals > len(x.vals) {
		return x.emit(raw, x.originOf(line))
	}
	r := &x.cur
	for _, nv := range x.vals[:x.nvals] {
		if math.IsNaN(nv.v) || math.IsInf(nv.v, 0) {
			// Written as null: the ingester parses the wire format and says why.
			return x.emit(raw, x.originOf(line))
		}
		if r.Values == nil {
			r.Values = make(map[string]float64, x.nvals)
		}
		r.Values[nv.name] = nv.v
	}
	r.ID = string(raw[len(`{"id":"`) : len(`{"id":"`)+len(x.id)])
	if len(x.readings) == cap(x.readings) {
		x.readings = make([]reading.Reading, 0, readingSlab)
	}
	x.readings = append(x.readings, *r)
	return x.o.EmitReading(&x.readings[len(x.readings)-1], raw, x.originOf(line))
}

// readingSlab is how many typed readings are allocated at once.
const readingSlab = 256

// slabSize is the size of the blocks emitted readings are copied into: one allocation per
// few hundred readings instead of one each. A block lives as long as any of its readings.
const slabSize = 64 << 10

// carve returns a copy of b that the caller may keep, cut from the current slab.
func (x *xmlReader) carve(b []byte) []byte {
	if len(b) > slabSize/8 {
		return bytes.Clone(b)
	}
	if cap(x.slab)-len(x.slab) < len(b) {
		x.slab = make([]byte, 0, slabSize)
	}
	n := len(x.slab)
	x.slab = append(x.slab, b...)
	return x.slab[n:len(x.slab):len(x.slab)]
}

// originOf is the origin of the record at line: "export.xml:123".
func (x *xmlReader) originOf(line int) string {
	x.origin = strconv.AppendInt(append(append(x.origin[:0], x.name...), ':'), int64(line), 10)
	return string(x.origin)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// appendNum writes v with at most nine decimals (0.97×100 is 97, not 97.00000000000001).
func appendNum(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, round9(v), 'f', -1, 64)
}

// round9 rounds v to nine decimals.
func round9(v float64) float64 { return math.Round(v*1e9) / 1e9 }

// idOf is a reading's stable id: "ah-" and 32 hex digits of SHA-256 over the subject, the
// record type, the device and the record's instants and value.
func idOf(subject, typ, device string, start, end time.Time, value string) string {
	var out [3 + 32]byte
	return string(appendID(out[:0], nil, subject, typ, device, start, end, value))
}

// idOf is the package's idOf with the reader's subject, without allocating: the result is
// valid until the next call.
func (x *xmlReader) idOf(typ, device string, start, end time.Time, value string) []byte {
	x.idIn = x.idIn[:0]
	return appendID(x.id[:0], &x.idIn, x.o.Subject, typ, device, start, end, value)
}

// appendID appends the id of idOf to dst; scratch, when given, is reused for the hashed bytes.
func appendID(dst []byte, scratch *[]byte, subject, typ, device string, start, end time.Time, value string) []byte {
	var in []byte
	if scratch != nil {
		in = (*scratch)[:0]
	}
	for _, p := range [...]string{subject, typ, device, value} {
		in = append(append(in, p...), 0)
	}
	in = binary.BigEndian.AppendUint64(in, uint64(start.UnixMicro()))
	in = binary.BigEndian.AppendUint64(in, uint64(end.UnixMicro()))
	if scratch != nil {
		*scratch = in
	}
	sum := sha256.Sum256(in)
	return hex.AppendEncode(append(dst, "ah-"...), sum[:16])
}

// timeLayout is how export.xml writes dates: local time with the offset of the phone's zone
// at export time.
const timeLayout = "2006-01-02 15:04:05 -0700"

// parseTime reads "2026-03-14 06:12:33 -0400" without the generality (and the cost) of
// time.Parse on the common path.
func parseTime[T string | []byte](s T) (time.Time, bool) {
	if len(s) != len(timeLayout) || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' || s[19] != ' ' || (s[20] != '+' && s[20] != '-') {
		t, err := time.Parse(timeLayout, string(s))
		return t, err == nil
	}
	num := func(i, n int) (int, bool) {
		v := 0
		for j := i; j < i+n; j++ {
			c := s[j]
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	y, ok1 := num(0, 4)
	mo, ok2 := num(5, 2)
	d, ok3 := num(8, 2)
	h, ok4 := num(11, 2)
	mi, ok5 := num(14, 2)
	se, ok6 := num(17, 2)
	oh, ok7 := num(21, 2)
	om, ok8 := num(23, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59 || oh > 23 || om > 59 {
		return time.Time{}, false
	}
	off := (oh*60 + om) * 60
	if s[20] == '-' {
		off = -off
	}
	t := time.Date(y, time.Month(mo), d, h, mi, se, 0, time.UTC)
	if t.Day() != d {
		return time.Time{}, false // 31 February
	}
	return t.Add(-time.Duration(off) * time.Second), true
}

// deviceName builds a reading's device from the record's sourceName ("Alice’s Apple Watch")
// and the hardware of its device attribute ("<<HKDevice: 0x…>, name:Apple Watch, …,
// hardware:Watch6,1, software:9.1>"): "Alices-Apple-Watch.Watch6-1". The object address and
// the software version are left out, so a device keeps its name across exports and updates.
func deviceName(source, device string) string {
	device = text([]byte(device))
	hw := deviceField(device, "hardware")
	if hw == "" {
		hw = deviceField(device, "model")
	}
	name := sanitize(source)
	if name == "" {
		name = sanitize(deviceField(device, "name"))
	}
	if name == "" {
		name = "apple-health"
	}
	if hw != "" {
		name += "." + sanitize(hw)
	}
	if len(name) > 128 {
		name = name[:128]
	}
	return name
}

// deviceField returns key's value in an HKDevice description.
func deviceField(device, key string) string {
	i := strings.Index(device, ", "+key+":")
	if i < 0 {
		return ""
	}
	v := device[i+len(key)+3:]
	// Values may hold commas ("Watch6,1"); the next field starts with ", <word>:".
	end := len(v)
	for j := 0; j+2 < len(v); j++ {
		if v[j] == ',' && v[j+1] == ' ' {
			k := strings.IndexAny(v[j+2:], ":, >")
			if k > 0 && v[j+2+k] == ':' {
				end = j
				break
			}
		}
	}
	return strings.TrimSuffix(strings.TrimSpace(v[:end]), ">")
}

// sanitize maps a name to the characters a device may hold (A-Z a-z 0-9 . _ : @ + -):
// apostrophes go, anything else becomes '-'.
func sanitize(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range s {
		switch {
		case r == '\'' || r == '’':
		case r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:@+", r)):
			b.WriteRune(r)
			dash = false
		default:
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = true
		}
	}
	return strings.Trim(b.String(), "-._:@+")
}

// appendJSONString appends s as a JSON string (invalid UTF-8 becomes U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}
