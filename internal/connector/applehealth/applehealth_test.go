package applehealth

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// dtd is the start of the internal DTD Apple writes at the top of export.xml (abridged; the
// real one is about 200 lines of the same declarations).
const dtd = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 14 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord|Audiogram|VisionPrescription)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate
  value CDATA #REQUIRED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!-- Note: Any Records that appear as children of a correlation also appear as top-level records in this document. -->
<!ELEMENT Correlation ((MetadataEntry|Record)*)>
<!ATTLIST Correlation
  type          CDATA #REQUIRED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
]>
`

const watchDev = `&lt;&lt;HKDevice: 0x283f0d0e0&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,1, software:9.1&gt;`
const phoneDev = `&lt;&lt;HKDevice: 0x283f0d1a0&gt;, name:iPhone, manufacturer:Apple Inc., model:iPhone, hardware:iPhone14,2, software:16.1&gt;`

// exportXML is an export.xml with every quirk the reader handles: the DTD, dates with
// offsets, a blood-pressure correlation whose children also appear at the top level (before
// it, as Apple writes them), a top-level pair with no correlation, overlapping iPhone and
// Watch step samples, SpO2 as a fraction, sleep stages with InBed, metadata children and
// types that are not imported.
var exportXML = dtd + `<HealthData locale="de_DE">
 <ExportDate value="2026-03-20 08:00:00 +0100"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1980-01-01" HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"/>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Alice’s Apple Watch" sourceVersion="9.1" device="` + watchDev + `" unit="count/min" creationDate="2026-03-14 06:13:00 -0400" startDate="2026-03-14 06:12:33 -0400" endDate="2026-03-14 06:12:33 -0400" value="72">
  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>
 </Record>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Alice’s Apple Watch" device="` + watchDev + `" unit="count/min" startDate="2026-03-14 12:00:00 +0100" endDate="2026-03-14 12:00:00 +0100" value="64.5"/>
 <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" sourceName="OMRON connect" unit="mmHg" startDate="2026-03-14 07:00:00 -0400" endDate="2026-03-14 07:00:00 -0400" value="142"/>
 <Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" sourceName="OMRON connect" unit="mmHg" startDate="2026-03-14 07:00:00 -0400" endDate="2026-03-14 07:00:00 -0400" value="91"/>
 <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" sourceName="Health" unit="mmHg" startDate="2026-03-15 07:00:00 -0400" endDate="2026-03-15 07:00:00 -0400" value="185"/>
 <Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" sourceName="Health" unit="mmHg" startDate="2026-03-15 07:00:00 -0400" endDate="2026-03-15 07:00:00 -0400" value="121"/>
 <Record type="HKQuantityTypeIdentifierOxygenSaturation" sourceName="Alice’s Apple Watch" device="` + watchDev + `" unit="%" startDate="2026-03-14 03:00:00 -0400" endDate="2026-03-14 03:00:00 -0400" value="0.97"/>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Alice’s iPhone" device="` + phoneDev + `" unit="count" startDate="2026-03-14 08:00:00 -0400" endDate="2026-03-14 08:10:00 -0400" value="800"/>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Alice’s Apple Watch" device="` + watchDev + `" unit="count" startDate="2026-03-14 08:00:00 -0400" endDate="2026-03-14 08:10:00 -0400" value="812"/>
 <Record type="HKQuantityTypeIdentifierBodyMass" sourceName="Health" unit="kg" startDate="2026-03-14 08:00:00 -0400" endDate="2026-03-14 08:00:00 -0400" value="61"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alice’s Apple Watch" device="` + watchDev + `" startDate="2026-03-13 23:00:00 -0400" endDate="2026-03-14 06:30:00 -0400" value="HKCategoryValueSleepAnalysisInBed"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alice’s Apple Watch" device="` + watchDev + `" startDate="2026-03-13 23:10:00 -0400" endDate="2026-03-14 00:10:00 -0400" value="HKCategoryValueSleepAnalysisAsleepCore"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alice’s Apple Watch" device="` + watchDev + `" startDate="2026-03-14 00:10:00 -0400" endDate="2026-03-14 00:40:00 -0400" value="HKCategoryValueSleepAnalysisAsleepDeep"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alice’s Apple Watch" device="` + watchDev + `" startDate="2026-03-14 00:40:00 -0400" endDate="2026-03-14 01:00:00 -0400" value="HKCategoryValueSleepAnalysisAsleepREM"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alice’s Apple Watch" device="` + watchDev + `" startDate="2026-03-14 01:00:00 -0400" endDate="2026-03-14 01:05:00 -0400" value="HKCategoryValueSleepAnalysisAwake"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="AutoSleep" startDate="2026-03-14 01:05:00 -0400" endDate="2026-03-14 02:05:00 -0400" value="HKCategoryValueSleepAnalysisAsleep"/>
 <Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="OMRON connect" creationDate="2026-03-14 07:01:00 -0400" startDate="2026-03-14 07:00:00 -0400" endDate="2026-03-14 07:00:00 -0400">
  <MetadataEntry key="HKWasUserEntered" value="0"/>
  <Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" sourceName="OMRON connect" unit="mmHg" startDate="2026-03-14 07:00:00 -0400" endDate="2026-03-14 07:00:00 -0400" value="91"/>
  <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" sourceName="OMRON connect" unit="mmHg" startDate="2026-03-14 07:00:00 -0400" endDate="2026-03-14 07:00:00 -0400" value="142"/>
 </Correlation>
 <Correlation type="HKCorrelationTypeIdentifierFood" sourceName="MyFitnessPal" startDate="2026-03-14 12:00:00 -0400" endDate="2026-03-14 12:00:00 -0400"/>
 <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="30" sourceName="Alice’s Apple Watch" startDate="2026-03-14 17:00:00 -0400" endDate="2026-03-14 17:30:00 -0400"/>
 <ActivitySummary dateComponents="2026-03-14" activeEnergyBurned="400"/>
</HealthData>
`

// ecgCSV is an electrocardiogram file as a German-locale export writes it: localised keys,
// a decimal comma, quoted values.
const ecgCSVDecimalComma = "Name,Alice Example\nGeburtsdatum,\"01.01.1980\"\nAufnahmedatum,2026-03-14 09:30:00 +0100\nKlassifizierung,Sinusrhythmus\nGerät,\"Watch6,1\"\nAbtastrate,\"512 Hertz\"\nAbleitung,Ableitung I\nEinheit,µV\n\n-28,614\n\"-29,102\"\n1250,5\n"

const ecgCSVEnglish = "Name,Alice Example\nDate of Birth,\"Jan 1, 1980\"\nRecorded Date,2026-03-14 06:12:33 -0400\nClassification,Sinus Rhythm\nSymptoms,\nSoftware Version,2\nDevice,\"Watch6,1\"\nSample Rate,512 hertz\nLead,Lead I\nUnit,µV\n\n\n-28.614\n-29.102\n"

type wireReading struct {
	ID      string         `json:"id"`
	Subject string         `json:"subject"`
	Device  string         `json:"device"`
	Kind    string         `json:"kind"`
	Time    string         `json:"time"`
	Values  map[string]any `json:"values"`
}

func collect(t *testing.T, raws *[]wireReading) Emit {
	return func(raw []byte, origin string) error {
		var r wireReading
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("emitted invalid JSON %s: %v", raw, err)
		}
		if origin == "" {
			t.Errorf("reading %s has no origin", raw)
		}
		*raws = append(*raws, r)
		return nil
	}
}

func TestReadXML(t *testing.T) {
	var got []wireReading
	st, err := ReadXML(context.Background(), strings.NewReader(exportXML), "export.xml", Options{Subject: "alice"}, collect(t, &got))
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ kind, device, time string }
	byKey := map[key]wireReading{}
	for _, r := range got {
		if r.Subject != "alice" || !strings.HasPrefix(r.ID, "ah-") {
			t.Errorf("reading %+v: want subject alice and an ah- id", r)
		}
		k := key{r.Kind, r.Device, r.Time}
		if _, dup := byKey[k]; dup {
			t.Errorf("reading %v emitted twice", k)
		}
		byKey[k] = r
	}
	const watch, phone = "Alices-Apple-Watch.Watch6-1", "Alices-iPhone.iPhone14-2"
	for _, tc := range []struct {
		name   string
		k      key
		values map[string]any
	}{
		{"heart rate, offset -0400", key{"heart_rate", watch, "2026-03-14T10:12:33Z"}, map[string]any{"bpm": 72.0}},
		{"heart rate, offset +0100", key{"heart_rate", watch, "2026-03-14T11:00:00Z"}, map[string]any{"bpm": 64.5}},
		{"correlation", key{"blood_pressure", "OMRON-connect", "2026-03-14T11:00:00Z"}, map[string]any{"systolic": 142.0, "diastolic": 91.0}},
		{"top-level pair with no correlation", key{"blood_pressure", "Health", "2026-03-15T11:00:00Z"}, map[string]any{"systolic": 185.0, "diastolic": 121.0}},
		{"spo2 fraction to percent", key{"spo2", watch, "2026-03-14T07:00:00Z"}, map[string]any{"percent": 97.0}},
		{"steps of the phone", key{"steps", phone, "2026-03-14T12:00:00Z"}, map[string]any{"count": 800.0, "interval_s": 600.0}},
		{"steps of the watch, same interval", key{"steps", watch, "2026-03-14T12:00:00Z"}, map[string]any{"count": 812.0, "interval_s": 600.0}},
		{"sleep core", key{"sleep", watch, "2026-03-14T03:10:00Z"}, map[string]any{"stage": "light", "duration_s": 3600.0}},
		{"sleep deep", key{"sleep", watch, "2026-03-14T04:10:00Z"}, map[string]any{"stage": "deep", "duration_s": 1800.0}},
		{"sleep rem", key{"sleep", watch, "2026-03-14T04:40:00Z"}, map[string]any{"stage": "rem", "duration_s": 1200.0}},
		{"sleep awake", key{"sleep", watch, "2026-03-14T05:00:00Z"}, map[string]any{"stage": "wake", "duration_s": 300.0}},
		{"sleep asleep (before iOS 16)", key{"sleep", "AutoSleep", "2026-03-14T05:05:00Z"}, map[string]any{"stage": "asleep", "duration_s": 3600.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := byKey[tc.k]
			if !ok {
				t.Fatalf("no reading %v among %d", tc.k, len(got))
			}
			for name, want := range tc.values {
				if r.Values[name] != want {
					t.Errorf("%s = %v, want %v", name, r.Values[name], want)
				}
			}
		})
	}
	if len(got) != 12 {
		t.Errorf("emitted %d readings, want 12 (InBed, body mass, food, workout and summaries are not imported; BP once each): %+v", len(got), got)
	}
	if st.Merged != 2 {
		t.Errorf("merged %d top-level BP records into their correlation, want 2", st.Merged)
	}
}

// TestStableIDs: the same records read again, or exported again from a phone in another
// time zone (different offsets, another HKDevice address), get the same ids.
func TestStableIDs(t *testing.T) {
	ids := func(doc string) []string {
		var got []wireReading
		if _, err := ReadXML(context.Background(), strings.NewReader(doc), "export.xml", Options{Subject: "alice"}, collect(t, &got)); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range got {
			out = append(out, r.ID)
		}
		return out
	}
	a := ids(exportXML)
	moved := strings.ReplaceAll(exportXML, "2026-03-14 06:12:33 -0400", "2026-03-14 11:12:33 +0100")
	moved = strings.ReplaceAll(moved, "0x283f0d0e0", "0x1111")
	b := ids(moved)
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("ids differ between exports of the same records:\n%v\n%v", a, b)
	}
	other := ids(strings.ReplaceAll(exportXML, `value="72"`, `value="73"`))
	if other[0] == a[0] {
		t.Error("a changed value kept its id")
	}
}

func TestReadECG(t *testing.T) {
	for _, tc := range []struct {
		name, csv, time string
		first, last     float64
		n               int
	}{
		{"decimal comma, German keys", ecgCSVDecimalComma, "2026-03-14T08:30:00Z", -0.028614, 1.2505, 3},
		{"English", ecgCSVEnglish, "2026-03-14T10:12:33Z", -0.028614, -0.029102, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []wireReading
			n, err := ReadECG(strings.NewReader(tc.csv), "ecg.csv", Options{Subject: "alice"}, collect(t, &got))
			if err != nil || n != 1 || len(got) != 1 {
				t.Fatalf("ReadECG = %d, %v; readings %d", n, err, len(got))
			}
			r := got[0]
			samples, _ := r.Values["samples"].([]any)
			if r.Kind != "ecg" || r.Time != tc.time || r.Values["fs"] != 512.0 || r.Device != "Apple-Watch.Watch6-1" || len(samples) != tc.n {
				t.Fatalf("reading %+v", r)
			}
			if first, last := samples[0].(float64), samples[len(samples)-1].(float64); !near(first, tc.first) || !near(last, tc.last) {
				t.Errorf("samples %v..%v mV, want %v..%v", first, last, tc.first, tc.last)
			}
		})
	}
	if _, err := ReadECG(strings.NewReader("a,b,c\n1,2,3\n"), "x.csv", Options{}, func([]byte, string) error { return nil }); err != errNotECG {
		t.Errorf("another CSV: err %v, want errNotECG", err)
	}
	// Values that parse but are no voltage JSON can carry: the file is refused, naming the line.
	lines := strings.Count(ecgCSVEnglish, "\n")
	for _, bad := range []string{"NaN", "-Inf", "+Inf", "-29e102", "4e41"} {
		csv := ecgCSVEnglish + bad + "\n"
		n, err := ReadECG(strings.NewReader(csv), "ecg.csv", Options{Subject: "alice"}, func([]byte, string) error { return nil })
		if want := fmt.Sprintf("line %d: %q is not a finite sample value", lines+1, bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("sample %s: ReadECG = %d, %v; want an error with %q", bad, n, err, want)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }

// buildZip writes an export.zip with localised names: the XML is found by its root element,
// the ECG files by their header; the CDA document beside it is not read.
func buildZip(t testing.TB, dir string, files map[string]string) string {
	p := filepath.Join(dir, "Export.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func TestReadZipLocalised(t *testing.T) {
	dir := t.TempDir()
	p := buildZip(t, dir, map[string]string{
		"apple_health_export/export_cda.xml":                                `<?xml version="1.0"?><ClinicalDocument><component/></ClinicalDocument>`,
		"Apple Health-Export/Exportieren.xml":                               exportXML,
		"Apple Health-Export/Elektrokardiogramme/EKG_2026-03-14.csv":        ecgCSVDecimalComma,
		"Apple Health-Export/Elektrokardiogramme/EKG_2026-03-14_1.csv":      ecgCSVEnglish,
		"Apple Health-Export/workout-routes/route_2026-03-14_5.00pm.gpx":    "<gpx/>",
		"Apple Health-Export/clinical-records/something-unrelated-data.csv": "a,b\n1,2\n",
	})
	if !Detect(p) {
		t.Fatal("Detect: the zip is not recognised")
	}
	var got []wireReading
	var progress int64
	var skipped []string
	st, err := Read(context.Background(), p, Options{Subject: "alice", Progress: func(n int64) { progress = n }, Skipped: func(name, _ string) { skipped = append(skipped, name) }}, collect(t, &got))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if st.ECGs != 2 || len(got) != 14 || len(skipped) != 1 {
		t.Errorf("read %d ECGs, %d readings, skipped %v; want 2, 14, the unrelated CSV", st.ECGs, len(got), skipped)
	}
	if progress < fi.Size()/2 {
		t.Errorf("progress %d of %d bytes", progress, fi.Size())
	}

	// The XML alone.
	xp := filepath.Join(dir, "export.xml")
	os.WriteFile(xp, []byte(exportXML), 0o644)
	if !Detect(xp) {
		t.Error("Detect: export.xml not recognised")
	}
	got = got[:0]
	if _, err := Read(context.Background(), xp, Options{Subject: "alice"}, collect(t, &got)); err != nil || len(got) != 12 {
		t.Errorf("export.xml: %d readings, %v", len(got), err)
	}
	other := buildZip(t, t.TempDir(), map[string]string{"a/b.xml": "<gpx/>"})
	if Detect(other) {
		t.Error("Detect: a zip without HealthData recognised")
	}
	if _, err := Read(context.Background(), other, Options{}, collect(t, &got)); err != ErrNotExport {
		t.Errorf("Read of another zip: %v, want ErrNotExport", err)
	}
}

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"2026-03-14 06:12:33 -0400", "2026-03-14T10:12:33Z"},
		{"2026-03-14 06:12:33 +0530", "2026-03-14T00:42:33Z"},
		{"2026-02-31 06:12:33 +0000", ""},
		{"2026-03-14 06:12:33", ""},
		{"2026-03-14T06:12:33-04:00", ""},
	} {
		got, ok := parseTime(tc.in)
		if tc.want == "" {
			if ok {
				t.Errorf("parseTime(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if !ok || got.UTC().Format("2006-01-02T15:04:05Z") != tc.want {
			t.Errorf("parseTime(%q) = %v, %v; want %s", tc.in, got, ok, tc.want)
		}
	}
}

func FuzzReadXML(f *testing.F) {
	f.Add([]byte(exportXML))
	f.Add([]byte(`<HealthData><Record type="HKQuantityTypeIdentifierHeartRate" startDate="x" endDate="y" value="z"/></HealthData>`))
	f.Add([]byte(`<HealthData><Correlation type="HKCorrelationTypeIdentifierBloodPressure" startDate="2026-03-14 07:00:00 -0400" endDate="2026-03-14 07:00:00 -0400"><Record/></Correlation></HealthData>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A 64 KiB bufio.Reader: the scanner keeps it instead of allocating its own 256 KiB
		// buffer per input, which slows the fuzzing engine to a crawl.
		_, _ = ReadXML(context.Background(), bufio.NewReaderSize(bytes.NewReader(data), 64<<10), "f.xml", Options{Subject: "s"}, func(raw []byte, _ string) error {
			if !json.Valid(raw) {
				t.Fatalf("invalid JSON emitted: %s", raw)
			}
			return nil
		})
	})
}

func FuzzReadECG(f *testing.F) {
	f.Add([]byte(ecgCSVDecimalComma))
	f.Add([]byte(ecgCSVEnglish))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ReadECG(bytes.NewReader(data), "f.csv", Options{Subject: "s"}, func(raw []byte, _ string) error {
			if !json.Valid(raw) {
				t.Fatalf("invalid JSON emitted: %s", raw)
			}
			return nil
		})
	})
}

func BenchmarkReadXML(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(dtd + "<HealthData locale=\"en_US\">\n")
	for i := range 2000 {
		fmt.Fprintf(&sb, ` <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Alice’s Apple Watch" sourceVersion="9.1" device="%s" unit="count/min" creationDate="2026-03-14 06:13:00 -0400" startDate="2026-03-14 06:%02d:%02d -0400" endDate="2026-03-14 06:%02d:%02d -0400" value="%d">
  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>
 </Record>
`, watchDev, i/60%60, i%60, i/60%60, i%60, 60+i%50)
	}
	sb.WriteString("</HealthData>\n")
	doc := sb.String()
	b.SetBytes(int64(len(doc)))
	b.ResetTimer()
	for range b.N {
		if _, err := ReadXML(context.Background(), strings.NewReader(doc), "export.xml", Options{Subject: "bench"}, func([]byte, string) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestIDStable: reading ids never change between versions (an export imported again must
// be recognised as the same readings), whether made by idOf or by the reader's own.
func TestIDStable(t *testing.T) {
	const want = "ah-88bb67ad62423fca3557019087444e38"
	start, end := time.Unix(1773483153, 0), time.Unix(1773483160, 0)
	if got := idOf("alice", typeHeartRate, "Alices-Apple-Watch.Watch6-1", start, end, "72"); got != want {
		t.Errorf("idOf = %s, want %s", got, want)
	}
	x := &xmlReader{o: Options{Subject: "alice"}}
	for range 2 { // the scratch buffers reused
		if got := string(x.idOf(typeHeartRate, "Alices-Apple-Watch.Watch6-1", start, end, "72")); got != want {
			t.Errorf("xmlReader.idOf = %s, want %s", got, want)
		}
	}
}

// TestTypedReadings: with Options.EmitReading, each reading comes typed beside the same
// wire format as without it, and the typed reading, once checked, is what parsing the wire
// format gives; records that cannot be read still come as wire format only.
func TestTypedReadings(t *testing.T) {
	reg, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	p := reading.NewParser(reg)
	type out struct {
		raw, origin string
		typed       bool
	}
	var plain, typed []out
	if _, err := ReadXML(context.Background(), strings.NewReader(exportXML), "export.xml", Options{Subject: "alice"}, func(raw []byte, origin string) error {
		plain = append(plain, out{string(raw), origin, false})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var keep []*reading.Reading
	o := Options{Subject: "alice", EmitReading: func(r *reading.Reading, raw []byte, origin string) error {
		typed = append(typed, out{string(raw), origin, true})
		parsed, errs := p.Parse(raw)
		if errs != nil {
			t.Fatalf("%s: %v", raw, errs)
		}
		if errs := p.Check(r); errs != nil {
			t.Fatalf("typed reading of %s: %v", raw, errs)
		}
		if !reflect.DeepEqual(*r, parsed) {
			t.Errorf("typed reading\n %+v\nparsed from %s\n %+v", *r, raw, parsed)
		}
		keep = append(keep, r)
		return nil
	}}
	if _, err := ReadXML(context.Background(), strings.NewReader(exportXML), "export.xml", o, func(raw []byte, origin string) error {
		typed = append(typed, out{string(raw), origin, false})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(typed) != len(plain) || len(keep) != 12 {
		t.Fatalf("%d records typed (%d readings), %d without", len(typed), len(keep), len(plain))
	}
	for i := range plain {
		if typed[i].raw != plain[i].raw || typed[i].origin != plain[i].origin {
			t.Errorf("record %d: %s at %s, without typed readings %s at %s", i, typed[i].raw, typed[i].origin, plain[i].raw, plain[i].origin)
		}
	}
	// Readings handed out stay as they were (each has its own values).
	for _, r := range keep {
		raw := r.AppendJSON(nil)
		parsed, errs := p.Parse(raw)
		if errs != nil || !reflect.DeepEqual(*r, parsed) {
			t.Errorf("kept reading changed: %s (%v)", raw, errs)
		}
	}
}
