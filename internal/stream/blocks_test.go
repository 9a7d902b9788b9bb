package stream

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIngestBlockSize: the ingest stream is stored in message blocks of at most 4 MiB (the
// server caches whole blocks for 10 s after each use; see IngestMaxMsgsPerSubject), and its
// per-subject limit takes nothing away.
func TestIngestBlockSize(t *testing.T) {
	srv, conn := startTest(t)
	ctx := context.Background()
	payload := make([]byte, 256<<10) // incompressible, as a stored frame is
	const n = 40                     // 10 MiB: more than two 4 MiB blocks, one 8 MiB block
	for range n {
		rand.Read(payload)
		if _, err := conn.JS.Publish(ctx, SubjectFor(SourceImport), payload); err != nil {
			t.Fatal(err)
		}
	}
	s, err := conn.JS.Stream(ctx, IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("%d messages stored of %d", info.State.Msgs, n)
	}
	var blocks []string
	filepath.WalkDir(srv.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".blk") && strings.Contains(p, string(filepath.Separator)+IngestStream+string(filepath.Separator)) {
			blocks = append(blocks, p)
		}
		return nil
	})
	if len(blocks) < 3 {
		t.Fatalf("10 MiB stored in %d blocks; want 4 MiB blocks", len(blocks))
	}
	for _, b := range blocks {
		if fi, err := os.Stat(b); err != nil || fi.Size() > 4<<20 {
			t.Errorf("block %s: %d bytes (%v), more than 4 MiB", filepath.Base(b), fi.Size(), err)
		}
	}
}
