package pipeline

import (
	"fmt"
	"os"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

// Folder is one entry of the `pipelines:` configuration section: a folder of models that
// serve runs on schedules (docs/pipelines.md).
type Folder struct {
	// Dir is the folder of <zone>.<table>.sql models.
	Dir string `yaml:"dir"`
	// Schedule is the cron expression (five fields, or @daily, @every 1h, ...) for models
	// without their own `-- schedule:` line; empty leaves those to `pipeline run`.
	Schedule string `yaml:"schedule"`
}

// ValidateFolders checks the `pipelines:` section: every folder loads (models parse, no
// cycle), every schedule parses, and something in each folder is scheduled. Each problem is
// at its configuration path, e.g. "pipelines[0].dir".
func ValidateFolders(fs []Folder) yamlconf.Problems {
	var errs yamlconf.Problems
	bad := errs.Add
	seen := map[string]bool{}
	for i, f := range fs {
		at := fmt.Sprintf("pipelines[%d]", i)
		if f.Dir == "" {
			bad(at+".dir", "required: the folder of <zone>.<table>.sql models")
			continue
		}
		if seen[f.Dir] {
			bad(at+".dir", "%s is listed twice", f.Dir)
		}
		seen[f.Dir] = true
		if f.Schedule != "" {
			if _, err := ParseSchedule(f.Schedule); err != nil {
				bad(at+".schedule", "%q is not a cron schedule (e.g. \"30 6 * * *\" or @daily): %v", f.Schedule, err)
			}
		}
		if _, err := os.Stat(f.Dir); err != nil {
			bad(at+".dir", "%v", err)
			continue
		}
		p, err := LoadDir(f.Dir)
		if err != nil {
			bad(at+".dir", "%v", err)
			continue
		}
		if f.Schedule == "" {
			scheduled := false
			for _, m := range p.Models {
				scheduled = scheduled || m.Schedule != ""
			}
			if !scheduled {
				bad(at+".schedule", "required: no model in %s has a `-- schedule:` line, so serve would never run it", f.Dir)
			}
		}
	}
	return errs
}
