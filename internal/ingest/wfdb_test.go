package ingest

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/ecg/wfdb"
	"github.com/pulselake/pulselake/internal/reading"
)

// writeRecord writes a two-signal format-16 WFDB record (MLII in mV, V1 in uV) of n samples
// at 100 Hz with the given base time and date.
func writeRecord(t *testing.T, dir, base string, n int) (mlii, v1 []int16) {
	t.Helper()
	var dat []byte
	sum := [2]int16{}
	for i := 0; i < n; i++ {
		a, b := int16(i%400-200), int16(-(i % 97))
		mlii, v1 = append(mlii, a), append(v1, b)
		sum[0] += a
		sum[1] += b
		dat = binary.LittleEndian.AppendUint16(dat, uint16(a))
		dat = binary.LittleEndian.AppendUint16(dat, uint16(b))
	}
	hea := fmt.Sprintf("rec1 2 100 %d %s\nrec1.dat 16 200/mV 16 0 %d %d 0 MLII\nrec1.dat 16 2(10)/uV 16 0 %d %d 0 V1\n",
		n, base, mlii[0], sum[0], v1[0], sum[1])
	if err := os.WriteFile(filepath.Join(dir, "rec1.hea"), []byte(hea), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rec1.dat"), dat, 0o600); err != nil {
		t.Fatal(err)
	}
	return mlii, v1
}

func collect(t *testing.T, path, subject string) ([]reading.Reading, []string) {
	t.Helper()
	reg, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	p := reading.NewParser(reg)
	var rs []reading.Reading
	var origins []string
	err = wfdbRecords(path, subject, func(raw []byte, origin string) error {
		r, errs := p.Parse(raw)
		if errs != nil {
			return fmt.Errorf("%s: reading rejected: %v", origin, errs)
		}
		rs, origins = append(rs, r), append(origins, origin)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rs, origins
}

func TestWFDBRecords(t *testing.T) {
	dir := t.TempDir()
	mlii, v1 := writeRecord(t, dir, "10:30:15.5 23/11/2025", 2500)
	rs, origins := collect(t, filepath.Join(dir, "rec1.hea"), "")
	// 2500 samples at 100 Hz in 10 s readings: 1000 + 1000 + 500 per signal.
	if len(rs) != 6 {
		t.Fatalf("%d readings, want 6", len(rs))
	}
	start := time.Date(2025, 11, 23, 10, 30, 15, 500e6, time.UTC)
	for i, r := range rs {
		sig, k := i/3, i%3
		wantDev := []string{"rec1-MLII", "rec1-V1"}[sig]
		if r.Kind != "ecg" || r.Subject != "rec1" || r.Device != wantDev || r.Values["fs"] != 100 ||
			!r.Time.Equal(start.Add(time.Duration(k)*10*time.Second)) || r.ID != fmt.Sprintf("wfdb:rec1:rec1:%d:%d", sig, k*1000) {
			t.Errorf("reading %d: %s %s %s %v %v %s", i, r.Kind, r.Subject, r.Device, r.Values, r.Time, r.ID)
		}
		if len(r.Samples) != []int{1000, 1000, 500}[k] {
			t.Errorf("reading %d: %d samples", i, len(r.Samples))
		}
		if !strings.HasPrefix(origins[i], "rec1.hea:signal ") {
			t.Errorf("origin %q", origins[i])
		}
	}
	// Physical values: MLII (adc)/200 mV; V1 (adc-10)/2 uV = /2000 mV.
	if got, want := rs[1].Samples[7], float64(mlii[1007])/200; got != want {
		t.Errorf("MLII sample 1007 = %v mV, want %v", got, want)
	}
	if got, want := rs[5].Samples[3], float64(v1[2003]-10)/2/1000; got != want {
		t.Errorf("V1 sample 2003 = %v mV, want %v", got, want)
	}
	// With a subject given, and again: the same ids (so a second import is all duplicates).
	again, _ := collect(t, filepath.Join(dir, "rec1.hea"), "patient-7")
	if again[0].Subject != "patient-7" || again[0].ID != "wfdb:patient-7:rec1:0:0" {
		t.Errorf("subject override: %s %s", again[0].Subject, again[0].ID)
	}
}

func TestWFDBRecordErrors(t *testing.T) {
	for _, tc := range []struct{ base, units, want string }{
		{"10:30:00 31/02/2025", "mV", "base date"},
		{"10:x:00 01/02/2025", "mV", "base time"},
		{"", "mmHg", `units "mmHg"`},
	} {
		dir := t.TempDir()
		writeRecord(t, dir, tc.base, 10)
		if tc.units != "mV" {
			hea, _ := os.ReadFile(filepath.Join(dir, "rec1.hea"))
			os.WriteFile(filepath.Join(dir, "rec1.hea"), []byte(strings.Replace(string(hea), "200/mV", "200/"+tc.units, 1)), 0o600)
		}
		err := wfdbRecords(filepath.Join(dir, "rec1.hea"), "", func([]byte, string) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %s: got %v, want %q", tc.base, tc.units, err, tc.want)
		}
	}
	// No base date: the header file's modification time.
	dir := t.TempDir()
	writeRecord(t, dir, "", 10)
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(dir, "rec1.hea"), mtime, mtime)
	rs, _ := collect(t, filepath.Join(dir, "rec1.hea"), "")
	if !rs[0].Time.Equal(mtime) {
		t.Errorf("start %v, want the header's modification time %v", rs[0].Time, mtime)
	}
}

func TestWFDBRealRecord(t *testing.T) {
	path := "../../../shared/data/mitdb-ds1/101.hea"
	if _, err := os.Stat(path); err != nil {
		t.Skipf("MIT-BIH data not found at %s (needs ../shared/data beside the checkout): %v", path, err)
	}
	rs, _ := collect(t, path, "")
	// 650,000 samples of two signals at 360 Hz in readings of 3600.
	if len(rs) != 2*181 {
		t.Fatalf("%d readings, want 362", len(rs))
	}
	if rs[0].Device != "101-MLII" || rs[181].Device != "101-V1" || len(rs[180].Samples) != 650000-180*3600 {
		t.Errorf("devices %s %s, last reading %d samples", rs[0].Device, rs[181].Device, len(rs[180].Samples))
	}
	// Record 101 begins with MLII -0.345 mV, V1 -0.16 mV: the header's initial values 955 and
	// 992 against ADC zero 1024 at 200 adu/mV.
	if rs[0].Samples[0] != -0.345 || rs[181].Samples[0] != -0.16 {
		t.Errorf("first samples %v mV, %v mV", rs[0].Samples[0], rs[181].Samples[0])
	}
}

func FuzzWFDBStart(f *testing.F) {
	f.Add("10:30:15.5", "23/11/2025")
	f.Add("15", "01/01/2000")
	f.Add("1:2:3:4", "1/1/1")
	f.Add("-1:00", "31/12/1999")
	f.Add("1e300", "01/01/2000")
	f.Add("NaN", "01/01/2000")
	f.Fuzz(func(t *testing.T, baseTime, baseDate string) {
		if baseDate == "" {
			return // the file's modification time
		}
		h := &wfdb.Header{BaseTime: baseTime, BaseDate: baseDate}
		st, err := wfdbStart(h, "")
		if err != nil {
			return
		}
		d, _ := time.Parse("02/01/2006", baseDate)
		if st.Before(d) || st.Location() != time.UTC {
			t.Fatalf("start %v before the base date %v", st, d)
		}
	})
}
