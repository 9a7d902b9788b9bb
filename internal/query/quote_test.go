package query

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestQuoting(t *testing.T) {
	tests := []struct{ got, want string }{
		{Literal("patient-17"), `'patient-17'`},
		{Literal("o'brien"), `'o''brien'`},
		{Literal(""), `''`},
		{Ident("heart_rate"), `"heart_rate"`},
		{Ident(`we"ird`), `"we""ird"`},
		{TimestampLiteral(time.Date(2026, 11, 1, 8, 30, 0, 1500, time.FixedZone("x", 3600))), `TIMESTAMP '2026-11-01 07:30:00.000001'`},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
}

// DropCachedCopies removes the copies the engine made of remote files (named as localPath
// names them) and nothing else.
func TestDropCachedCopies(t *testing.T) {
	data := t.TempDir()
	dir := CacheDir(data)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyOf := func(loc string) string {
		sum := sha256.Sum256([]byte(loc))
		return filepath.Join(dir, hex.EncodeToString(sum[:12])+".parquet")
	}
	erased, kept := "s3://bucket/lake/trusted/heart_rate/data/a.parquet", "s3://bucket/lake/trusted/heart_rate/data/b.parquet"
	for _, loc := range []string{erased, kept} {
		if err := os.WriteFile(copyOf(loc), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed := []string{erased, "file:///data/lake/x.parquet", "/data/lake/y.parquet", "s3://bucket/never-cached.parquet"}
	if err := DropCachedCopies(data, removed); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(copyOf(erased)); !os.IsNotExist(err) {
		t.Errorf("the copy of the erased file is still there (stat: %v)", err)
	}
	if _, err := os.Stat(copyOf(kept)); err != nil {
		t.Errorf("the copy of a file not erased is gone: %v", err)
	}
}
