package takeout

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Files of a Takeout archive in the legacy Fitbit layout, as Fitbit writes them.
var legacyFiles = map[string]string{
	"Takeout/Fitbit/Global Export Data/heart_rate-2016-04-12.json": `[{
  "dateTime" : "04/12/16 07:00:05",
  "value" : {
    "bpm" : 72,
    "confidence" : 2
  }
},{
  "dateTime" : "04/12/16 07:00:10",
  "value" : {
    "bpm" : 75,
    "confidence" : 3
  }
}]`,
	"Takeout/Fitbit/Global Export Data/steps-2016-04-12.json": `[{
  "dateTime" : "04/12/16 07:00:00",
  "value" : "0"
},{
  "dateTime" : "04/12/16 07:01:00",
  "value" : "87"
}]`,
	"Takeout/Fitbit/Global Export Data/sleep-2016-04-12.json": `[{
  "logId" : 11876543210,
  "dateOfSleep" : "2016-04-12",
  "startTime" : "2016-04-11T23:30:00.000",
  "endTime" : "2016-04-12T00:31:30.000",
  "duration" : 3690000,
  "minutesToFallAsleep" : 0,
  "minutesAsleep" : 55,
  "minutesAwake" : 6,
  "minutesAfterWakeup" : 0,
  "timeInBed" : 61,
  "efficiency" : 92,
  "type" : "stages",
  "infoCode" : 0,
  "levels" : {
    "summary" : {"deep" : {"count" : 1, "minutes" : 30, "thirtyDayAvgMinutes" : 0}},
    "data" : [{
      "dateTime" : "2016-04-11T23:30:00.000",
      "level" : "wake",
      "seconds" : 360
    },{
      "dateTime" : "2016-04-11T23:36:00.000",
      "level" : "light",
      "seconds" : 1500
    },{
      "dateTime" : "2016-04-12T00:01:00.000",
      "level" : "deep",
      "seconds" : 1830
    }],
    "shortData" : [{
      "dateTime" : "2016-04-11T23:50:00.000",
      "level" : "wake",
      "seconds" : 30
    }]
  },
  "mainSleep" : true
},{
  "logId" : 11876543211,
  "type" : "classic",
  "levels" : {"data" : [{"dateTime" : "2016-04-12T14:00:00.000", "level" : "restless", "seconds" : 60}]}
}]`,
	"Takeout/Fitbit/Global Export Data/calories-2016-04-12.json": `[{"dateTime":"04/12/16 07:00:00","value":"1.2"}]`,
	"Takeout/Fitbit/Your Profile/Profile.csv":                    "id,full_name,timezone\nABC123,Alice Example,Europe/Berlin\n",
	"Takeout/archive_browser.html":                               "<html></html>",
}

// Files of the newer Google Health layout (not published; recognised by header).
var newFiles = map[string]string{
	"Takeout/Fitbit/Physical Activity_GoogleData/heart_rate_2025-01-01.csv":        "timestamp,beats per minute\n2025-01-01T10:00:00Z,61\n2025-01-01T10:00:05+01:00,62\n",
	"Takeout/Fitbit/Physical Activity_GoogleData/steps_2025-01-01.csv":             "timestamp,steps\n2025-01-01 10:00:00,120\n",
	"Takeout/Fitbit/Physical Activity_GoogleData/oxygen_saturation_2025-01-01.csv": "timestamp,oxygen saturation percentage\n2025-01-01T03:00:00Z,96.5\n",
	"Takeout/Fitbit/Physical Activity_GoogleData/calories_2025-01-01.csv":          "timestamp,calories\n2025-01-01T10:00:00Z,1.1\n",
}

type reading struct {
	ID      string         `json:"id"`
	Subject string         `json:"subject"`
	Device  string         `json:"device"`
	Kind    string         `json:"kind"`
	Time    string         `json:"time"`
	Values  map[string]any `json:"values"`
}

func writeDir(t testing.TB, files map[string]string) string {
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func writeZip(t testing.TB, files map[string]string) string {
	p := filepath.Join(t.TempDir(), "takeout-20260301T000000Z-001.zip")
	f, _ := os.Create(p)
	zw := zip.NewWriter(f)
	for name, body := range files {
		w, _ := zw.Create(name)
		w.Write([]byte(body))
	}
	zw.Close()
	f.Close()
	return p
}

func read(t *testing.T, p string, o Options) ([]reading, Stats) {
	var got []reading
	st, err := Read(context.Background(), p, o, func(raw []byte, origin string) error {
		var r reading
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("invalid JSON %s", raw)
		}
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, st
}

func TestReadLegacy(t *testing.T) {
	for _, tc := range []struct {
		name string
		path func(t testing.TB, files map[string]string) string
	}{{"folder", writeDir}, {"zip", writeZip}} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.path(t, legacyFiles)
			if !Detect(p) {
				t.Fatal("Detect: not recognised")
			}
			var skipped []string
			got, st := read(t, p, Options{Subject: "alice", Skipped: func(n, _ string) { skipped = append(skipped, n) }})
			if st.Location != "Europe/Berlin" {
				t.Errorf("time zone %q, want Europe/Berlin from Profile.csv", st.Location)
			}
			want := []struct{ kind, time, value string }{
				{"heart_rate", "2016-04-12T05:00:05Z", "bpm=72"}, // 07:00:05 CEST
				{"heart_rate", "2016-04-12T05:00:10Z", "bpm=75"},
				{"sleep", "2016-04-11T21:30:00Z", "stage=wake"},
				{"sleep", "2016-04-11T21:36:00Z", "stage=light"},
				{"sleep", "2016-04-11T22:01:00Z", "stage=deep"},
				{"sleep", "2016-04-12T12:00:00Z", "stage=restless"},
				{"steps", "2016-04-12T05:00:00Z", "count=0"},
				{"steps", "2016-04-12T05:01:00Z", "count=87"},
			}
			if len(got) != len(want) {
				t.Fatalf("%d readings, want %d: %+v", len(got), len(want), got)
			}
			for i, w := range want {
				r := got[i]
				name, val, _ := strings.Cut(w.value, "=")
				if r.Kind != w.kind || r.Time != w.time || r.Device != Device || r.Subject != "alice" || jsonText(r.Values[name]) != val {
					t.Errorf("reading %d = %+v, want %+v", i, r, w)
				}
			}
			if len(skipped) != 1 || !strings.Contains(skipped[0], "calories") {
				t.Errorf("skipped %v, want the calories file", skipped)
			}
		})
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

func TestTimeZoneRule(t *testing.T) {
	files := map[string]string{"Takeout/Fitbit/Global Export Data/heart_rate-2016-04-12.json": legacyFiles["Takeout/Fitbit/Global Export Data/heart_rate-2016-04-12.json"]}
	p := writeDir(t, files)
	got, st := read(t, p, Options{Subject: "alice"})
	if st.Location != "UTC" || got[0].Time != "2016-04-12T07:00:05Z" {
		t.Errorf("no profile, no option: %s %s, want UTC", st.Location, got[0].Time)
	}
	ny, _ := time.LoadLocation("America/New_York")
	got, _ = read(t, p, Options{Subject: "alice", Location: ny})
	if got[0].Time != "2016-04-12T11:00:05Z" {
		t.Errorf("Location New York: %s", got[0].Time)
	}
}

func TestReadNewLayout(t *testing.T) {
	p := writeZip(t, newFiles)
	if !Detect(p) {
		t.Fatal("Detect: not recognised")
	}
	got, _ := read(t, p, Options{Subject: "bob"})
	kinds := map[string]int{}
	for _, r := range got {
		kinds[r.Kind]++
	}
	if kinds["heart_rate"] != 2 || kinds["steps"] != 1 || kinds["spo2"] != 1 || len(got) != 4 {
		t.Errorf("readings %+v", got)
	}
	if got[0].Time != "2025-01-01T10:00:00Z" || got[1].Time != "2025-01-01T09:00:05Z" {
		t.Errorf("times with Z and +01:00: %s %s", got[0].Time, got[1].Time)
	}
	if Detect(writeDir(t, map[string]string{"Takeout/Drive/a.csv": "x"})) {
		t.Error("Detect: an archive without Fitbit data recognised")
	}
	if _, err := Read(context.Background(), writeDir(t, map[string]string{"Takeout/Drive/a.csv": "x"}), Options{}, func([]byte, string) error { return nil }); err != ErrNotTakeout {
		t.Errorf("Read: %v, want ErrNotTakeout", err)
	}
}

func TestStableIDs(t *testing.T) {
	a, _ := read(t, writeDir(t, legacyFiles), Options{Subject: "alice"})
	b, _ := read(t, writeZip(t, legacyFiles), Options{Subject: "alice"})
	c, _ := read(t, writeZip(t, legacyFiles), Options{Subject: "carol"})
	for i := range a {
		if a[i].ID != b[i].ID || a[i].ID == c[i].ID {
			t.Errorf("reading %d: ids %s %s %s; want the same for the same subject, another for another", i, a[i].ID, b[i].ID, c[i].ID)
		}
	}
}

func FuzzLegacyFile(f *testing.F) {
	for name, body := range legacyFiles {
		if k := kindOf(name); k != "" {
			f.Add(k, []byte(body))
		}
	}
	for name, body := range newFiles {
		if k := kindOf(name); k != "" {
			f.Add(k, []byte(body))
		}
	}
	f.Fuzz(func(t *testing.T, kind string, data []byte) {
		var st Stats
		r := &reader{o: Options{Subject: "s"}, loc: time.UTC, st: &st, emit: func(raw []byte, _ string) error {
			if !json.Valid(raw) {
				t.Fatalf("invalid JSON emitted: %s", raw)
			}
			return nil
		}}
		_ = r.file(kind, "f", bytes.NewReader(data))
	})
}
