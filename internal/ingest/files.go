package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulselake/pulselake/internal/stream"
)

// ImportOptions configures file imports.
type ImportOptions struct {
	// Subject for files that do not name one (a personal blood-pressure export).
	Subject string
	// Chunk is the number of records stored per batch (default 5000).
	Chunk int
	// Exports are the export formats of wearable apps that may be imported; the formats
	// themselves live in their own packages (internal/connector/...).
	Exports []Export
	// Format names the export format of every path ("" detects it: an export whose Detect
	// accepts the path, else a file format by extension).
	Format string
	// Location of export times written without an offset, for formats that have them.
	Location *time.Location
	// Progress, when set, is called as an export is read and stored (from two goroutines,
	// never at the same time). It must be quick.
	Progress func(ImportProgress)
}

// Export is one export format of a wearable app (an archive or folder of files).
type Export struct {
	Format string // name given to --format, e.g. apple-health
	Source string // batch source of its readings (landing.<source>)
	// OwnSubjects: the export's records name their subjects, so --subject is not needed.
	OwnSubjects bool
	// Detect reports whether the file or folder at path is of this format.
	Detect func(path string) bool
	// Read emits the export's readings (wire format v1) in order.
	Read func(ctx context.Context, path string, o ExportOptions, emit func(raw []byte, origin string) error) error
}

// ExportOptions are what Export.Read is given.
type ExportOptions struct {
	Subject  string
	Location *time.Location
	// Progress is called with the bytes of the file (or folder) read so far.
	Progress func(read int64)
	// EmitRecord stores a record the format parsed or refused itself (Record.Reading,
	// Record.Rejected), in order with those of emit.
	EmitRecord func(Record) error
}

// ImportProgress is how far the import of one path has got.
type ImportProgress struct {
	Path, Format      string
	Bytes, BytesTotal int64 // read so far, size of the file or folder
	Records           int64 // records stored (accepted, duplicates and rejected)
	Accepted          int64
	Duplicates        int64
	Rejected          int64
}

// FileResult is the outcome of importing one file.
type FileResult struct {
	Path string
	Result
	// MoreRejected counts rejected records of an export beyond the first maxListedRejections
	// listed in Rejected (all of them are kept in quarantine).
	MoreRejected int
}

// exportStorers is how many chunks of an export are being stored at once.
const exportStorers = 4

// exportReadAhead is how many chunks the reader keeps ready beyond those being stored: the
// reader is several times faster than storing, so one is enough to keep the storers busy,
// and each chunk (5,000 records with their typed readings) holds a few megabytes.
const exportReadAhead = 1

// maxListedRejections bounds the rejections an export's result lists.
const maxListedRejections = 1000

// Import reads files and directories (recursively) of readings and stores them like
// readings sent over HTTP, with source "import". Formats, by extension: .ndjson/.jsonl
// (one reading per line), .json (a reading or an array), .csv (see csvRecords), .hea (a WFDB
// record, see wfdbRecords). Files of
// other types in directories are skipped; named files of unknown type are an error.
func (in *Ingester) Import(ctx context.Context, paths []string, o ImportOptions) ([]FileResult, error) {
	if o.Chunk <= 0 {
		o.Chunk = 5000
	}
	var out []FileResult
	for _, root := range paths {
		st, err := os.Stat(root)
		if err != nil {
			return out, fmt.Errorf("importing %s: %w", root, err)
		}
		if exp, ok, err := exportFor(root, o); err != nil {
			return out, err
		} else if ok {
			res, err := in.importExport(ctx, root, st, exp, o)
			out = append(out, res)
			if err != nil {
				return out, err
			}
			continue
		}
		if !st.IsDir() {
			res, err := in.importFile(ctx, root, o)
			if err != nil {
				return out, err
			}
			out = append(out, res)
			continue
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || formatOfFile(path) == "" {
				return err
			}
			res, err := in.importFile(ctx, path, o)
			if err != nil {
				return err
			}
			out = append(out, res)
			return nil
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// exportFor returns the export format of root: the one named by o.Format, else the first
// whose Detect accepts root.
func exportFor(root string, o ImportOptions) (Export, bool, error) {
	if o.Format != "" {
		names := make([]string, 0, len(o.Exports))
		for _, e := range o.Exports {
			if e.Format == o.Format {
				return e, true, nil
			}
			names = append(names, e.Format)
		}
		return Export{}, false, fmt.Errorf("unknown import format %q; want one of %s, or leave the format out to detect it", o.Format, strings.Join(names, ", "))
	}
	for _, e := range o.Exports {
		if e.Detect(root) {
			return e, true, nil
		}
	}
	return Export{}, false, nil
}

// importExport reads an export with its format's reader and stores its readings in chunks,
// with the format's source.
//
// The export is read on its own goroutine while earlier chunks are being stored, so
// parsing and storing use two cores; at most exportReadAhead chunks wait between them.
func (in *Ingester) importExport(ctx context.Context, root string, st fs.FileInfo, exp Export, o ImportOptions) (FileResult, error) {
	res := FileResult{Path: root, Result: Result{Rejected: []Rejection{}}}
	if o.Subject == "" && !exp.OwnSubjects {
		return res, fmt.Errorf("importing %s: a %s export names no subject; pass --subject", root, exp.Format)
	}
	t := &exportTally{
		res:      res,
		p:        ImportProgress{Path: root, Format: exp.Format, BytesTotal: exportSize(root, st)},
		progress: o.Progress,
	}
	readCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan exportChunk, exportReadAhead)
	readErr := make(chan error, 1)
	go func() {
		defer close(chunks)
		readErr <- readExport(readCtx, root, exp, o, t, chunks)
	}()
	t.mu.Lock()
	t.report()
	t.mu.Unlock()
	// Several chunks are stored at once: each waits for its fsync, and the order does not
	// matter (every reading has its own identity).
	var wg sync.WaitGroup
	for range exportStorers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.storeExportChunks(readCtx, cancel, root, exp.Source, chunks, t)
		}()
	}
	wg.Wait()
	res = t.res
	slices.SortFunc(res.Rejected, func(a, b Rejection) int { return a.Index - b.Index })
	err := <-readErr
	if t.storeErr != nil {
		return res, t.storeErr
	}
	if err != nil {
		return res, fmt.Errorf("importing %s as %s: %w", root, exp.Format, err)
	}
	t.mu.Lock()
	t.p.Bytes = t.p.BytesTotal
	t.report()
	t.mu.Unlock()
	return res, nil
}

// exportChunk is a chunk of an export's records on its way to be stored.
type exportChunk struct {
	recs   []Record
	offset int // index of the chunk's first record in the export
}

// exportTally is what the reader and the storers of one export share.
type exportTally struct {
	mu       sync.Mutex // guards res, p and storeErr, and serializes progress
	res      FileResult
	p        ImportProgress
	storeErr error // the first chunk that failed to be stored
	progress func(ImportProgress)
}

// report hands the progress to the caller's callback, if any. The caller holds t.mu.
func (t *exportTally) report() {
	if t.progress != nil {
		t.progress(t.p)
	}
}

// exportSize is the size of the file st, or the total size of the files under the folder
// root (unreadable ones counted as empty).
func exportSize(root string, st fs.FileInfo) int64 {
	if !st.IsDir() {
		return st.Size()
	}
	var total int64
	_ = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

// readExport reads the export at root and sends its records in chunks of o.Chunk, until
// ctx is cancelled, reporting the bytes read through t.
func readExport(ctx context.Context, root string, exp Export, o ImportOptions, t *exportTally, chunks chan<- exportChunk) error {
	var chunk []Record
	offset := 0
	send := func() error {
		select {
		case chunks <- exportChunk{chunk, offset}:
			offset += len(chunk)
			chunk = make([]Record, 0, o.Chunk)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	emitRecord := func(rec Record) error {
		chunk = append(chunk, rec)
		if len(chunk) >= o.Chunk {
			return send()
		}
		return nil
	}
	emit := func(raw []byte, origin string) error { return emitRecord(Record{Raw: raw, Origin: origin}) }
	eo := ExportOptions{Subject: o.Subject, Location: o.Location, EmitRecord: emitRecord, Progress: func(n int64) {
		t.mu.Lock()
		t.p.Bytes = min(n, t.p.BytesTotal)
		t.report()
		t.mu.Unlock()
	}}
	err := exp.Read(ctx, root, eo, emit)
	if err == nil && len(chunk) > 0 {
		err = send()
	}
	return err
}

// storeExportChunks stores the chunks it receives with the given source and adds their
// outcome to t, until chunks is closed. The first failure is kept in t.storeErr and
// cancels the reading; later chunks are drained unstored.
func (in *Ingester) storeExportChunks(ctx context.Context, cancel context.CancelFunc, root, source string, chunks <-chan exportChunk, t *exportTally) {
	for w := range chunks {
		t.mu.Lock()
		failed := t.storeErr != nil
		t.mu.Unlock()
		if failed {
			continue // drain until the reader sees the cancellation
		}
		r, err := in.IngestWaiting(ctx, source, w.recs)
		t.mu.Lock()
		if err != nil {
			if t.storeErr == nil {
				t.storeErr = fmt.Errorf("importing %s: %w", root, err)
			}
			t.mu.Unlock()
			cancel()
			continue
		}
		t.add(w, r)
		t.report()
		t.mu.Unlock()
	}
}

// add counts the outcome r of storing chunk w, listing at most maxListedRejections
// rejections. The caller holds t.mu.
func (t *exportTally) add(w exportChunk, r Result) {
	t.res.Accepted += r.Accepted
	t.res.Duplicates += r.Duplicates
	for _, rej := range r.Rejected {
		if len(t.res.Rejected) == maxListedRejections {
			t.res.MoreRejected++
			continue
		}
		rej.Index += w.offset
		t.res.Rejected = append(t.res.Rejected, rej)
	}
	t.p.Records += int64(len(w.recs))
	t.p.Accepted += int64(r.Accepted)
	t.p.Duplicates += int64(r.Duplicates)
	t.p.Rejected += int64(len(w.recs) - r.Accepted - r.Duplicates)
}

func formatOfFile(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ndjson", ".jsonl":
		return "ndjson"
	case ".json":
		return "json"
	case ".csv":
		return "csv"
	case ".hea":
		return "wfdb"
	}
	return ""
}

// maxImportLine bounds one line of an NDJSON or CSV file.
const maxImportLine = 16 << 20

func (in *Ingester) importFile(ctx context.Context, path string, o ImportOptions) (FileResult, error) {
	res := FileResult{Path: path, Result: Result{Rejected: []Rejection{}}}
	f, err := os.Open(path)
	if err != nil {
		return res, fmt.Errorf("importing %s: %w", path, err)
	}
	defer f.Close()
	var chunk []Record
	offset := 0
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		r, err := in.IngestWaiting(ctx, stream.SourceImport, chunk)
		if err != nil {
			return fmt.Errorf("importing %s: %w", path, err)
		}
		res.Accepted += r.Accepted
		res.Duplicates += r.Duplicates
		for _, rej := range r.Rejected {
			rej.Index += offset
			res.Rejected = append(res.Rejected, rej)
		}
		offset += len(chunk)
		chunk = chunk[:0]
		return nil
	}
	emit := func(raw []byte, origin string) error {
		chunk = append(chunk, Record{Raw: raw, Origin: origin})
		if len(chunk) >= o.Chunk {
			return flush()
		}
		return nil
	}
	if err := readRecords(f, path, o.Subject, emit); err != nil {
		return res, err
	}
	return res, flush()
}

// readRecords emits the records of the file at path, read from f, by the format its name
// says. Errors of emit are returned as they are; others name path.
func readRecords(f *os.File, path, subject string, emit func([]byte, string) error) error {
	base := filepath.Base(path)
	switch formatOfFile(path) {
	case "ndjson":
		return ndjsonRecords(f, path, emit)
	case "json":
		return jsonArrayRecords(f, path, emit)
	case "csv":
		if err := csvRecords(f, base, subject, emit); err != nil {
			return fmt.Errorf("importing %s: %w", path, err)
		}
		return nil
	case "wfdb":
		if err := wfdbRecords(path, subject, emit); err != nil {
			return fmt.Errorf("importing %s: %w", path, err)
		}
		return nil
	default:
		return fmt.Errorf("importing %s: unknown file type; want .ndjson, .jsonl, .json, .csv or a WFDB record's .hea", path)
	}
}

// ndjsonRecords emits each non-blank line of r, the file at path, as one record.
func ndjsonRecords(r io.Reader, path string, emit func([]byte, string) error) error {
	base := filepath.Base(path)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxImportLine)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := emit(bytes.Clone(line), fmt.Sprintf("%s:%d", base, n)); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("importing %s: %w", path, err)
	}
	return nil
}

// jsonArrayRecords emits each element of the JSON array r, the file at path, as one record.
func jsonArrayRecords(r io.Reader, path string, emit func([]byte, string) error) error {
	base := filepath.Base(path)
	dec := json.NewDecoder(bufio.NewReader(r))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("importing %s: not JSON: %w", path, err)
	}
	if tok != json.Delim('[') {
		return fmt.Errorf("importing %s: want an array of readings (use .ndjson for one per line)", path)
	}
	for n := 0; dec.More(); n++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("importing %s: element %d: %w", path, n, err)
		}
		if err := emit(raw, fmt.Sprintf("%s[%d]", base, n)); err != nil {
			return err
		}
	}
	return nil
}

// csvRecords turns CSV rows into readings. Recognised headers:
//   - generic: subject, device, kind, time and one column per value name;
//   - Fitbit heart-rate exports: id, time, hr (or Id, Time, Value) → heart_rate;
//   - home blood-pressure logs with Sys.mmHg., Dias.mmHg., Pulse.bpm. and DateTime.
//
// Times without a zone are taken as UTC. Each row becomes a JSON reading; what is kept as
// "raw" is that JSON (the CSV row is named in the origin, file:line).
func csvRecords(r io.Reader, base, subject string, emit func([]byte, string) error) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = false
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("reading the header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	has := func(names ...string) bool {
		for _, n := range names {
			if _, ok := col[n]; !ok {
				return false
			}
		}
		return true
	}
	var row func(rec []string) map[string]any
	switch {
	case has("subject", "device", "kind", "time"):
		row = func(rec []string) map[string]any {
			values := map[string]any{}
			for name, i := range col {
				switch name {
				case "subject", "device", "kind", "time", "id":
					continue
				}
				if i < len(rec) && rec[i] != "" {
					values[name] = numberOrText(rec[i])
				}
			}
			m := map[string]any{"subject": get(rec, col["subject"]), "device": get(rec, col["device"]), "kind": get(rec, col["kind"]), "time": csvTime(get(rec, col["time"])), "values": values}
			if i, ok := col["id"]; ok && get(rec, i) != "" {
				m["id"] = get(rec, i)
			}
			return m
		}
	case has("id", "time", "hr") || has("id", "time", "value"):
		hr := col["hr"]
		if _, ok := col["hr"]; !ok {
			hr = col["value"]
		}
		row = func(rec []string) map[string]any {
			id := get(rec, col["id"])
			return map[string]any{"subject": id, "device": "fitbit-" + id, "kind": "heart_rate", "time": csvTime(get(rec, col["time"])),
				"values": map[string]any{"bpm": numberOrText(get(rec, hr))}}
		}
	case has("sys.mmhg.", "dias.mmhg.", "datetime"):
		if subject == "" {
			return errors.New("a blood-pressure log names no subject; pass --subject")
		}
		row = func(rec []string) map[string]any {
			values := map[string]any{"systolic": numberOrText(get(rec, col["sys.mmhg."])), "diastolic": numberOrText(get(rec, col["dias.mmhg."]))}
			if i, ok := col["pulse.bpm."]; ok && get(rec, i) != "" {
				values["pulse"] = numberOrText(get(rec, i))
			}
			return map[string]any{"subject": subject, "device": subject + "-cuff", "kind": "blood_pressure", "time": csvTime(get(rec, col["datetime"])), "values": values}
		}
	default:
		return fmt.Errorf("unrecognised CSV header %q; want subject,device,kind,time,<values...>", strings.Join(header, ","))
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		raw, _ := json.Marshal(row(rec))
		if err := emit(raw, fmt.Sprintf("%s:%d", base, line)); err != nil {
			return err
		}
	}
}

func get(rec []string, i int) string {
	if i < len(rec) {
		return strings.TrimSpace(rec[i])
	}
	return ""
}

func numberOrText(s string) any {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f
	}
	return s
}

// csvTime converts "2006-01-02 15:04:05" (UTC) to RFC 3339; other text is passed through
// for the parser to accept or reject.
func csvTime(s string) any {
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05", "1/2/2006 3:04:05 PM"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms
	}
	return s
}
