package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/token"
)

// appleDTD is the start of the internal DTD of an Apple Health export.xml (abridged).
const appleDTD = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 14 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  device        CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!-- Note: Any Records that appear as children of a correlation also appear as top-level records in this document. -->
<!ELEMENT Correlation ((MetadataEntry|Record)*)>
]>
`

const (
	e2eWatch = `&lt;&lt;HKDevice: 0x283f0d0e0&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,1, software:9.1&gt;`
	e2ePhone = `&lt;&lt;HKDevice: 0x283f0d1a0&gt;, name:iPhone, manufacturer:Apple Inc., model:iPhone, hardware:iPhone14,2, software:16.1&gt;`
)

// appleExport is what appleExportXML wrote: how many readings of each kind it holds.
type appleExport struct {
	xml    string
	counts map[string]int // trusted table → readings
	days   []string       // UTC days with heart rate, e.g. 2026-12-01
}

// appleExportXML builds an export.xml of the last `days` days ending at end, written in a
// -0400 zone: heart rate every 5 minutes (watch), steps every 10 minutes from the phone and
// the watch for the same intervals, a night of sleep stages (with InBed) per day, SpO2 once
// a day, and one blood-pressure measurement per day as a correlation whose children also
// appear at the top level; the last one is a hypertensive crisis (185/121) at end.
func appleExportXML(end time.Time, days int) appleExport {
	zone := time.FixedZone("", -4*3600)
	ts := func(t time.Time) string { return t.In(zone).Format("2006-01-02 15:04:05 -0700") }
	var b strings.Builder
	b.WriteString(appleDTD + `<HealthData locale="en_US">
 <ExportDate value="` + ts(end) + `"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1980-01-01"/>
`)
	ex := appleExport{counts: map[string]int{}}
	start := end.Add(-time.Duration(days) * 24 * time.Hour).Truncate(time.Hour)
	for t := start; t.Before(end.Add(-time.Hour)); t = t.Add(5 * time.Minute) {
		fmt.Fprintf(&b, ` <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Alice’s Apple Watch" device="%s" unit="count/min" startDate="%s" endDate="%s" value="%d">
  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>
 </Record>
`, e2eWatch, ts(t), ts(t), 60+t.Minute()/5)
		ex.counts["heart_rate"]++
		if day := t.UTC().Format("2006-01-02"); len(ex.days) == 0 || ex.days[len(ex.days)-1] != day {
			ex.days = append(ex.days, day)
		}
	}
	for t := start; t.Before(end.Add(-time.Hour)); t = t.Add(10 * time.Minute) {
		for _, dev := range []struct{ name, attr string }{{"Alice’s iPhone", e2ePhone}, {"Alice’s Apple Watch", e2eWatch}} {
			fmt.Fprintf(&b, ` <Record type="HKQuantityTypeIdentifierStepCount" sourceName="%s" device="%s" unit="count" startDate="%s" endDate="%s" value="%d"/>
`, dev.name, dev.attr, ts(t), ts(t.Add(10*time.Minute)), 100+len(dev.name))
			ex.counts["steps"]++
		}
	}
	var bp []time.Time
	for d := 0; d < days; d++ {
		night := start.Add(time.Duration(d)*24*time.Hour + 2*time.Hour)
		fmt.Fprintf(&b, ` <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alice’s Apple Watch" device="%s" startDate="%s" endDate="%s" value="HKCategoryValueSleepAnalysisInBed"/>
`, e2eWatch, ts(night), ts(night.Add(7*time.Hour)))
		at := night
		for i, stage := range []string{"AsleepCore", "AsleepDeep", "AsleepREM", "Awake", "AsleepCore"} {
			dur := time.Duration(60+i*10) * time.Minute
			fmt.Fprintf(&b, ` <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Alice’s Apple Watch" device="%s" startDate="%s" endDate="%s" value="HKCategoryValueSleepAnalysis%s"/>
`, e2eWatch, ts(at), ts(at.Add(dur)), stage)
			at = at.Add(dur)
			ex.counts["sleep"]++
		}
		fmt.Fprintf(&b, ` <Record type="HKQuantityTypeIdentifierOxygenSaturation" sourceName="Alice’s Apple Watch" device="%s" unit="%%" startDate="%s" endDate="%s" value="0.96"/>
`, e2eWatch, ts(night), ts(night))
		ex.counts["spo2"]++
		bp = append(bp, night.Add(8*time.Hour))
	}
	bp = append(bp, end.Add(-time.Minute))
	for i, t := range bp {
		sys, dia := 120+i%40, 80
		if i == len(bp)-1 {
			sys, dia = 185, 121
		}
		fmt.Fprintf(&b, ` <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" sourceName="OMRON connect" unit="mmHg" startDate="%s" endDate="%s" value="%d"/>
 <Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" sourceName="OMRON connect" unit="mmHg" startDate="%s" endDate="%s" value="%d"/>
`, ts(t), ts(t), sys, ts(t), ts(t), dia)
		ex.counts["blood_pressure"]++
	}
	for i, t := range bp {
		sys, dia := 120+i%40, 80
		if i == len(bp)-1 {
			sys, dia = 185, 121
		}
		fmt.Fprintf(&b, ` <Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="OMRON connect" startDate="%s" endDate="%s">
  <Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" sourceName="OMRON connect" unit="mmHg" startDate="%s" endDate="%s" value="%d"/>
  <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" sourceName="OMRON connect" unit="mmHg" startDate="%s" endDate="%s" value="%d"/>
 </Correlation>
`, ts(t), ts(t), ts(t), ts(t), dia, ts(t), ts(t), sys)
	}
	b.WriteString("</HealthData>\n")
	ex.xml = b.String()
	return ex
}

// ecgDecimalComma is an electrocardiogram file of a German-locale export (samples in µV with
// a decimal comma).
func ecgDecimalComma(at time.Time, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Name,Alice Example\nAufnahmedatum,%s\nKlassifizierung,Sinusrhythmus\nGerät,\"Watch6,1\"\nAbtastrate,512 Hertz\nAbleitung,Ableitung I\nEinheit,µV\n\n",
		at.In(time.FixedZone("", 3600)).Format("2006-01-02 15:04:05 -0700"))
	for i := range n {
		fmt.Fprintf(&b, "%d,%03d\n", (i%200)-100, i%1000)
	}
	return b.String()
}

func writeZipFile(t testing.TB, p string, files map[string]string) {
	t.Helper()
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
}

var importLineRe = regexp.MustCompile(`: (\d+) accepted, (\d+) duplicates, (\d+) rejected`)

func importCounts(t *testing.T, out string) (accepted, dups, rejected int) {
	t.Helper()
	m := importLineRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no result line in:\n%s", out)
	}
	a, _ := strconv.Atoi(m[1])
	d, _ := strconv.Atoi(m[2])
	r, _ := strconv.Atoi(m[3])
	return a, d, r
}

// TestImportAppleHealthEndToEnd imports an Apple Health export.zip (localised names, DTD,
// offsets, a correlation with its top-level copies, overlapping devices, a decimal-comma ECG)
// with `pulselake ingest` into a running serve: the readings reach the trusted tables once
// each, the crisis blood pressure fires the shipped rule, a second import stores nothing,
// and the daily-health example pipeline builds its table from the imported rows.
func TestImportAppleHealthEndToEnd(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	srv := startServe(t, bin, dir, addr)
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
	base := "http://" + addr

	end := time.Now().UTC().Truncate(time.Second)
	ex := appleExportXML(end, 3)
	zipPath := filepath.Join(t.TempDir(), "Export.zip")
	writeZipFile(t, zipPath, map[string]string{
		"Apple Health-Export/Exportieren.xml":                        ex.xml,
		"Apple Health-Export/export_cda.xml":                         `<?xml version="1.0"?><ClinicalDocument/>`,
		"Apple Health-Export/Elektrokardiogramme/EKG_2026-12-01.csv": ecgDecimalComma(end.Add(-2*time.Hour), 15360),
	})
	ex.counts["ecg"] = 1
	total := 0
	for _, n := range ex.counts {
		total += n
	}

	out, code := runBin(t, "ingest", "--data", dir, "--subject", "alice", zipPath)
	if code != 0 {
		t.Fatalf("pulselake ingest exited %d:\n%s", code, out)
	}
	if a, d, r := importCounts(t, out); a != total || d != 0 || r != 0 {
		t.Fatalf("first import: %d accepted, %d duplicates, %d rejected; want %d, 0, 0:\n%s", a, d, r, total, out)
	}

	for table, want := range ex.counts {
		var got [][]any
		waitUntil(t, 60*time.Second, fmt.Sprintf("trusted.%s holds %d rows", table, want), func() bool {
			got = apiQuery(t, base, fmt.Sprintf("SELECT count(*), count(DISTINCT id), min(source), max(source), min(subject) FROM trusted.%s", table))
			return len(got) == 1 && got[0][0] == float64(want)
		})
		if got[0][1] != float64(want) || got[0][2] != "apple-health" || got[0][3] != "apple-health" || got[0][4] != "alice" {
			t.Errorf("trusted.%s: %v", table, got[0])
		}
	}
	// Overlapping phone and watch steps are two devices' rows, never summed into one.
	rows := apiQuery(t, base, "SELECT device, count(*) FROM trusted.steps GROUP BY device ORDER BY device")
	if len(rows) != 2 || rows[0][0] != "Alices-Apple-Watch.Watch6-1" || rows[1][0] != "Alices-iPhone.iPhone14-2" || rows[0][1] != rows[1][1] {
		t.Errorf("steps by device: %v", rows)
	}
	rows = apiQuery(t, base, "SELECT systolic, diastolic FROM trusted.blood_pressure ORDER BY time DESC LIMIT 1")
	if len(rows) != 1 || rows[0][0] != float64(185) || rows[0][1] != float64(121) {
		t.Errorf("latest blood pressure: %v", rows)
	}
	rows = apiQuery(t, base, "SELECT fs, len(samples), round(samples[2], 6) FROM trusted.ecg")
	if len(rows) != 1 || rows[0][0] != float64(512) || rows[0][1] != float64(15360) || rows[0][2] != -0.099001 {
		t.Errorf("ecg: %v (want 512 Hz, 15360 samples, the second -0.099001 mV from \"-99,001\" µV)", rows)
	}
	waitUntil(t, 30*time.Second, "hypertensive-crisis fires for alice", func() bool {
		for _, a := range firingAlerts(t, base) {
			if a.Rule == "hypertensive-crisis" && a.Subject == "alice" {
				return true
			}
		}
		return false
	})

	out, code = runBin(t, "ingest", "--data", dir, "--subject", "alice", zipPath)
	if code != 0 {
		t.Fatalf("second pulselake ingest exited %d:\n%s", code, out)
	}
	if a, d, r := importCounts(t, out); a != 0 || d != total || r != 0 {
		t.Errorf("second import: %d accepted, %d duplicates, %d rejected; want 0, %d, 0", a, d, r, total)
	}

	// The daily-health example pipeline over the imported rows (serve stopped: the CLI owns
	// the directory).
	srv.Process.Signal(os.Interrupt)
	srv.Wait()
	diary := filepath.Join(t.TempDir(), "diary")
	os.MkdirAll(diary, 0o755)
	os.WriteFile(filepath.Join(diary, "diary.csv"), []byte("subject,date,worked\nalice,"+ex.days[1]+",true\n"), 0o644)
	if out, code := runBin(t, "catalog", "crawl", "--data", dir, "--source", diary, "--zone", "landing", "--table", "diary"); code != 0 {
		t.Fatalf("crawl exited %d: %s", code, out)
	}
	if out, code := runBin(t, "pipeline", "run", "--data", dir, "--dir", "../examples/daily-health/pipeline"); code != 0 {
		t.Fatalf("pipeline run exited %d:\n%s", code, out)
	}
	out, code = runBin(t, "query", "--data", dir, "--format", "csv",
		"SELECT day, main_sleep_minutes, steps > 0 AS has_steps, avg_heart_rate > 60 AS has_hr, worked FROM curated.daily_health WHERE subject = 'alice' AND day = DATE '"+ex.days[1]+"'")
	// One night: core 60 + deep 70 + REM 80 + core 100 minutes asleep (awake 90 not counted).
	if code != 0 || !regexp.MustCompile(`(?m)^`+ex.days[1]+`(T00:00:00Z)?,310(\.0)?,true,true,true$`).MatchString(out) {
		t.Errorf("curated.daily_health for %s: exit %d:\n%s", ex.days[1], code, out)
	}
}

// TestImportKilledAndRepeated kills `pulselake ingest` (SIGKILL) in the middle of a large
// export, imports it again, and checks that the lake holds every reading exactly once.
func TestImportKilledAndRepeated(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ex := appleExportXML(time.Now().UTC().Add(-48*time.Hour), 240) // 240 days: ≈ 70,000 heart-rate readings
	xmlPath := filepath.Join(t.TempDir(), "export.xml")
	if err := os.WriteFile(xmlPath, []byte(ex.xml), 0o644); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range ex.counts {
		total += n
	}

	cmd := exec.Command(bin, "ingest", "--data", dir, "--subject", "alice", "--format", "apple-health", xmlPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once the stream holds some batches (its file store grows), well before the end:
	// the whole export takes about 3.5 MB of stream (zstd frames of envelopes of 5,000).
	streamBytes := func() int64 {
		var n int64
		filepath.Walk(filepath.Join(dir, "stream"), func(_ string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				n += fi.Size()
			}
			return nil
		})
		return n
	}
	waitUntil(t, 120*time.Second, "the import stored its first batches", func() bool { return streamBytes() > 1<<20 })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	t.Logf("killed with %d bytes of stream", streamBytes())
	if strings.Contains(out.String(), "accepted") {
		t.Skipf("the import finished before it was killed (machine too fast for %d readings):\n%s", total, out.String())
	}

	out2, code := runBin(t, "ingest", "--data", dir, "--subject", "alice", "--format", "apple-health", xmlPath)
	if code != 0 {
		t.Fatalf("second import exited %d:\n%s", code, out2)
	}
	a, d, r := importCounts(t, out2)
	if a+d != total || d == 0 || a == 0 || r != 0 {
		t.Fatalf("re-import after the kill: %d accepted, %d duplicates, %d rejected; want both parts > 0 adding to %d", a, d, r, total)
	}
	t.Logf("killed import stored %d readings; the re-import added %d", d, a)

	// serve writes the stream to the lake: every reading once.
	addr := freeAddr(t)
	srv := startServe(t, bin, dir, addr)
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
	want := ex.counts["heart_rate"]
	var rows [][]any
	waitUntil(t, 120*time.Second, fmt.Sprintf("trusted.heart_rate holds %d rows", want), func() bool {
		rows = apiQuery(t, "http://"+addr, "SELECT count(*), count(DISTINCT id) FROM trusted.heart_rate")
		return len(rows) == 1 && rows[0][0].(float64) >= float64(want)
	})
	if rows[0][0] != float64(want) || rows[0][1] != float64(want) {
		t.Errorf("trusted.heart_rate: %v rows (distinct ids %v), want %d", rows[0][0], rows[0][1], want)
	}
}

// takeoutZip builds a Google Takeout archive of Fitbit data in the legacy layout with a
// profile naming the account's time zone.
func takeoutZip(t testing.TB, p string, day time.Time) int {
	var hr strings.Builder
	hr.WriteString("[")
	n := 0
	for t := day; t.Before(day.Add(2 * time.Hour)); t = t.Add(15 * time.Second) {
		if n > 0 {
			hr.WriteString(",")
		}
		fmt.Fprintf(&hr, `{"dateTime":"%s","value":{"bpm":%d,"confidence":2}}`, t.Format("01/02/06 15:04:05"), 60+n%40)
		n++
	}
	hr.WriteString("]")
	date := day.Format("2006-01-02")
	writeZipFile(t, p, map[string]string{
		"Takeout/Fitbit/Global Export Data/heart_rate-" + date + ".json": hr.String(),
		"Takeout/Fitbit/Global Export Data/steps-" + date + ".json":      `[{"dateTime":"` + day.Format("01/02/06 15:04:05") + `","value":"42"}]`,
		"Takeout/Fitbit/Your Profile/Profile.csv":                        "id,timezone\nX,Europe/Berlin\n",
	})
	return n + 1
}

// TestImportUploadOverHTTP uploads a Takeout archive to POST /v1/imports, follows its
// progress to done, finds the rows, and checks the limits and who may see what.
func TestImportUploadOverHTTP(t *testing.T) {
	cfg := config.Default()
	cfg.Imports.MaxBytes = 1 << 20
	srv := startServerWith(t, t.TempDir(), cfg)
	defer srv.stop()
	ctx := context.Background()
	bobTok, _, _ := srv.Tokens.Create(ctx, token.ScopeIngest, "bob", "bob's phone")
	carolTok, _, _ := srv.Tokens.Create(ctx, token.ScopeIngest, "carol", "carol's phone")

	archive := filepath.Join(t.TempDir(), "takeout-001.zip")
	n := takeoutZip(t, archive, time.Date(2016, 4, 12, 7, 0, 0, 0, time.UTC))
	body, _ := os.ReadFile(archive)

	upload := func(tok, query string, body []byte) (int, map[string]any) {
		req, _ := http.NewRequest("POST", srv.HTTPURL+"/v1/imports"+query, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		data, _ := io.ReadAll(resp.Body)
		json.Unmarshal(data, &m)
		return resp.StatusCode, m
	}
	status := func(tok, id string) (int, map[string]any) {
		var m map[string]any
		code := getJSON(t, srv.HTTPURL+"/v1/imports/"+id, "Bearer "+tok, &m)
		return code, m
	}
	errCode := func(m map[string]any) string {
		e, _ := m["error"].(map[string]any)
		c, _ := e["code"].(string)
		return c
	}

	for _, tc := range []struct {
		name, tok, query string
		body             []byte
		code             int
		errCode          string
	}{
		{"admin without a subject", adminToken, "", body, 400, "subject-required"},
		{"bound token for another subject", bobTok, "?subject=carol", body, 403, "subject-not-allowed"},
		{"unknown format name", adminToken, "?subject=bob&format=fhir2", body, 400, "unknown-format"},
		{"not an export", adminToken, "?subject=bob", []byte("PK not really a zip"), 422, "unknown-export-format"},
		{"above imports.max_bytes", adminToken, "?subject=bob", bytes.Repeat([]byte("x"), 1<<20+1), 413, "body-too-large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, m := upload(tc.tok, tc.query, tc.body)
			if code != tc.code || errCode(m) != tc.errCode {
				t.Errorf("got %d %v, want %d %s", code, m, tc.code, tc.errCode)
			}
		})
	}

	code, m := upload(bobTok, "", body)
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, m)
	}
	id, _ := m["id"].(string)
	var st map[string]any
	waitUntil(t, 60*time.Second, "the import is done", func() bool {
		_, st = status(bobTok, id)
		return st["state"] == "done" || st["state"] == "failed"
	})
	if st["state"] != "done" || st["format"] != "google-takeout" || st["subject"] != "bob" || st["accepted"] != float64(n) ||
		st["records"] != float64(n) || st["bytes"] != st["bytes_total"] || st["bytes_total"] != float64(len(body)) || st["finished"] == nil {
		t.Errorf("status %v; want done, google-takeout, bob, %d accepted, all %d bytes", st, n, len(body))
	}
	if code, _ := status(carolTok, id); code != http.StatusNotFound {
		t.Errorf("another subject's token sees the import: %d", code)
	}
	if code, _ := status(adminToken, id); code != http.StatusOK {
		t.Errorf("admin token: %d", code)
	}
	if left, _ := filepath.Glob(filepath.Join(srv.dir, "imports", "upload-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	var rows [][]any
	waitUntil(t, 60*time.Second, "the imported heart rate is in the lake", func() bool {
		rows = apiQuery(t, srv.HTTPURL, "SELECT count(*), min(time), min(source) FROM trusted.heart_rate WHERE subject = 'bob'")
		return len(rows) == 1 && rows[0][0] == float64(n-1)
	})
	// Legacy Fitbit times are local to the Profile.csv zone: 07:00 in Berlin (CEST) is 05:00Z.
	if !strings.HasPrefix(fmt.Sprint(rows[0][1]), "2016-04-12T05:00:00") || rows[0][2] != "google-takeout" {
		t.Errorf("first heart rate %v from %v, want 2016-04-12T05:00:00Z from google-takeout", rows[0][1], rows[0][2])
	}

	// The same archive again: nothing stored twice.
	code, m = upload(adminToken, "?subject=bob&format=google-takeout", body)
	if code != http.StatusAccepted {
		t.Fatalf("second upload: %d %v", code, m)
	}
	waitUntil(t, 60*time.Second, "the second import is done", func() bool {
		_, st = status(adminToken, m["id"].(string))
		return st["state"] == "done"
	})
	if st["accepted"] != float64(0) || st["duplicates"] != float64(n) {
		t.Errorf("second import: %v, want 0 accepted, %d duplicates", st, n)
	}
}
