package catalog

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// storedLocations returns zone.name → location as the registry file holds them.
func storedLocations(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(RegistryPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	var ts []Table
	if err := json.Unmarshal(b, &ts); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, x := range ts {
		out[x.Key()] = x.Location
	}
	return out
}

// TestRegistryLocationsFollowTheDataDir: a folder inside the data directory is recorded
// relative to it, one outside absolutely; after the data directory is moved, List gives the
// folders at the new place and the outside folder unchanged.
func TestRegistryLocationsFollowTheDataDir(t *testing.T) {
	base := t.TempDir()
	data, outside := filepath.Join(base, "data"), filepath.Join(base, "exports")
	write(t, data, "landing-files/vitals/a.jsonl", `{"bpm":61}`+"\n")
	write(t, outside, "a.csv", "bpm\n61\n")
	for _, o := range []Options{
		{Source: filepath.Join(data, "landing-files", "vitals"), Zone: "landing", Name: "inside"},
		{Source: outside, Zone: "landing", Name: "outside"},
	} {
		if _, err := Crawl(context.Background(), data, o); err != nil {
			t.Fatal(err)
		}
	}
	stored := storedLocations(t, data)
	if stored["landing.inside"] != "landing-files/vitals" || stored["landing.outside"] != outside {
		t.Fatalf("recorded locations %v", stored)
	}

	moved := filepath.Join(base, "elsewhere", "data")
	if err := os.MkdirAll(filepath.Dir(moved), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(data, moved); err != nil {
		t.Fatal(err)
	}
	ts, err := List(moved)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"landing.inside": filepath.Join(moved, "landing-files", "vitals"), "landing.outside": outside}
	for _, x := range ts {
		if x.Location != want[x.Key()] {
			t.Errorf("%s: location %s, want %s", x.Key(), x.Location, want[x.Key()])
		}
	}
	// A crawl of the moved directory's table keeps the relative form.
	if _, err := Crawl(context.Background(), moved, Options{Source: want["landing.inside"], Zone: "landing", Name: "inside"}); err != nil {
		t.Fatal(err)
	}
	if got := storedLocations(t, moved)["landing.inside"]; got != "landing-files/vitals" {
		t.Fatalf("after a new crawl the location is recorded as %s", got)
	}
}

// TestMigrateAbsoluteRegistry: a registry written with absolute locations is rewritten with
// relative ones, whether it is read at its place or after its data directory moved.
func TestMigrateAbsoluteRegistry(t *testing.T) {
	tests := []struct {
		name  string
		moved bool
	}{
		{"at its place", false},
		{"after a move", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			data, outside := filepath.Join(base, "data"), filepath.Join(base, "exports")
			write(t, data, "files/a.jsonl", `{"bpm":61}`+"\n")
			legacy := []Table{
				{Zone: "landing", Name: "inside", Location: filepath.Join(data, "files"), Format: FormatJSON, Columns: []Column{{Name: "bpm", Type: TypeBigint}}},
				{Zone: "landing", Name: "outside", Location: outside, Format: FormatCSV, Columns: []Column{{Name: "bpm", Type: TypeBigint}}},
			}
			b, _ := json.MarshalIndent(legacy, "", "  ")
			write(t, data, "catalog/external.json", string(b))
			dir, previous := data, ""
			if tt.moved {
				dir, previous = filepath.Join(base, "moved"), data
				if err := os.Rename(data, dir); err != nil {
					t.Fatal(err)
				}
			}
			if tt.moved {
				// Before the migration (a read-only copy cannot be rewritten) the locations
				// are mapped in memory.
				ts, err := List(dir)
				if err != nil {
					t.Fatal(err)
				}
				ts = Moved(ts, dir, previous)
				if ts[0].Location != filepath.Join(dir, "files") || ts[1].Location != outside {
					t.Fatalf("Moved: %s and %s", ts[0].Location, ts[1].Location)
				}
			}
			n, err := Migrate(dir, previous)
			if err != nil || n != 1 {
				t.Fatalf("Migrate rewrote %d entries, err %v; want 1", n, err)
			}
			stored := storedLocations(t, dir)
			if stored["landing.inside"] != "files" || stored["landing.outside"] != outside {
				t.Fatalf("after the migration the registry holds %v", stored)
			}
			x, err := Get(dir, "landing", "inside")
			if err != nil || x == nil || x.Location != filepath.Join(dir, "files") {
				t.Fatalf("Get after the migration: %+v, %v", x, err)
			}
			if n, err := Migrate(dir, previous); n != 0 || err != nil {
				t.Fatalf("a second migration rewrote %d entries, err %v", n, err)
			}
		})
	}
}
