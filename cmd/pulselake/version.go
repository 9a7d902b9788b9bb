package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pulselake/pulselake/internal/query"
)

// versionDeps are the dependencies `pulselake version` names: label, module path.
var versionDeps = []struct{ label, module string }{
	{"duckdb-go", "github.com/duckdb/duckdb-go/v2"},
	{"nats-server", "github.com/nats-io/nats-server/v2"},
	{"iceberg-go", "github.com/apache/iceberg-go"},
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of pulselake, its build and the engines it links",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, ok := debug.ReadBuildInfo()
			if !ok {
				return fmt.Errorf("the binary carries no build information")
			}
			// The engine's own answer costs an in-memory database (milliseconds, no files).
			engine, err := query.EngineVersion(cmd.Context())
			if err != nil {
				engine = "unknown (" + err.Error() + ")"
			}
			return writeVersion(g.stdout, info, engine)
		},
	}
}

// writeVersion prints one "label  value" line each: pulselake's version, the commit and its
// time when the build was stamped with them, Go, the DuckDB engine and versionDeps.
func writeVersion(out io.Writer, info *debug.BuildInfo, engine string) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "pulselake\t%s\n", mainVersion(info))
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		if settings["vcs.modified"] == "true" {
			rev += " (modified)"
		}
		fmt.Fprintf(w, "commit\t%s\n", rev)
	}
	if at := settings["vcs.time"]; at != "" {
		fmt.Fprintf(w, "commit-time\t%s\n", at)
	}
	fmt.Fprintf(w, "go\t%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "duckdb\t%s\n", engine)
	for _, d := range versionDeps {
		fmt.Fprintf(w, "%s\t%s\n", d.label, depVersion(info, d.module))
	}
	return w.Flush()
}

// mainVersion is the module version the binary was built at (go install ...@v1.2.3), or
// "devel" for a build from a checkout.
func mainVersion(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "devel"
}

// depVersion is the version of a module linked into the binary, its replacement's when
// replaced, or "not linked".
func depVersion(info *debug.BuildInfo, path string) string {
	for _, m := range info.Deps {
		if m.Path != path {
			continue
		}
		if m.Replace != nil {
			return m.Replace.Version + " (replaces " + m.Version + ")"
		}
		return m.Version
	}
	return "not linked"
}
