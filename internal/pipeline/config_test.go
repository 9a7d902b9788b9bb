package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateFolders(t *testing.T) {
	good := t.TempDir()
	if err := os.WriteFile(filepath.Join(good, "curated.a.sql"), []byte("SELECT 1 AS x"), 0o644); err != nil {
		t.Fatal(err)
	}
	own := t.TempDir() // a model with its own schedule needs no folder schedule
	if err := os.WriteFile(filepath.Join(own, "curated.b.sql"), []byte("-- schedule: @hourly\nSELECT 1 AS x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cyclic := t.TempDir()
	for name, sql := range map[string]string{"curated.a.sql": "SELECT * FROM curated.b", "curated.b.sql": "SELECT * FROM curated.a"} {
		if err := os.WriteFile(filepath.Join(cyclic, name), []byte(sql), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if errs := ValidateFolders([]Folder{{Dir: good, Schedule: "0 3 * * *"}, {Dir: own}}); len(errs) != 0 {
		t.Fatalf("valid folders rejected: %v", errs)
	}
	errs := ValidateFolders([]Folder{
		{Dir: ""},
		{Dir: good, Schedule: "every night"},
		{Dir: good, Schedule: "@daily"},
		{Dir: filepath.Join(good, "missing"), Schedule: "@daily"},
		{Dir: cyclic, Schedule: "@daily"},
		{Dir: own + "/."},
	})
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	for i, want := range []string{
		"pipelines[0].dir: required",
		`pipelines[1].schedule: "every night" is not a cron schedule`,
		"pipelines[2].dir: " + good + " is listed twice",
		"pipelines[3].dir: stat ",
		"pipelines[4].dir: dependency cycle: curated.",
	} {
		if i >= len(got) || !strings.HasPrefix(got[i], want) {
			t.Fatalf("problem %d: got %q, want it to start with %q\nall: %s", i, got, want, strings.Join(got, "\n"))
		}
	}
	if len(got) != 5 {
		t.Fatalf("problems: %s", strings.Join(got, "\n"))
	}
	noSchedule := ValidateFolders([]Folder{{Dir: good}})
	if len(noSchedule) != 1 || !strings.Contains(noSchedule[0].Error(), "pipelines[0].schedule: required: no model in") {
		t.Fatalf("unscheduled folder: %v", noSchedule)
	}
}
