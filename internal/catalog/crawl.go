package catalog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/valyala/fastjson"
)

// Defaults of Options.
const (
	DefaultSampleRows   = 1000
	DefaultMaxFiles     = 100_000
	DefaultMaxLineBytes = 16 << 20
)

// Options configures a crawl.
type Options struct {
	// Source is the folder to crawl: a local path or a file:// URL.
	Source string
	// Zone and Name name the table (zone.name).
	Zone, Name string
	// Format of the files; empty detects it from the file names.
	Format Format
	// SampleRows is how many rows of each JSON or CSV file are read to infer the schema
	// (every row is still counted). Default 1000.
	SampleRows int
	// MaxFiles bounds the number of files of a table. Default 100000.
	MaxFiles int
	// MaxLineBytes bounds one line of a JSON or CSV file. Default 16 MiB.
	MaxLineBytes int
	// Now stamps CrawledAt; default time.Now.
	Now func() time.Time
}

func (o *Options) applyDefaults() {
	if o.SampleRows <= 0 {
		o.SampleRows = DefaultSampleRows
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Result is the outcome of a crawl.
type Result struct {
	Table Table
	// Previous is the entry the crawl replaced (nil for a new table).
	Previous *Table
	// Drift lists the schema changes since Previous.
	Drift Drift
	// Warnings are things a user should know about the data (e.g. nested values kept as text).
	Warnings []string
}

// Crawl scans opts.Source, infers the table and registers it in dataDir's registry.
func Crawl(ctx context.Context, dataDir string, opts Options) (*Result, error) {
	t, warnings, err := Scan(ctx, opts)
	if err != nil {
		return nil, err
	}
	prev, err := Put(dataDir, t)
	if err != nil {
		return nil, err
	}
	res := &Result{Table: t, Previous: prev, Warnings: warnings}
	if prev != nil {
		res.Drift = Diff(*prev, t)
	}
	return res, nil
}

// Check scans opts.Source like Crawl and reports the drift from the registered entry without
// changing the registry: the table keeps the schema it was crawled with until a crawl
// records the new one.
func Check(ctx context.Context, dataDir string, opts Options) (*Result, error) {
	t, warnings, err := Scan(ctx, opts)
	if err != nil {
		return nil, err
	}
	prev, err := Get(dataDir, opts.Zone, opts.Name)
	if err != nil {
		return nil, err
	}
	res := &Result{Table: t, Previous: prev, Warnings: warnings}
	if prev != nil {
		res.Drift = Diff(*prev, t)
	}
	return res, nil
}

// Scan reads opts.Source and returns the table it holds, without registering it.
func Scan(ctx context.Context, opts Options) (Table, []string, error) {
	opts.applyDefaults()
	if err := ValidateName(opts.Zone, opts.Name); err != nil {
		return Table{}, nil, err
	}
	root, err := localRoot(opts.Source)
	if err != nil {
		return Table{}, nil, err
	}
	files, format, err := findFiles(ctx, root, opts)
	if err != nil {
		return Table{}, nil, err
	}
	c := &crawler{opts: opts, root: root, data: newSchema(), parts: newSchema()}
	t := Table{Zone: opts.Zone, Name: opts.Name, Location: root, Format: format,
		Files: int64(len(files)), CrawledAt: opts.Now().UTC().Format(time.RFC3339)}
	var layout []string
	var layoutFile string
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return Table{}, nil, err
		}
		keys, err := c.partitions(f.rel)
		if err != nil {
			return Table{}, nil, err
		}
		if layoutFile == "" {
			layout, layoutFile = keys, f.rel
		} else if !slices.Equal(keys, layout) {
			return Table{}, nil, fmt.Errorf("%s: partition folders %s differ from %s in %s; every file of a table needs the same k=v folder levels (crawl each layout as its own table)",
				f.rel, describeKeys(keys), describeKeys(layout), layoutFile)
		}
		rows, err := c.file(format, f)
		if err != nil {
			return Table{}, nil, fmt.Errorf("%s: %w", f.rel, err)
		}
		t.Rows += rows
		t.Bytes += f.size
	}
	t.Columns = c.data.columns()
	t.Partitions = c.parts.columns()
	t.Quoted = c.quoted
	// keep the partition columns in folder order
	slices.SortStableFunc(t.Partitions, func(a, b Column) int {
		return slices.Index(layout, a.Name) - slices.Index(layout, b.Name)
	})
	for _, p := range t.Partitions {
		if slices.ContainsFunc(t.Columns, func(c Column) bool { return strings.EqualFold(c.Name, p.Name) }) {
			return Table{}, nil, fmt.Errorf("partition key %q is also a column inside the files; rename the folder key or the column", p.Name)
		}
	}
	if len(t.Columns) == 0 {
		return Table{}, nil, fmt.Errorf("no columns found in the files under %s (are they empty?)", root)
	}
	return t, c.warnings(t), nil
}

// localRoot turns a source into an absolute folder path.
func localRoot(src string) (string, error) {
	if src == "" {
		return "", errors.New("no source given: pass the folder of the files (a path or file:// URL)")
	}
	if strings.Contains(src, "://") {
		u, err := url.Parse(src)
		if err != nil {
			return "", fmt.Errorf("source %q: %w", src, err)
		}
		switch u.Scheme {
		case "file":
			if u.Host != "" && u.Host != "localhost" {
				return "", fmt.Errorf("source %q: a file:// URL needs an absolute path (file:///dir)", src)
			}
			src = u.Path
		case "s3", "s3a":
			return "", fmt.Errorf("source %q: crawling s3:// is not supported; copy the folder locally (aws s3 sync), crawl the copy and give the S3 location to `catalog ddl --location`", src)
		default:
			return "", fmt.Errorf("source %q: unsupported scheme %s (use a local path or file://)", src, u.Scheme)
		}
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return "", fmt.Errorf("source %q: %w", src, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("source %s: %w", abs, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("source %s is a file; give the folder that holds the table's files", abs)
	}
	return abs, nil
}

type dataFile struct {
	path string // absolute
	rel  string // relative to the root, slash-separated
	size int64
}

// findFiles lists the table's files (sorted by path) and settles the format.
func findFiles(ctx context.Context, root string, opts Options) ([]dataFile, Format, error) {
	byFormat := map[Format][]dataFile{}
	total := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() && d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		for _, f := range Formats {
			if opts.Format != "" && f != opts.Format {
				continue
			}
			if ok, _ := path.Match(filePattern(f), d.Name()); !ok {
				continue
			}
			info, err := os.Stat(p)
			if err != nil {
				return err
			}
			if info.IsDir() {
				return nil
			}
			total++
			if total > opts.MaxFiles {
				return fmt.Errorf("more than %d files under %s; crawl a narrower folder or raise --max-files", opts.MaxFiles, root)
			}
			rel, _ := filepath.Rel(root, p)
			byFormat[f] = append(byFormat[f], dataFile{path: p, rel: filepath.ToSlash(rel), size: info.Size()})
			break
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("listing %s: %w", root, err)
	}
	format := opts.Format
	if format == "" {
		var found []string
		for _, f := range Formats {
			if n := len(byFormat[f]); n > 0 {
				format = f
				found = append(found, fmt.Sprintf("%d %s", n, f))
			}
		}
		if len(found) > 1 {
			return nil, "", fmt.Errorf("%s holds files of several formats (%s); choose one with --format", root, strings.Join(found, ", "))
		}
	}
	if len(byFormat[format]) == 0 {
		what := "JSON-lines (.json, .jsonl, .ndjson), CSV (.csv) or Parquet (.parquet)"
		if format != "" {
			what = string(format) + " (" + filePattern(format) + ")"
		}
		return nil, "", fmt.Errorf("no %s files under %s", what, root)
	}
	files := byFormat[format]
	slices.SortFunc(files, func(a, b dataFile) int { return strings.Compare(a.rel, b.rel) })
	return files, format, nil
}

func describeKeys(keys []string) string {
	if len(keys) == 0 {
		return "(none)"
	}
	return strings.Join(keys, "/")
}

type crawler struct {
	opts    Options
	root    string
	data    *schema
	parts   *schema
	quoted  bool
	other   []string // folders that are not k=v, for a warning
	skipped []string // Parquet columns without a portable type
}

// partitions records the hive k=v folders of a file and returns their keys in order.
func (c *crawler) partitions(rel string) ([]string, error) {
	dirs := strings.Split(path.Dir(rel), "/")
	var keys []string
	for _, d := range dirs {
		if d == "." {
			continue
		}
		k, v, ok := strings.Cut(d, "=")
		if !ok || k == "" {
			if !slices.Contains(c.other, d) && len(c.other) < 5 {
				c.other = append(c.other, d)
			}
			continue
		}
		key, err := url.PathUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("%s: partition folder %q: %w", rel, d, err)
		}
		val, err := url.PathUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("%s: partition folder %q: %w", rel, d, err)
		}
		if slices.Contains(keys, key) {
			return nil, fmt.Errorf("%s: partition key %q appears twice in the path", rel, key)
		}
		keys = append(keys, key)
		c.parts.add(key, PartitionType(val), false)
	}
	return keys, nil
}

// file reads one data file into the schema and returns its row count.
func (c *crawler) file(format Format, f dataFile) (int64, error) {
	if format == FormatParquet {
		return c.parquet(f.path)
	}
	fh, err := os.Open(f.path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	var r io.Reader = fh
	if strings.HasSuffix(f.path, ".gz") {
		gz, err := gzip.NewReader(fh)
		if err != nil {
			return 0, fmt.Errorf("opening gzip: %w", err)
		}
		defer gz.Close()
		r = gz
	}
	if format == FormatCSV {
		rows, quoted, err := scanCSV(r, c.data, c.opts.SampleRows, c.opts.MaxLineBytes)
		c.quoted = c.quoted || quoted
		return rows, err
	}
	return scanJSON(r, c.data, c.opts.SampleRows, c.opts.MaxLineBytes)
}

type lineError struct {
	line int64
	err  error
}

func (e lineError) Error() string { return fmt.Sprintf("line %d: %v", e.line, e.err) }
func (e lineError) Unwrap() error { return e.err }

var errNotObject = errors.New("not a JSON object (JSON lines need one {...} object per line)")

// scanJSON counts the rows of JSON-lines text and adds the first sample rows to s. Blank
// lines are not rows. Memory is bounded by maxLine.
func scanJSON(r io.Reader, s *schema, sample, maxLine int) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var p fastjson.Parser
	var rows, lineNo int64
	var buf []byte
	blank := true
	length := 0
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			length += len(chunk)
			if length > maxLine {
				return rows, lineError{lineNo + 1, fmt.Errorf("longer than %d bytes", maxLine)}
			}
			if rows < int64(sample) {
				buf = append(buf, chunk...)
			} else if blank {
				blank = len(bytes.TrimSpace(chunk)) == 0
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return rows, err
		}
		if length > 0 {
			lineNo++
			if rows < int64(sample) {
				if len(bytes.TrimSpace(buf)) > 0 {
					if perr := s.addJSON(&p, buf); perr != nil {
						return rows, lineError{lineNo, perr}
					}
					rows++
				}
			} else if !blank {
				rows++
			}
		}
		buf, blank, length = buf[:0], true, 0
		if err != nil {
			return rows, nil
		}
	}
}

// scanCSV counts the rows of CSV text with a header row, adds the first sample rows to s and
// reports whether any value is quoted.
func scanCSV(r io.Reader, s *schema, sample, maxLine int) (rows int64, quoted bool, err error) {
	lr := &lineLimitReader{r: r, max: maxLine}
	cr := csv.NewReader(lr)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return 0, false, nil // empty file
	}
	if err != nil {
		return 0, false, csvError(err)
	}
	names := make([]string, len(header))
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		h = strings.TrimSpace(h)
		if h == "" {
			return 0, false, fmt.Errorf("line 1: column %d has no name in the header row", i+1)
		}
		if slices.Contains(names[:i], h) {
			return 0, false, fmt.Errorf("line 1: column %q appears twice in the header row", h)
		}
		names[i] = h
	}
	for _, n := range names {
		s.add(n, "", false)
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, lr.quoted, nil
		}
		if err != nil {
			return rows, lr.quoted, csvError(err)
		}
		if rows < int64(sample) {
			for i, v := range rec {
				s.add(names[i], TextType(v), false)
			}
		}
		rows++
	}
}

func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return lineError{int64(pe.Line), pe.Err}
	}
	return err
}

// lineLimitReader fails when a line is longer than max bytes and notes double quotes.
type lineLimitReader struct {
	r      io.Reader
	max    int
	run    int // bytes since the last newline
	quoted bool
}

func (l *lineLimitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	b := p[:n]
	if !l.quoted && bytes.IndexByte(b, '"') >= 0 {
		l.quoted = true
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			l.run += len(b)
			break
		}
		l.run += i
		if l.run > l.max {
			break
		}
		l.run = 0
		b = b[i+1:]
	}
	if l.run > l.max {
		return 0, fmt.Errorf("a line is longer than %d bytes", l.max)
	}
	return n, err
}

// parquet reads a Parquet footer: the row count from the metadata and the columns from the
// schema. Nested, binary and interval columns are left out (with a warning): other engines
// could not read them under the portable types.
func (c *crawler) parquet(p string) (int64, error) {
	rd, err := file.OpenParquetFile(p, false)
	if err != nil {
		return 0, fmt.Errorf("reading Parquet footer: %w", err)
	}
	defer rd.Close()
	md := rd.MetaData()
	sc, err := pqarrow.FromParquet(md.Schema, nil, md.KeyValueMetadata())
	if err != nil {
		return 0, fmt.Errorf("reading Parquet schema: %w", err)
	}
	for _, f := range sc.Fields() {
		typ := arrowType(f.Type)
		if typ == "" {
			if d := f.Name + " (" + f.Type.String() + ")"; !slices.Contains(c.skipped, d) {
				c.skipped = append(c.skipped, d)
			}
			continue
		}
		c.data.add(f.Name, typ, false)
	}
	return md.NumRows, nil
}

// arrowType maps an Arrow type of a Parquet column to a portable type ("" when it has none).
func arrowType(t arrow.DataType) string {
	switch t.ID() {
	case arrow.BOOL:
		return TypeBoolean
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32:
		return TypeBigint
	case arrow.UINT64, arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64, arrow.DECIMAL32, arrow.DECIMAL64, arrow.DECIMAL128, arrow.DECIMAL256:
		return TypeDouble
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return TypeString
	case arrow.TIMESTAMP:
		return TypeTimestamp
	case arrow.DATE32, arrow.DATE64:
		return TypeDate
	case arrow.DICTIONARY:
		return arrowType(t.(*arrow.DictionaryType).ValueType)
	}
	return ""
}

// warnings explains what the crawl could not represent faithfully.
func (c *crawler) warnings(t Table) []string {
	var w []string
	for _, col := range t.Columns {
		if col.Nested {
			w = append(w, fmt.Sprintf("column %s holds JSON objects or arrays; it is typed string (the JSON text)", col.Name))
		}
	}
	if len(c.skipped) > 0 {
		w = append(w, "Parquet columns without a portable type were left out: "+strings.Join(c.skipped, ", "))
	}
	if len(c.other) > 0 && len(t.Partitions) > 0 {
		w = append(w, "folders that are not k=v partitions ("+strings.Join(c.other, ", ")+") are ignored; Athena and Hive expect the k=v folders directly under the location")
	}
	seen := map[string]string{}
	for _, col := range append(slices.Clone(t.Columns), t.Partitions...) {
		l := strings.ToLower(col.Name)
		if o, ok := seen[l]; ok {
			w = append(w, fmt.Sprintf("columns %q and %q differ only in case; Athena, Trino and Spark see them as one", o, col.Name))
		}
		seen[l] = col.Name
	}
	return w
}
