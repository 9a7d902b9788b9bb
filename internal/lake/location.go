package lake

import (
	"path/filepath"
	"strings"
)

// PreviousDataDir returns the path the data directory dataDir had when its warehouse was
// made, when the warehouse lies inside dataDir and was moved or copied with it (see
// relocate.go); "" when the warehouse is where it was made, or elsewhere. Files that record
// absolute paths into the data directory (the crawler's registry) use it to migrate.
func (s *Store) PreviousDataDir(dataDir string) string {
	from, to := s.props[propRelocateFrom], s.props[propRelocateTo]
	if from == "" || to == "" {
		return ""
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return ""
	}
	rel, err := filepath.Rel(abs, to)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return ""
	}
	if rel == "." {
		return from
	}
	prev, ok := strings.CutSuffix(from, "/"+filepath.ToSlash(rel))
	if !ok || prev == "" {
		return ""
	}
	return prev
}

// present returns where a location of the warehouse is now: in a moved or copied warehouse,
// at the new place (the metadata keeps naming the old one, see relocate.go).
func (s *Store) present(loc string) string {
	from, to := s.props[propRelocateFrom], s.props[propRelocateTo]
	if from == "" || to == "" || loc == "" {
		return loc
	}
	return resolveLocation(relocFS{from: from, to: to}, loc)
}
