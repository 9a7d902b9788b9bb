// Package excerpt ships a small set of labelled heartbeat windows cut from MIT-BIH Arrhythmia
// Database records for the live demo and the device simulator (see ATTRIBUTION.md).
//
// The beats are stored in beats.csv (embedded): one beat per line with the columns record,
// sample (R-peak index at 360 Hz), MIT-BIH label, AAMI class, the RR features pre, post, local
// and average in milliseconds, then the 187 window samples quantized to integers 0..255
// (value/255 restores the 0..1 window to within 0.002). The package has no mutable state.
package excerpt

import (
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pulselake/pulselake/internal/ecg"
)

//go:embed beats.csv
var beatsCSV string

// header lists the CSV columns before the samples.
func header() []string {
	return []string{"record", "sample", "label", "class", "pre_ms", "post_ms", "local_ms", "avg_ms"}
}

// numMeta is the number of columns before the samples.
const numMeta = 8

// DemoBeats decodes the shipped beats, in file order.
func DemoBeats() ([]ecg.Beat, error) {
	return Parse(beatsCSV)
}

// Parse decodes beats in the excerpt CSV format.
func Parse(data string) ([]ecg.Beat, error) {
	r := csv.NewReader(strings.NewReader(data))
	r.FieldsPerRecord = numMeta + ecg.WindowLen
	r.ReuseRecord = true
	var out []ecg.Beat
	line := 0
	for {
		rec, err := r.Read()
		line++
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("parsing demo beats line %d: %w", line, err)
		}
		if line == 1 && rec[0] == "record" {
			continue
		}
		var b ecg.Beat
		b.Record = rec[0]
		if b.Sample, err = strconv.ParseInt(rec[1], 10, 64); err != nil {
			return nil, fmt.Errorf("parsing demo beats line %d sample: %w", line, err)
		}
		b.Label = rec[2]
		if b.Class, err = ecg.ParseClass(rec[3]); err != nil {
			return nil, fmt.Errorf("parsing demo beats line %d: %w", line, err)
		}
		rr := [4]*float64{&b.RR.Pre, &b.RR.Post, &b.RR.Local, &b.RR.Average}
		for k, p := range rr {
			ms, err := strconv.Atoi(rec[4+k])
			if err != nil || ms < 0 {
				return nil, fmt.Errorf("parsing demo beats line %d column %s: %q", line, header()[4+k], rec[4+k])
			}
			*p = float64(ms) / 1000
		}
		for k := 0; k < ecg.WindowLen; k++ {
			v, err := strconv.Atoi(rec[numMeta+k])
			if err != nil || v < 0 || v > 255 {
				return nil, fmt.Errorf("parsing demo beats line %d sample %d: %q", line, k, rec[numMeta+k])
			}
			b.Samples[k] = float32(v) / 255
		}
		out = append(out, b)
	}
}

// Format encodes beats in the excerpt CSV format.
func Format(beats []ecg.Beat) string {
	var sb strings.Builder
	w := csv.NewWriter(&sb)
	row := make([]string, 0, numMeta+ecg.WindowLen)
	row = append(row, header()...)
	for k := 0; k < ecg.WindowLen; k++ {
		row = append(row, "s"+strconv.Itoa(k))
	}
	_ = w.Write(row) // a strings.Builder does not fail
	for _, b := range beats {
		row = append(row[:0], b.Record, strconv.FormatInt(b.Sample, 10), b.Label, b.Class.String(),
			strconv.Itoa(ms(b.RR.Pre)), strconv.Itoa(ms(b.RR.Post)), strconv.Itoa(ms(b.RR.Local)), strconv.Itoa(ms(b.RR.Average)))
		for _, v := range b.Samples {
			row = append(row, strconv.Itoa(int(v*255+0.5)))
		}
		_ = w.Write(row)
	}
	w.Flush()
	return sb.String()
}

func ms(s float64) int { return int(s*1000 + 0.5) }
