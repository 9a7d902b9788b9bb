package fhir

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pulselake/pulselake/internal/reading"
)

// Limits of files read by ReadPath.
const (
	MaxBundleFileBytes = 1 << 30  // a Bundle file is read whole
	MaxBundleEntries   = 10 << 20 // entries of one Bundle file
	MaxLineBytes       = 64 << 20 // one NDJSON resource
)

// Emit receives one resource read from a file: its readings, or the issues that refuse it.
type Emit func(raw []byte, origin string, rs []reading.Reading, issues []Issue) error

// isFHIRFile tells the files ReadPath reads: .json Bundles, .ndjson and .jsonl resources.
func isFHIRFile(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json", ".ndjson", ".jsonl":
		return true
	}
	return false
}

// Detect reports whether path is a FHIR file: a .json, .ndjson or .jsonl file whose start
// names a resourceType.
func Detect(path string) bool {
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || !isFHIRFile(path) {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, _ := io.ReadFull(f, head)
	return bytes.Contains(head[:n], []byte(`"resourceType"`))
}

// ReadPath reads a FHIR file, or every FHIR file under a folder (a Bulk Data export):
// a .json file holds a Bundle (any type; each entry's resource is read) or one resource;
// a .ndjson or .jsonl file one resource per line. progress gets the bytes read so far.
func (d *Decoder) ReadPath(ctx context.Context, path string, progress func(int64), emit Emit) error {
	var done int64
	return filepath.WalkDir(path, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() || (p != path && !isFHIRFile(p)) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := d.readFile(p, emit)
		done += n
		if progress != nil {
			progress(done)
		}
		return err
	})
}

func (d *Decoder) readFile(path string, emit Emit) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	base := filepath.Base(path)
	if strings.EqualFold(filepath.Ext(path), ".json") {
		data, err := io.ReadAll(io.LimitReader(f, MaxBundleFileBytes+1))
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", path, err)
		}
		if len(data) > MaxBundleFileBytes {
			return 0, fmt.Errorf("reading %s: above %d bytes; write it as NDJSON (one resource per line)", path, MaxBundleFileBytes)
		}
		return int64(len(data)), d.readJSON(data, base, emit)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	var n int64
	for line := 1; sc.Scan(); line++ {
		n += int64(len(sc.Bytes())) + 1
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		raw = bytes.Clone(raw)
		rs, issues := d.Observation(raw, "")
		if err := emit(raw, fmt.Sprintf("%s:%d", base, line), rs, issues); err != nil {
			return n, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("a line is above %d bytes", MaxLineBytes)
		}
		return n, fmt.Errorf("reading %s: %w", path, err)
	}
	return n, nil
}

// readJSON reads a .json file: a Bundle, or a single resource.
func (d *Decoder) readJSON(data []byte, base string, emit Emit) error {
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if json.Unmarshal(data, &head) != nil || head.ResourceType != TypeBundle {
		rs, issues := d.Observation(data, "")
		return emit(data, base, rs, issues)
	}
	b, err := ParseBundle(data, MaxBundleEntries, false)
	if err != nil {
		var be *BundleError
		if errors.As(err, &be) && be.Issue.Type != IssueTooCostly {
			return emit(data, base, nil, []Issue{be.Issue})
		}
		return fmt.Errorf("reading %s: %w", base, err)
	}
	for i, e := range d.Entries(b, false) {
		if err := emit(e.Raw, fmt.Sprintf("%s#entry[%d]", base, i), e.Readings, e.Issues); err != nil {
			return err
		}
	}
	return nil
}
