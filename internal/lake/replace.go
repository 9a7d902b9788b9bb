package lake

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
)

// Replace makes the records of rdr the whole contents of zone.name in one Iceberg commit:
// readers see either the old contents or the new, never a mix. The table is created when it
// does not exist, and its schema becomes the schema of rdr (columns the records lack are
// dropped, new ones added, changed types replaced, order as in rdr); the schema change is
// part of the same commit. props are recorded in the snapshot summary. It returns the table
// as committed. On error nothing changed. Tables the lake writer fills from the ingest stream
// (landing, trusted.<kind>, quarantine) are refused.
func (s *Store) Replace(ctx context.Context, zone, name string, rdr array.RecordReader, props iceberg.Properties) (*table.Table, error) {
	return s.write(ctx, zone, name, rdr, props, true)
}

// AppendRecords adds the records of rdr to zone.name in one Iceberg commit, creating the
// table (unpartitioned) when it does not exist and adding columns it lacks. Columns of the
// table that rdr lacks are NULL in the new rows.
func (s *Store) AppendRecords(ctx context.Context, zone, name string, rdr array.RecordReader, props iceberg.Properties) (*table.Table, error) {
	return s.write(ctx, zone, name, rdr, props, false)
}

func (s *Store) write(ctx context.Context, zone, name string, rdr array.RecordReader, props iceberg.Properties, replace bool) (*table.Table, error) {
	key := zone + "." + name
	want, err := table.ArrowSchemaToIcebergWithFreshIDs(rdr.Schema(), true)
	if err != nil {
		return nil, fmt.Errorf("writing %s: the result's columns cannot be stored in Iceberg: %w", key, err)
	}
	t, err := s.Load(ctx, zone, name)
	if errors.Is(err, ErrNoTable) {
		t, err = s.cat.CreateTable(ctx, table.Identifier{zone, name}, want, catalog.WithProperties(iceberg.Properties{
			"write.parquet.compression-codec": "zstd",
			"format-version":                  "2",
		}))
		if errors.Is(err, catalog.ErrTableAlreadyExists) {
			t, err = s.Load(ctx, zone, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", key, err)
	}
	if streamSeq(t) > 0 {
		return nil, fmt.Errorf("writing %s: the lake writer fills this table from the ingest stream; write the result to a table of another name", key)
	}
	release, err := s.gate.hold(ctx, false) // the files are unreferenced until the commit
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", key, err)
	}
	defer release()
	tx := t.NewTransaction()
	reorder, err := conformSchema(tx, t.Schema(), want, replace)
	if err != nil {
		return nil, fmt.Errorf("changing the schema of %s: %w", key, err)
	}
	if props == nil {
		props = iceberg.Properties{}
	}
	if replace {
		err = tx.Overwrite(ctx, rdr, props)
	} else {
		err = tx.Append(ctx, rdr, props)
	}
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", key, err)
	}
	nt, err := tx.Commit(ctx)
	if err != nil {
		s.forget(key)
		return nil, fmt.Errorf("committing %s: %w", key, err)
	}
	if reorder {
		// Column order is presentation only, so it follows in a second, metadata-only
		// commit: a column dropped and added again in one schema change cannot also move.
		if ot, err := orderColumns(ctx, nt, want); err != nil {
			s.log.Warn("lake table columns left in their old order", "table", key, "err", err)
		} else {
			nt = ot
		}
	}
	s.remember(key, nt)
	return nt, nil
}

// conformSchema stages in tx, as one schema change, what turns have into want. With exact,
// columns want lacks are dropped and a column whose type changed is dropped and added again
// (its old values go with the replaced data); reorder then tells whether the column order
// still differs from want's. Without exact, columns are only added.
func conformSchema(tx *table.Transaction, have, want *iceberg.Schema, exact bool) (reorder bool, err error) {
	haveTypes := map[string]iceberg.Type{}
	for _, f := range have.Fields() {
		haveTypes[f.Name] = f.Type
	}
	wantTypes := map[string]iceberg.Type{}
	for _, f := range want.Fields() {
		wantTypes[f.Name] = f.Type
	}
	us := tx.UpdateSchema(true, exact)
	changed := false
	var kept []string
	for _, f := range have.Fields() {
		wt, ok := wantTypes[f.Name]
		switch {
		case ok && wt.Equals(f.Type):
			kept = append(kept, f.Name)
		case exact:
			us, changed = us.DeleteColumn([]string{f.Name}), true
		case ok:
			return false, fmt.Errorf("column %s is %s in the table but %s in the new rows", f.Name, f.Type, wt)
		}
	}
	var order []string
	for _, f := range want.Fields() {
		if ht, ok := haveTypes[f.Name]; !ok || !ht.Equals(f.Type) {
			us, changed = us.AddColumn([]string{f.Name}, f.Type, "", false, nil), true
		}
		order = append(order, f.Name)
	}
	if changed {
		if err := us.Commit(); err != nil {
			return false, err
		}
	}
	if !exact {
		return false, nil
	}
	// After the change the kept columns come first, in their old order, then the added ones.
	now := kept
	for _, n := range order {
		if !slices.Contains(kept, n) {
			now = append(now, n)
		}
	}
	return !slices.Equal(now, order), nil
}

// orderColumns commits a schema change that puts t's columns in want's order.
func orderColumns(ctx context.Context, t *table.Table, want *iceberg.Schema) (*table.Table, error) {
	tx := t.NewTransaction()
	us := tx.UpdateSchema(true, false)
	fs := want.Fields()
	for i, f := range fs {
		if i == 0 {
			us = us.MoveFirst([]string{f.Name})
		} else {
			us = us.MoveAfter([]string{f.Name}, []string{fs[i-1].Name})
		}
	}
	if err := us.Commit(); err != nil {
		return nil, err
	}
	return tx.Commit(ctx)
}
