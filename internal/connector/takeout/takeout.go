// Package takeout reads a Google Takeout archive of Fitbit data (Takeout.zip, or the folder
// it unpacks to) as pulselake readings (wire format v1, source "google-takeout").
//
// Two layouts are read:
//
//   - the legacy Fitbit account export, Takeout/Fitbit/Global Export Data/, one JSON file per
//     day and data type: heart_rate-YYYY-MM-DD.json ([{"dateTime":"04/12/16 07:00:05",
//     "value":{"bpm":72,"confidence":2}}] → heart_rate), steps-YYYY-MM-DD.json
//     ([{"dateTime":"04/12/16 07:00:00","value":"12"}], per minute → steps with interval_s
//     60) and sleep-YYYY-MM-DD.json (sleep logs; each entry of levels.data → sleep with its
//     stage and duration; levels.shortData, short wakes that overlap data, is not read);
//   - the newer Google Health layout (folders named "Physical Activity_GoogleData" or
//     "Google Health"), CSV files whose layout Google does not publish. They are recognised
//     by file name and header: heart_rate*.csv, steps*.csv and oxygen_saturation*.csv with a
//     timestamp column and a value column (see csvColumns). Other files are reported as
//     skipped.
//
// Time zones. Legacy Fitbit times carry no offset: they are the wall-clock time of the
// account's time zone. That zone is taken from the archive's Profile.csv ("timezone"
// column, an IANA name such as Europe/Berlin) when there is one, else from
// Options.Location (default UTC). Times with an offset or Z are used as written.
//
// Ids are stable (subject, kind, device, instant, value), so re-imports store nothing twice.
// Nothing here is concurrent.
package takeout

import (
	"archive/zip"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/connector/counting"
)

// Source is the batch source of imported readings (landing.google_takeout).
const Source = "google-takeout"

// Device of readings from files that name none.
const Device = "fitbit"

// Emit receives one reading in wire format v1 and where in the archive it came from.
type Emit func(raw []byte, origin string) error

// Options configures a read.
type Options struct {
	Subject string
	// Location of times written without an offset when the archive has no Profile.csv
	// naming a time zone (default UTC).
	Location *time.Location
	// Progress, when set, is called with the number of bytes of the archive read so far.
	Progress func(read int64)
	// Skipped, when set, is told about files that are not read and why.
	Skipped func(name, why string)
}

// Stats counts what a read saw.
type Stats struct {
	Files    int64 // data files read
	Readings int64 // readings emitted
	Location string
}

// ErrNotTakeout: the path holds no Fitbit data of a Google Takeout archive.
var ErrNotTakeout = errors.New("not a Google Takeout archive of Fitbit data: no Fitbit/Global Export Data/*.json or Physical Activity_GoogleData/*.csv files found")

// entry is one file of the archive or folder.
type entry struct {
	name string // slash-separated path within the archive
	size int64
	open func() (io.ReadCloser, error)
}

var (
	legacyRe = regexp.MustCompile(`(?i)(^|/)Global Export Data/(heart_rate|steps|sleep)-\d{4}-\d{2}-\d{2}\.json$`)
	newRe    = regexp.MustCompile(`(?i)(^|/)(Physical Activity_GoogleData|Google Health)/(.*/)?(heart_rate|steps|oxygen_saturation)[^/]*\.csv$`)
	newDirRe = regexp.MustCompile(`(?i)(^|/)(Physical Activity_GoogleData|Google Health)/`)
)

// kindOf returns the data file type of an archive path: "heart_rate", "steps", "sleep" (legacy
// JSON), "csv:heart_rate", "csv:steps", "csv:oxygen_saturation" (newer CSV), or "".
func kindOf(name string) string {
	if m := legacyRe.FindStringSubmatch(name); m != nil {
		return strings.ToLower(m[2])
	}
	if m := newRe.FindStringSubmatch(name); m != nil {
		return "csv:" + strings.ToLower(m[4])
	}
	return ""
}

// maxEntries bounds the files of an archive or folder considered.
const maxEntries = 1 << 20

// entries lists the files of the zip or folder at p. The closer releases the zip.
func entries(p string, progress func(int64)) ([]entry, io.Closer, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, nil, err
	}
	var out []entry
	if st.IsDir() {
		var read int64
		err := filepath.WalkDir(p, func(fp string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if len(out) == maxEntries {
				return fmt.Errorf("more than %d files under %s", maxEntries, p)
			}
			rel, _ := filepath.Rel(p, fp)
			info, err := d.Info()
			if err != nil {
				return err
			}
			out = append(out, entry{name: filepath.ToSlash(rel), size: info.Size(), open: func() (io.ReadCloser, error) {
				f, err := os.Open(fp)
				if err != nil {
					return nil, err
				}
				return &countingReader{ReadCloser: f, n: &read, progress: progress}, nil
			}})
			return nil
		})
		return out, io.NopCloser(nil), err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	cr := &counting.ReaderAt{R: f, Report: progress}
	zr, err := zip.NewReader(cr, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s is neither a folder nor a zip archive: %w", p, err)
	}
	for _, zf := range zr.File {
		if zf.FileInfo().IsDir() {
			continue
		}
		if len(out) == maxEntries {
			f.Close()
			return nil, nil, fmt.Errorf("more than %d files in %s", maxEntries, p)
		}
		out = append(out, entry{name: zf.Name, size: int64(zf.UncompressedSize64), open: zf.Open})
	}
	return out, f, nil
}

// Detect reports whether the zip or folder at p holds Fitbit data of a Takeout archive.
func Detect(p string) bool {
	es, c, err := entries(p, nil)
	if err != nil {
		return false
	}
	defer c.Close()
	for _, e := range es {
		if kindOf(e.name) != "" {
			return true
		}
	}
	return false
}

// Read reads the Takeout.zip or folder at p.
func Read(ctx context.Context, p string, o Options, emit Emit) (Stats, error) {
	var st Stats
	es, c, err := entries(p, o.Progress)
	if err != nil {
		return st, err
	}
	defer c.Close()
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	loc := o.Location
	if loc == nil {
		loc = time.UTC
	}
	for _, e := range es {
		if path.Base(e.name) == "Profile.csv" && strings.Contains(strings.ToLower(e.name), "fitbit") {
			if l, err := profileZone(e); err == nil && l != nil {
				loc = l
				break
			}
		}
	}
	st.Location = loc.String()
	r := &reader{o: o, emit: emit, loc: loc, st: &st}
	found := false
	for _, e := range es {
		k := kindOf(e.name)
		if k == "" {
			if o.Skipped != nil && (strings.Contains(e.name, "Global Export Data/") || newDirRe.MatchString(e.name)) {
				o.Skipped(e.name, "a data type pulselake does not import")
			}
			continue
		}
		found = true
		if err := ctx.Err(); err != nil {
			return st, err
		}
		rc, err := e.open()
		if err != nil {
			return st, fmt.Errorf("opening %s: %w", e.name, err)
		}
		err = r.file(k, e.name, bufio.NewReaderSize(io.LimitReader(rc, maxFile), 64<<10))
		rc.Close()
		if err != nil {
			return st, err
		}
		st.Files++
	}
	if !found {
		return st, ErrNotTakeout
	}
	return st, nil
}

// maxFile bounds one data file (a day of 1-second heart rate is about 5 MB).
const maxFile = 1 << 30

// profileZone reads the time zone of Fitbit's Profile.csv.
func profileZone(e entry) (*time.Location, error) {
	rc, err := e.open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	cr := csv.NewReader(io.LimitReader(rc, 1<<20))
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		return nil, err
	}
	row, err := cr.Read()
	if err != nil {
		return nil, err
	}
	for i, h := range head {
		if strings.EqualFold(strings.TrimSpace(h), "timezone") && i < len(row) && row[i] != "" {
			return time.LoadLocation(strings.TrimSpace(row[i]))
		}
	}
	return nil, nil
}

type reader struct {
	o    Options
	emit Emit
	loc  *time.Location
	st   *Stats
	buf  []byte
}

// Legacy Fitbit time layouts.
const (
	legacyLayout = "01/02/06 15:04:05"       // heart rate, steps
	sleepLayout  = "2006-01-02T15:04:05.000" // sleep levels
)

// file reads one data file of the given kind: a CSV file, or a JSON array read element by
// element.
func (r *reader) file(kind, name string, in io.Reader) error {
	base := path.Base(name)
	if strings.HasPrefix(kind, "csv:") {
		return r.csvFile(strings.TrimPrefix(kind, "csv:"), base, in)
	}
	dec := json.NewDecoder(in)
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	if tok != json.Delim('[') {
		return fmt.Errorf("reading %s: want a JSON array", name)
	}
	for i := 0; dec.More(); i++ {
		origin := base + "[" + strconv.Itoa(i) + "]"
		var err error
		switch kind {
		case "heart_rate":
			err = r.heartRateElement(dec, name, i, origin)
		case "steps":
			err = r.stepsElement(dec, name, i, origin)
		case "sleep":
			err = r.sleepElement(dec, name, i, origin)
		default:
			return fmt.Errorf("reading %s: unknown data file type %q", name, kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// heartRateElement reads one element of a legacy heart_rate-*.json file: a per-sample bpm.
func (r *reader) heartRateElement(dec *json.Decoder, name string, i int, origin string) error {
	var v struct {
		DateTime string `json:"dateTime"`
		Value    struct {
			BPM json.Number `json:"bpm"`
		} `json:"value"`
	}
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("reading %s element %d: %w", name, i, err)
	}
	t, err := time.ParseInLocation(legacyLayout, v.DateTime, r.loc)
	bpm, err2 := v.Value.BPM.Float64()
	if err != nil || err2 != nil {
		return r.reject(origin, "heart_rate", v.DateTime, string(v.Value.BPM))
	}
	b := r.begin("heart_rate", t, string(v.Value.BPM))
	b = append(b, `"bpm":`...)
	b = appendNum(b, bpm)
	return r.finish(b, origin)
}

// stepsElement reads one element of a legacy steps-*.json file: the steps of one minute.
func (r *reader) stepsElement(dec *json.Decoder, name string, i int, origin string) error {
	var v struct {
		DateTime string          `json:"dateTime"`
		Value    json.RawMessage `json:"value"`
	}
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("reading %s element %d: %w", name, i, err)
	}
	t, err := time.ParseInLocation(legacyLayout, v.DateTime, r.loc)
	s := strings.Trim(string(v.Value), `"`)
	n, err2 := strconv.ParseFloat(s, 64)
	if err != nil || err2 != nil {
		return r.reject(origin, "steps", v.DateTime, s)
	}
	b := r.begin("steps", t, s)
	b = append(b, `"count":`...)
	b = appendNum(b, n)
	b = append(b, `,"interval_s":60`...)
	return r.finish(b, origin)
}

// sleepElement reads one sleep log of a sleep-*.json file: a reading per level segment.
func (r *reader) sleepElement(dec *json.Decoder, name string, i int, origin string) error {
	var v struct {
		Levels struct {
			Data []struct {
				DateTime string  `json:"dateTime"`
				Level    string  `json:"level"`
				Seconds  float64 `json:"seconds"`
			} `json:"data"`
		} `json:"levels"`
	}
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("reading %s element %d: %w", name, i, err)
	}
	for j, d := range v.Levels.Data {
		o := origin + ".levels.data[" + strconv.Itoa(j) + "]"
		t, err := time.ParseInLocation(sleepLayout, d.DateTime, r.loc)
		stage, ok := sleepStages[d.Level]
		if err != nil || !ok {
			if err := r.reject(o, "sleep", d.DateTime, d.Level); err != nil {
				return err
			}
			continue
		}
		b := r.begin("sleep", t, d.Level)
		b = append(b, `"stage":"`...)
		b = append(b, stage...)
		b = append(b, `","duration_s":`...)
		b = appendNum(b, d.Seconds)
		if err := r.finish(b, o); err != nil {
			return err
		}
	}
	return nil
}

// sleepStages maps Fitbit sleep levels ("stages" logs: wake, light, deep, rem; "classic"
// logs: awake, asleep, restless) to SPEC §3 stages.
var sleepStages = map[string]string{
	"wake": "wake", "awake": "wake", "light": "light", "deep": "deep", "rem": "rem",
	"asleep": "asleep", "restless": "restless",
}

// csvColumns are the header names recognised in the newer layout's CSV files, lower case:
// the time column, then each kind's value column.
var (
	csvTimeCols  = []string{"timestamp", "time", "start time", "start_time", "datetime"}
	csvValueCols = map[string][]string{
		"heart_rate":        {"beats per minute", "bpm", "heart rate", "heart_rate", "value"},
		"steps":             {"steps", "step count", "count", "value"},
		"oxygen_saturation": {"oxygen saturation percentage", "percentage", "spo2", "value"},
	}
)

func (r *reader) csvFile(kind, base string, in io.Reader) error {
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		return fmt.Errorf("reading %s: %w", base, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	find := func(names []string) int {
		for _, n := range names {
			if i, ok := col[n]; ok {
				return i
			}
		}
		return -1
	}
	ti, vi := find(csvTimeCols), find(csvValueCols[kind])
	if ti < 0 || vi < 0 {
		if r.o.Skipped != nil {
			r.o.Skipped(base, fmt.Sprintf("unrecognised header %q", strings.Join(head, ",")))
		}
		return nil
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", base, err)
		}
		if ti >= len(rec) || vi >= len(rec) {
			continue
		}
		origin := base + ":" + strconv.Itoa(line)
		ts, vs := strings.TrimSpace(rec[ti]), strings.TrimSpace(rec[vi])
		t, ok := r.csvTime(ts)
		v, err := strconv.ParseFloat(vs, 64)
		if !ok || err != nil {
			if err := r.reject(origin, kind, ts, vs); err != nil {
				return err
			}
			continue
		}
		var b []byte
		switch kind {
		case "heart_rate":
			b = r.begin("heart_rate", t, vs)
			b = append(b, `"bpm":`...)
			b = appendNum(b, v)
		case "steps":
			b = r.begin("steps", t, vs)
			b = append(b, `"count":`...)
			b = appendNum(b, v)
		case "oxygen_saturation":
			b = r.begin("spo2", t, vs)
			b = append(b, `"percent":`...)
			b = appendNum(b, v)
		}
		if err := r.finish(b, origin); err != nil {
			return err
		}
	}
}

// csvTime reads RFC 3339 times (with an offset or Z) as written, and times without an offset
// in the archive's time zone.
func (r *reader) csvTime(s string) (time.Time, bool) {
	for _, l := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05 -0700"} {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	for _, l := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04:05.000", legacyLayout} {
		if t, err := time.ParseInLocation(l, s, r.loc); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// reject emits what could not be read as a record the ingester refuses (unknown kind), so it
// is kept in quarantine with its origin instead of being lost.
func (r *reader) reject(origin, kind, when, value string) error {
	b := r.buf[:0]
	b = append(b, `{"subject":`...)
	b = appendJSONString(b, r.o.Subject)
	b = append(b, `,"kind":"google_takeout_record","google_takeout":{"type":`...)
	b = appendJSONString(b, kind)
	b = append(b, `,"time":`...)
	b = appendJSONString(b, when)
	b = append(b, `,"value":`...)
	b = appendJSONString(b, value)
	b = append(b, "}}"...)
	r.buf = b
	r.st.Readings++
	return r.emit(append([]byte(nil), b...), origin)
}

func (r *reader) begin(kind string, t time.Time, value string) []byte {
	b := r.buf[:0]
	b = append(b, `{"id":"`...)
	b = append(b, idOf(r.o.Subject, kind, Device, t, value)...)
	b = append(b, `","subject":`...)
	b = appendJSONString(b, r.o.Subject)
	b = append(b, `,"device":"`+Device+`","kind":"`...)
	b = append(b, kind...)
	b = append(b, `","time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","values":{`...)
	return b
}

func (r *reader) finish(b []byte, origin string) error {
	b = append(b, "}}"...)
	r.buf = b
	r.st.Readings++
	return r.emit(append([]byte(nil), b...), origin)
}

// idOf is a reading's stable id: "gt-" and 32 hex digits of SHA-256 over the subject, kind,
// device, instant and value.
func idOf(subject, kind, device string, t time.Time, value string) string {
	h := sha256.New()
	for _, p := range []string{subject, kind, device, value} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	us := t.UnixMicro()
	var b [8]byte
	for i := range b {
		b[i] = byte(us >> (56 - 8*i))
	}
	h.Write(b[:])
	var sum [sha256.Size]byte
	return "gt-" + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

func appendNum(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, math.Round(v*1e9)/1e9, 'f', -1, 64)
}

type countingReader struct {
	io.ReadCloser
	n        *int64
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	*c.n += int64(n)
	if c.progress != nil {
		c.progress(*c.n)
	}
	return n, err
}

// appendJSONString appends s as a JSON string (invalid UTF-8 becomes U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}
