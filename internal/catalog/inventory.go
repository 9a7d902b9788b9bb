package catalog

import (
	"slices"
	"strings"

	"github.com/pulselake/pulselake/internal/lake"
)

// Kinds of tables in an inventory.
const (
	KindIceberg  = "iceberg"
	KindExternal = "external"
)

// Entry is one table of the lake as `catalog list` shows it.
type Entry struct {
	Zone     string `json:"zone"`
	Name     string `json:"name"`
	Kind     string `json:"kind"`   // iceberg or external
	Format   string `json:"format"` // data file format
	Rows     int64  `json:"rows"`
	Files    int64  `json:"files"`
	Bytes    int64  `json:"bytes"`
	Location string `json:"location"`
	// Shadowed marks a crawled table hidden in SQL by an Iceberg table of the same name.
	Shadowed bool `json:"shadowed,omitempty"`
	// Columns of a crawled table, partition columns last, with the SQL types queries see.
	Columns []EntryColumn `json:"columns,omitempty"`
}

// EntryColumn is a column of a crawled table as `catalog list` shows it.
type EntryColumn struct {
	Name string `json:"name"`
	Type string `json:"type"` // portable type the crawler recorded
	// SQLType is the type SQL reads it as (DESCRIBE shows the same).
	SQLType   string `json:"sql_type"`
	Partition bool   `json:"partition,omitempty"`
	Nested    bool   `json:"nested,omitempty"`
}

// Inventory lists Iceberg tables (statistics of their current snapshot) and crawled tables,
// ordered by zone (lake.Zones order) and name.
func Inventory(iceberg []lake.TableInfo, external []Table) []Entry {
	var out []Entry
	seen := map[string]bool{}
	for _, ti := range iceberg {
		seen[ti.Zone+"."+ti.Name] = true
		out = append(out, Entry{Zone: ti.Zone, Name: ti.Name, Kind: KindIceberg, Format: string(FormatParquet),
			Rows: ti.Rows, Files: ti.Files, Bytes: ti.Bytes, Location: ti.Location})
	}
	for _, t := range external {
		out = append(out, Entry{Zone: t.Zone, Name: t.Name, Kind: KindExternal, Format: string(t.Format),
			Rows: t.Rows, Files: t.Files, Bytes: t.Bytes, Location: t.Location, Shadowed: seen[t.Key()], Columns: entryColumns(t)})
	}
	zoneRank := func(z string) int {
		if i := slices.Index(lake.Zones, z); i >= 0 {
			return i
		}
		return len(lake.Zones)
	}
	slices.SortStableFunc(out, func(a, b Entry) int {
		if d := zoneRank(a.Zone) - zoneRank(b.Zone); d != 0 {
			return d
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Kind, b.Kind)
	})
	return out
}

func entryColumns(t Table) []EntryColumn {
	out := make([]EntryColumn, 0, len(t.Columns)+len(t.Partitions))
	for _, c := range t.Columns {
		out = append(out, EntryColumn{Name: c.Name, Type: c.Type, SQLType: SQLType(c.Type), Nested: c.Nested})
	}
	for _, c := range t.Partitions {
		out = append(out, EntryColumn{Name: c.Name, Type: c.Type, SQLType: SQLType(c.Type), Partition: true})
	}
	return out
}
