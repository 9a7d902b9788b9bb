package catalog

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRegistryLocation: whatever the data directory and folder, the form the registry keeps
// resolves back to the folder, and it is relative exactly when the folder is inside the data
// directory.
func FuzzRegistryLocation(f *testing.F) {
	for _, seed := range [][2]string{
		{"/data", "/data/exports/vitals"},
		{"/data", "/data"},
		{"/data", "/database/x"},
		{"/data", "/exports"},
		{"/srv/p lake", "/srv/p lake/a/../b"},
		{"/", "/x"},
		{"/data/", "/data/..x/y"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, base, loc string) {
		if !filepath.IsAbs(base) || !filepath.IsAbs(loc) || strings.ContainsRune(base+loc, 0) {
			return
		}
		base, loc = filepath.Clean(base), filepath.Clean(loc)
		kept := record(base, loc)
		if got := resolve(base, kept); got != loc {
			t.Fatalf("base %q, folder %q: kept %q resolves to %q", base, loc, kept, got)
		}
		inside := loc == base || strings.HasPrefix(loc, strings.TrimSuffix(base, "/")+"/")
		if filepath.IsAbs(kept) == inside {
			t.Fatalf("base %q, folder %q: kept %q (inside: %v)", base, loc, kept, inside)
		}
	})
}
