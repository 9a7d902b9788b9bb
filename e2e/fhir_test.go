package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/fhir"
)

// fhirCall sends a request to a FHIR route and decodes the answer, which must be FHIR JSON.
func fhirCall(t *testing.T, method, url, tok string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if body != nil {
		req.Header.Set("Content-Type", fhir.ContentType)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %s", method, url, resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != fhir.ContentType {
		t.Fatalf("%s %s: content type %q, want %s: %s", method, url, ct, fhir.ContentType, data)
	}
	return resp.StatusCode, out
}

// hrObservation is a heart-rate Observation of the vital-signs profile.
func hrObservation(subject, device string, at time.Time, bpm int) map[string]any {
	return map[string]any{
		"resourceType": "Observation", "status": "final",
		"category":          []any{map[string]any{"coding": []any{map[string]any{"system": fhir.SystemCategory, "code": "vital-signs"}}}},
		"code":              map[string]any{"coding": []any{map[string]any{"system": fhir.SystemLOINC, "code": "8867-4"}}},
		"subject":           map[string]any{"reference": "Patient/" + subject},
		"device":            map[string]any{"reference": "Device/" + device},
		"effectiveDateTime": at.UTC().Format(time.RFC3339Nano),
		"valueQuantity":     map[string]any{"value": bpm, "unit": "beats/minute", "system": fhir.SystemUCUM, "code": "/min"},
	}
}

func bundleOf(typ string, resources ...any) []byte {
	var entries []any
	for _, r := range resources {
		entries = append(entries, map[string]any{"resource": r, "request": map[string]any{"method": "POST", "url": "Observation"}})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": typ, "entry": entries})
	return b
}

func specExample(t *testing.T, name string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "internal", "fhir", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var o map[string]any
	if err := json.Unmarshal(data, &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// responseStatuses lists entry.response.status of a transaction-response or batch-response.
func responseStatuses(b map[string]any) []string {
	var out []string
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		resp, _ := e.(map[string]any)["response"].(map[string]any)
		s, _ := resp["status"].(string)
		out = append(out, s)
	}
	return out
}

// expressions lists every issue expression of an OperationOutcome.
func expressions(oo map[string]any) []string {
	var out []string
	issues, _ := oo["issue"].([]any)
	for _, iss := range issues {
		exprs, _ := iss.(map[string]any)["expression"].([]any)
		for _, e := range exprs {
			out = append(out, e.(string))
		}
	}
	return out
}

// TestFHIR drives a separate serve process through the FHIR R4 API: a transaction with
// invalid entries stores nothing, a batch stores its valid entries and quarantines the
// rest, re-posts are duplicates, searches page through the lake, a subject-bound token is
// refused other subjects, and export fhir writes what ingest --format fhir reads back.
func TestFHIR(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, work := t.TempDir(), t.TempDir()
	cfgFile := filepath.Join(work, "pulselake.yaml")
	os.WriteFile(cfgFile, []byte(`lake:
  flush_interval: 1s
kinds:
  - name: body_weight
    loinc: 29463-7
    ucum: kg
    values:
      - {name: kg, unit: kg, min: 0.5, max: 700, required: true}
`), 0o644)
	newToken := func(args ...string) string {
		out, code := runBin(t, append([]string{"token", "create", "--data", dir, "--config", cfgFile}, args...)...)
		if code != 0 {
			t.Fatalf("token create: exit %d: %s", code, out)
		}
		return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	}
	ingestTok := newToken("--scope", "ingest", "--name", "gateway")
	boundTok := newToken("--scope", "read", "--subject", "p-a", "--name", "patient app")
	addr := freeAddr(t)
	cmd := startServeWith(t, bin, dir, addr, "--config", cfgFile)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}
	}
	defer stop()
	base := "http://" + addr + "/fhir/r4"

	// What is served.
	if code, cs := fhirCall(t, "GET", base+"/metadata", "", nil); code != 200 || cs["resourceType"] != "CapabilityStatement" || cs["fhirVersion"] != "4.0.1" {
		t.Fatalf("metadata: %d %v", code, cs)
	}
	// Errors of every kind are OperationOutcomes.
	if code, oo := fhirCall(t, "POST", base, "", bundleOf("batch", hrObservation("p-a", "hr-1", time.Now(), 70))); code != 401 || oo["resourceType"] != "OperationOutcome" {
		t.Fatalf("no token: %d %v", code, oo)
	}
	for _, r := range []struct{ method, path string }{{"GET", "/Patient"}, {"PUT", ""}, {"DELETE", "/Observation/x"}} {
		if code, oo := fhirCall(t, r.method, base+r.path, adminToken, nil); code != 404 || oo["resourceType"] != "OperationOutcome" {
			t.Fatalf("%s %s: %d %v", r.method, r.path, code, oo)
		}
	}

	// A transaction with invalid entries: 400, every problem named, nothing stored.
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	badUnit := hrObservation("p-tx", "hr-9", start, 71)
	delete(badUnit["valueQuantity"].(map[string]any), "unit")
	unknown := hrObservation("p-tx", "hr-9", start.Add(time.Second), 72)
	unknown["code"] = map[string]any{"coding": []any{map[string]any{"system": fhir.SystemLOINC, "code": "9279-1"}}}
	code, oo := fhirCall(t, "POST", base, ingestTok, bundleOf("transaction", hrObservation("p-tx", "hr-9", start, 70), unknown, badUnit))
	exprs := strings.Join(expressions(oo), " ")
	if code != 400 || oo["resourceType"] != "OperationOutcome" || !strings.Contains(exprs, "Bundle.entry[1].resource.code") ||
		!strings.Contains(exprs, "Bundle.entry[2].resource.valueQuantity.unit") {
		t.Fatalf("transaction with invalid entries: %d %v", code, oo)
	}

	// A batch: the spec's examples are stored, the invalid entries refused one by one.
	batch := bundleOf("batch", specExample(t, "observation-example-heart-rate.json"), specExample(t, "observation-example-bloodpressure.json"),
		specExample(t, "observation-example-satO2.json"), unknown, badUnit)
	code, resp := fhirCall(t, "POST", base, ingestTok, batch)
	want := []string{"201 Created", "201 Created", "201 Created", "422 Unprocessable Entity", "422 Unprocessable Entity"}
	if got := responseStatuses(resp); code != 200 || resp["type"] != "batch-response" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batch: %d %v, want statuses %v", code, resp, want)
	}
	// Posting it again: the stored entries are duplicates.
	code, resp = fhirCall(t, "POST", base, ingestTok, batch)
	want = []string{"200 OK", "200 OK", "200 OK", "422 Unprocessable Entity", "422 Unprocessable Entity"}
	if got := responseStatuses(resp); code != 200 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batch again: %d, statuses %v, want %v", code, got, want)
	}

	// A transaction of 25 readings of p-a and 5 of p-b, and a declared kind.
	var obs []any
	for i := range 25 {
		obs = append(obs, hrObservation("p-a", "hr-1", start.Add(time.Duration(i)*time.Minute), 60+i))
	}
	for i := range 5 {
		obs = append(obs, hrObservation("p-b", "hr-2", start.Add(time.Duration(i)*time.Minute), 80+i))
	}
	weight := hrObservation("p-b", "scale", start, 0)
	weight["code"] = map[string]any{"coding": []any{map[string]any{"system": fhir.SystemLOINC, "code": "29463-7"}}}
	weight["valueQuantity"] = map[string]any{"value": 71.5, "unit": "kg", "system": fhir.SystemUCUM, "code": "kg"}
	obs = append(obs, weight)
	code, resp = fhirCall(t, "POST", base, ingestTok, bundleOf("transaction", obs...))
	if code != 200 || resp["type"] != "transaction-response" || strings.Count(fmt.Sprint(responseStatuses(resp)), "201 Created") != len(obs) {
		t.Fatalf("transaction: %d %v", code, resp)
	}

	// Search pages through p-a's heart rate in the lake.
	q := base + "/Observation?subject=Patient/p-a&code=http://loinc.org|8867-4&_count=10"
	var page map[string]any
	waitUntil(t, 30*time.Second, "p-a's readings are searchable", func() bool {
		code, page = fhirCall(t, "GET", q, adminToken, nil)
		return code == 200 && page["total"] == float64(25)
	})
	ids := map[string]bool{}
	for pages := 0; ; pages++ {
		entries, _ := page["entry"].([]any)
		for _, e := range entries {
			res := e.(map[string]any)["resource"].(map[string]any)
			if res["subject"].(map[string]any)["reference"] != "Patient/p-a" {
				t.Fatalf("search for p-a returned %v", res["subject"])
			}
			ids[res["id"].(string)] = true
		}
		next := ""
		for _, l := range page["link"].([]any) {
			if l := l.(map[string]any); l["relation"] == "next" {
				next = l["url"].(string)
			}
		}
		if next == "" {
			if pages != 2 {
				t.Fatalf("%d pages, want 3", pages+1)
			}
			break
		}
		if code, page = fhirCall(t, "GET", next, adminToken, nil); code != 200 {
			t.Fatalf("next page: %d %v", code, page)
		}
	}
	if len(ids) != 25 {
		t.Fatalf("paging gave %d distinct Observations, want 25", len(ids))
	}
	// A date range: minutes 10..19.
	dq := fmt.Sprintf("%s/Observation?subject=p-a&date=ge%s&date=lt%s", base, start.Add(10*time.Minute).Format(time.RFC3339), start.Add(20*time.Minute).Format(time.RFC3339))
	if code, page = fhirCall(t, "GET", dq, adminToken, nil); code != 200 || page["total"] != float64(10) {
		t.Fatalf("date range: %d total %v", code, page["total"])
	}

	// A token bound to p-a sees p-a only and is refused p-b.
	if code, oo = fhirCall(t, "GET", base+"/Observation?subject=Patient/p-b", boundTok, nil); code != 403 || oo["resourceType"] != "OperationOutcome" {
		t.Fatalf("bound token asking for p-b: %d %v", code, oo)
	}
	if code, page = fhirCall(t, "GET", base+"/Observation?_count=1000", boundTok, nil); code != 200 || page["total"] != float64(25) {
		t.Fatalf("bound token: %d total %v, want p-a's 25", code, page["total"])
	}
	var pbID string
	waitUntil(t, 30*time.Second, "p-b's weight is searchable", func() bool {
		code, page = fhirCall(t, "GET", base+"/Observation?subject=p-b&code=29463-7", adminToken, nil)
		if entries, _ := page["entry"].([]any); code == 200 && len(entries) == 1 {
			res := entries[0].(map[string]any)["resource"].(map[string]any)
			pbID = res["id"].(string)
			return res["valueQuantity"].(map[string]any)["value"] == 71.5
		}
		return false
	})
	if code, o := fhirCall(t, "GET", base+"/Observation/"+pbID, adminToken, nil); code != 200 || o["id"] != pbID {
		t.Fatalf("read: %d %v", code, o)
	}
	if code, oo = fhirCall(t, "GET", base+"/Observation/"+pbID, boundTok, nil); code != 404 {
		t.Fatalf("bound token reading p-b's Observation: %d %v", code, oo)
	}

	// The refused entries are in quarantine with their reasons; the transaction's are not.
	waitUntil(t, 30*time.Second, "the refused entries are in quarantine", func() bool {
		rows := apiQuery(t, "http://"+addr, "SELECT code, path FROM quarantine.readings WHERE source = 'fhir' ORDER BY code")
		return fmt.Sprint(rows) == "[[missing-field Observation.valueQuantity.unit] [missing-field Observation.valueQuantity.unit] [unknown-code Observation.code] [unknown-code Observation.code]]"
	})
	if rows := apiQuery(t, "http://"+addr, "SELECT count(*) FROM trusted.heart_rate WHERE subject = 'p-tx'"); fmt.Sprint(rows) != "[[0]]" {
		t.Fatalf("the refused transaction stored readings: %v", rows)
	}
	stop()

	// Bulk export, and the export read back into a new data directory.
	out := filepath.Join(work, "export")
	if text, code := runBin(t, "export", "fhir", "--data", dir, "--config", cfgFile, "--output", out); code != 0 || !strings.Contains(text, "34 Observations") {
		t.Fatalf("export fhir: exit %d: %s", code, text)
	}
	text, code := runBin(t, "ingest", "--format", "fhir", "--data", t.TempDir(), "--config", cfgFile, filepath.Join(out, "Observation.ndjson"))
	if code != 0 || !strings.Contains(text, "34 accepted, 0 duplicates, 0 rejected") {
		t.Fatalf("ingest --format fhir: exit %d: %s", code, text)
	}
	text, code = runBin(t, "ingest", "--subject", "p-a", "--data", t.TempDir(), "--config", cfgFile, filepath.Join(out, "Observation.ndjson"))
	if code != 0 || !strings.Contains(text, "25 accepted, 0 duplicates, 9 rejected") || !strings.Contains(text, "subject-not-allowed") {
		t.Fatalf("ingest of p-a's Observations only (format detected): exit %d: %s", code, text)
	}
}

// TestFHIRExportPages: export fhir reads the lake page by page (by key, not offset) and
// writes every Observation once, in time order, with the subject filter applied.
func TestFHIRExportPages(t *testing.T) {
	dir := t.TempDir()
	srv := startServerWith(t, dir, config.Default())
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var obs []any
	for i := range 30 {
		// Pairs of readings at the same time (two devices) cross page boundaries.
		obs = append(obs, hrObservation("p-x", fmt.Sprintf("hr-%d", i%2), start.Add(time.Duration(i/2)*time.Minute), 60+i))
	}
	obs = append(obs, hrObservation("p-y", "hr-0", start, 99))
	if code, resp := fhirCall(t, "POST", srv.HTTPURL+"/fhir/r4", adminToken, bundleOf("batch", obs...)); code != 200 {
		t.Fatalf("post: %d %v", code, resp)
	}
	waitUntil(t, 30*time.Second, "the readings are in the lake", func() bool {
		rows := apiQuery(t, srv.HTTPURL, "SELECT count(*) FROM trusted.heart_rate")
		return fmt.Sprint(rows) == "[[31]]"
	})
	srv.stop()
	out := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := app.ExportFHIR(context.Background(), log, dir, config.Default(), app.ExportFHIROptions{Subject: "p-x", Output: out, PageSize: 7})
	if err != nil || n != 30 {
		t.Fatalf("export: %d, %v", n, err)
	}
	data, err := os.ReadFile(filepath.Join(out, "Observation.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	ids, last := map[string]bool{}, ""
	for _, l := range lines {
		var o fhir.Observation
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatal(err)
		}
		if o.Subject.Reference != "Patient/p-x" || o.EffectiveDateTime < last {
			t.Fatalf("line %s after %s", l, last)
		}
		last, ids[o.ID] = o.EffectiveDateTime, true
	}
	if len(lines) != 30 || len(ids) != 30 {
		t.Fatalf("%d lines, %d distinct ids; want 30", len(lines), len(ids))
	}
}

// TestPrettyPrintedRecordsReachTheLake: records that span lines, as pretty-printers write
// them (a JSON array of readings, a FHIR Bundle), are stored and reach the lake like any
// other: none of them ends in quarantine.poison because its line broke the stream's
// envelope.
func TestPrettyPrintedRecordsReachTheLake(t *testing.T) {
	dir := t.TempDir()
	srv := startServerWith(t, dir, config.Default())
	defer srv.stop()
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var readings []any
	for i := range 3 {
		readings = append(readings, map[string]any{"subject": "p-pretty", "device": "hr-a", "kind": "heart_rate",
			"time": start.Add(time.Duration(i) * time.Second).Format(time.RFC3339), "values": map[string]any{"bpm": 60 + i}})
	}
	body, _ := json.MarshalIndent(readings, "", "  ")
	if code, resp := post(t, srv.HTTPURL+"/v1/readings", adminToken, "application/json", body); code != http.StatusAccepted {
		t.Fatalf("post of a pretty-printed array: %d %v", code, resp)
	}
	var obs []any
	for i := range 3 {
		obs = append(obs, hrObservation("p-pretty", "hr-b", start.Add(time.Duration(i)*time.Second), 70+i))
	}
	var bundle bytes.Buffer
	if err := json.Indent(&bundle, bundleOf("batch", obs...), "", "  "); err != nil {
		t.Fatal(err)
	}
	if code, resp := fhirCall(t, "POST", srv.HTTPURL+"/fhir/r4", adminToken, bundle.Bytes()); code != 200 {
		t.Fatalf("post of a pretty-printed Bundle: %d %v", code, resp)
	}
	waitUntil(t, 30*time.Second, "the six readings are in trusted.heart_rate", func() bool {
		rows := apiQuery(t, srv.HTTPURL, "SELECT count(*) FROM trusted.heart_rate WHERE subject = 'p-pretty'")
		return fmt.Sprint(rows) == "[[6]]"
	})
	// Landing keeps each record exactly as received, line breaks and all.
	rows := apiQuery(t, srv.HTTPURL, "SELECT count(*) FROM landing.http WHERE strpos(raw, chr(10)) > 0")
	if fmt.Sprint(rows) != "[[3]]" {
		t.Errorf("landing.http records with their line breaks: %v, want 3", rows)
	}
	if rows := apiQuery(t, srv.HTTPURL, "SELECT count(*) FROM quarantine.poison"); rows != nil && fmt.Sprint(rows) != "[[0]]" {
		t.Errorf("quarantine.poison: %v, want no messages", rows)
	}
}
