package lake

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestPreviousDataDir: a store opened in a data directory that was moved names the path the
// directory had; one opened where it was made, or with a warehouse outside it, names none.
func TestPreviousDataDir(t *testing.T) {
	base := t.TempDir()
	first := filepath.Join(base, "first")
	open := func(dataDir string, cfg Config) *Store {
		t.Helper()
		st, err := Open(context.Background(), discard(), cfg.WithDefaults(dataDir))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open(first, Config{})
	if got := st.PreviousDataDir(first); got != "" {
		t.Errorf("where it was made: previous %q, want none", got)
	}
	st.Close()

	moved := filepath.Join(base, "sub", "moved")
	if err := os.MkdirAll(filepath.Dir(moved), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(first, moved); err != nil {
		t.Fatal(err)
	}
	st = open(moved, Config{})
	if got := st.PreviousDataDir(moved); got != first {
		t.Errorf("after a move: previous %q, want %q", got, first)
	}
	// Relative to the working directory, the data directory is the same folder.
	wd, _ := os.Getwd()
	if err := os.Chdir(filepath.Dir(moved)); err != nil {
		t.Fatal(err)
	}
	got := st.PreviousDataDir("moved")
	os.Chdir(wd)
	if got != first {
		t.Errorf("a relative data directory: previous %q, want %q", got, first)
	}
	st.Close()

	// A warehouse outside the data directory says nothing about it.
	other := filepath.Join(base, "other")
	st = open(other, Config{Warehouse: "file://" + filepath.Join(moved, "lake")})
	defer st.Close()
	if got := st.PreviousDataDir(other); got != "" {
		t.Errorf("warehouse outside the data directory: previous %q, want none", got)
	}
}
