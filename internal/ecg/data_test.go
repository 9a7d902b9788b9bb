package ecg

import (
	"os"
	"path/filepath"
	"testing"
)

// dataDir is the shared MIT-BIH DS1 directory, beside the checkout.
const dataDir = "../../../shared/data/mitdb-ds1"

func needData(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dataDir, "101.hea")); err != nil {
		t.Skipf("MIT-BIH data not found at %s (needs ../shared/data beside the checkout): %v", dataDir, err)
	}
	return dataDir
}
