package app

import (
	"path/filepath"

	"github.com/pulselake/pulselake/internal/imports"
)

// startImports runs the imports of uploaded exports (POST /v1/imports) as a processor: the
// import running at shutdown stops with intake's second phase, before the lake's final flush.
func startImports(n *node) error {
	m, err := imports.New(n.log.With("component", "imports"), n.reg, n.ingester, imports.Options{
		Dir: filepath.Join(n.dataDir, "imports"), MaxBytes: n.cfg.Imports.MaxBytes, MaxQueued: n.cfg.Imports.MaxQueued,
	})
	if err != nil {
		return err
	}
	n.imports = m
	n.runProc("imports", m.Run)
	return nil
}
