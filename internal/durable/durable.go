// Package durable writes small files so that a crash leaves either the old contents or the
// new ones, never a partial file: the data goes to a temporary file in the same directory,
// which is fsynced, then put in place, and the directory is fsynced.
package durable

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data (mode perm).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Replace(path, perm, bytesWriter(data))
}

// Replace replaces path with what write writes (mode perm). An error of write is returned
// as it is, and path is left untouched.
func Replace(path string, perm os.FileMode, write func(io.Writer) error) error {
	return put(path, perm, write, os.Rename, "renaming")
}

// Create writes data to path (mode perm) only if path does not exist yet; otherwise it
// returns an error matching os.ErrExist. Two processes creating the same file cannot
// overwrite each other: linking, unlike renaming, fails when the name exists.
func Create(path string, data []byte, perm os.FileMode) error {
	return put(path, perm, bytesWriter(data), os.Link, "linking")
}

func bytesWriter(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

func put(path string, perm os.FileMode, write func(io.Writer) error, place func(oldpath, newpath string) error, placing string) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("creating a temporary file beside %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed; removes the second name after a link
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("setting the mode of %s: %w", tmp.Name(), err)
	}
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp.Name(), err)
	}
	if err := place(tmp.Name(), path); err != nil {
		return fmt.Errorf("%s %s into place: %w", placing, path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
