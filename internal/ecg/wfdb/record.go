package wfdb

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Record is a WFDB record read from disk: its header, signals and (optional) annotations.
type Record struct {
	Header      *Header
	Signals     [][]int      // ADC units, Signals[i] is signal i
	Annotations []Annotation // nil when the record has no annotation file
}

// ReadRecord reads record name (e.g. "101") from dir: name.hea, its signal files and, when
// present, the annotation file name.<annotator> (usually "atr"; "" skips annotations).
func ReadRecord(dir, name, annotator string) (*Record, error) {
	rec, err := ReadRecordFS(os.DirFS(dir), name, annotator)
	if err != nil {
		return nil, fmt.Errorf("%w (in directory %s)", err, dir)
	}
	return rec, nil
}

// ReadRecordFS is ReadRecord on an fs.FS.
func ReadRecordFS(fsys fs.FS, name, annotator string) (*Record, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("reading record %q: invalid record name", name)
	}
	hf, err := fsys.Open(name + ".hea")
	if err != nil {
		return nil, fmt.Errorf("reading record %s: %w", name, err)
	}
	h, err := ParseHeader(hf)
	hf.Close()
	if err != nil {
		return nil, fmt.Errorf("reading record %s: %w", name, err)
	}
	open := func(file string) (io.ReadCloser, error) {
		if file == "" || strings.ContainsAny(file, `/\`) || file == "." || file == ".." || file == "-" {
			return nil, fmt.Errorf("signal file name %q: %w", file, ErrUnsupported)
		}
		return fsys.Open(path.Clean(file))
	}
	s, err := ReadSignals(h, open)
	if err != nil {
		return nil, fmt.Errorf("reading record %s: %w", name, err)
	}
	rec := &Record{Header: h, Signals: s.Data}
	if annotator == "" {
		return rec, nil
	}
	af, err := fsys.Open(name + "." + annotator)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading record %s annotations: %w", name, err)
	}
	defer af.Close()
	rec.Annotations, err = ParseAnnotations(af)
	if err != nil {
		return nil, fmt.Errorf("reading record %s annotations: %w", name, err)
	}
	return rec, nil
}

// ListRecords returns the names of the records in dir (files ending in .hea), sorted.
func ListRecords(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*.hea"))
	if err != nil {
		return nil, fmt.Errorf("listing records in %s: %w", dir, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("listing records in %s: no .hea files", dir)
	}
	out := make([]string, len(m))
	for i, f := range m {
		out[i] = strings.TrimSuffix(filepath.Base(f), ".hea")
	}
	return out, nil
}
