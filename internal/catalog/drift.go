package catalog

import (
	"fmt"
	"strings"
)

// Drift is how a table's layout changed between two crawls.
type Drift struct {
	Added   []Column     `json:"added,omitempty"`
	Removed []Column     `json:"removed,omitempty"`
	Changed []TypeChange `json:"changed,omitempty"`
	// PartitionKeys is set when the partition keys changed, as "old → new".
	PartitionKeys string `json:"partition_keys,omitempty"`
	// Format is set when the file format changed, as "old → new".
	Format string `json:"format,omitempty"`
}

// TypeChange is a column whose type changed.
type TypeChange struct {
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
}

// Empty reports no change.
func (d Drift) Empty() bool {
	return len(d.Added)+len(d.Removed)+len(d.Changed) == 0 && d.PartitionKeys == "" && d.Format == ""
}

// Diff compares the columns (data and partition) of two crawls of a table.
func Diff(old, cur Table) Drift {
	var d Drift
	if old.Format != cur.Format {
		d.Format = string(old.Format) + " → " + string(cur.Format)
	}
	if ok, nk := keyNames(old.Partitions), keyNames(cur.Partitions); ok != nk {
		d.PartitionKeys = orNone(ok) + " → " + orNone(nk)
	}
	oldCols := append(append([]Column{}, old.Columns...), old.Partitions...)
	curCols := append(append([]Column{}, cur.Columns...), cur.Partitions...)
	find := func(cols []Column, name string) (Column, bool) {
		for _, c := range cols {
			if c.Name == name {
				return c, true
			}
		}
		return Column{}, false
	}
	for _, c := range curCols {
		o, ok := find(oldCols, c.Name)
		switch {
		case !ok:
			d.Added = append(d.Added, c)
		case o.Type != c.Type:
			d.Changed = append(d.Changed, TypeChange{Name: c.Name, From: o.Type, To: c.Type})
		}
	}
	for _, o := range oldCols {
		if _, ok := find(curCols, o.Name); !ok {
			d.Removed = append(d.Removed, o)
		}
	}
	return d
}

func orNone(s string) string { return or(s, "(none)") }

func keyNames(cols []Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return strings.Join(names, "/")
}

// String is a human report, one change per line.
func (d Drift) String() string {
	var b strings.Builder
	if d.Format != "" {
		fmt.Fprintf(&b, "  format changed: %s\n", d.Format)
	}
	if d.PartitionKeys != "" {
		fmt.Fprintf(&b, "  partition keys changed: %s\n", d.PartitionKeys)
	}
	for _, c := range d.Added {
		fmt.Fprintf(&b, "  + %s %s (added; NULL in rows of files without it)\n", c.Name, c.Type)
	}
	for _, c := range d.Removed {
		fmt.Fprintf(&b, "  - %s %s (removed; no file has it any more)\n", c.Name, c.Type)
	}
	for _, c := range d.Changed {
		fmt.Fprintf(&b, "  ~ %s %s → %s (type changed)\n", c.Name, c.From, c.To)
	}
	return b.String()
}
