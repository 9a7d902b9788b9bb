package catalog

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/lake"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden DDL files in testdata")

// crawlFixture crawls a small partitioned folder of the given format.
func crawlFixture(t *testing.T, format Format) Table {
	t.Helper()
	src := t.TempDir()
	switch format {
	case FormatJSON:
		write(t, src, "source=watch/day=2026-11-01/a.jsonl", `{"device":"hr-1","bpm":61,"at":"2026-11-01T10:00:00Z","ok":true,"we\"ird":1,"ctx":{"a":1}}`+"\n")
	case FormatCSV:
		write(t, src, "source=cuff/day=2026-11-01/a.csv", "device,systolic,weight,at,on\nbp-1,120,70.5,2026-11-01T10:00:00Z,2026-11-01\n")
	}
	tb, _, err := Scan(context.Background(), Options{Source: src, Zone: "landing", Name: "vitals", Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", name, got)
	}
}

// quoted is how each dialect writes an identifier.
var quoted = map[Dialect]func(string) string{Athena: backtick, Trino: dquote, Spark: backtick}

// typeIn is the type each dialect declares for a column of table t.
func typeIn(d Dialect, t Table, c Column, partition bool) string {
	switch d {
	case Athena:
		if !partition {
			typ, _ := athenaType(c.Type, t)
			return typ
		}
		return c.Type
	case Trino:
		if t.Format == FormatCSV {
			return "varchar"
		}
		return trinoType(c.Type)
	}
	return strings.ToUpper(c.Type)
}

func TestExternalDDL(t *testing.T) {
	for _, format := range []Format{FormatJSON, FormatCSV} {
		tb := crawlFixture(t, format)
		for _, d := range Dialects {
			t.Run(string(format)+"/"+string(d), func(t *testing.T) {
				ddl, err := ExternalDDL(tb, d, DDLOptions{Location: "s3://lake-bucket/vitals"})
				if err != nil {
					t.Fatal(err)
				}
				golden(t, "ddl_"+string(format)+"_"+string(d)+".sql", ddl)
				// Every column is declared, quoted for the dialect, with its mapped type.
				for _, c := range tb.Columns {
					name := c.Name
					if d == Athena {
						name = athenaName(c.Name)
					}
					if want := quoted[d](name) + " " + typeIn(d, tb, c, false); !strings.Contains(ddl, want) {
						t.Errorf("no column definition %q in\n%s", want, ddl)
					}
				}
				for _, p := range tb.Partitions {
					if want := quoted[d](p.Name) + " " + typeIn(d, tb, p, true); !strings.Contains(ddl, want) {
						t.Errorf("no partition column %q in\n%s", want, ddl)
					}
				}
				var keys []string
				for _, p := range tb.Partitions {
					if d == Trino {
						keys = append(keys, trinoString(p.Name))
					} else {
						keys = append(keys, quoted[d](p.Name))
					}
				}
				switch d {
				case Trino:
					mustContain(t, ddl, "partitioned_by = ARRAY["+strings.Join(keys, ", ")+"]", "external_location = 's3://lake-bucket/vitals/'", "format = '"+strings.ToUpper(string(format))+"'", "sync_partition_metadata")
				case Spark:
					mustContain(t, ddl, "PARTITIONED BY ("+strings.Join(keys, ", ")+")", "USING "+string(format), "LOCATION 's3://lake-bucket/vitals/'", "MSCK REPAIR TABLE `landing`.`vitals`")
				case Athena:
					if format == FormatJSON {
						mustContain(t, ddl, `WITH SERDEPROPERTIES ('mapping.we_ird' = 'we"ird')`)
					}
					mustContain(t, ddl, "CREATE EXTERNAL TABLE IF NOT EXISTS `landing`.`vitals`", "PARTITIONED BY (", "LOCATION 's3://lake-bucket/vitals/'", "MSCK REPAIR TABLE `landing`.`vitals`")
				}
			})
		}
	}
}

func mustContain(t *testing.T, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("lacks %q:\n%s", w, s)
		}
	}
}

func TestExternalDDLLocations(t *testing.T) {
	tb := crawlFixture(t, FormatJSON)
	if _, err := ExternalDDL(tb, Athena, DDLOptions{}); !errors.Is(err, ErrLocalLocation) || !strings.Contains(err.Error(), "--location s3://") {
		t.Fatalf("athena over a local folder: %v", err)
	}
	ddl, err := ExternalDDL(tb, Spark, DDLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, ddl, "LOCATION 'file://"+tb.Location+"/'")
	ddl, _ = ExternalDDL(tb, Spark, DDLOptions{Location: `s3://b/it's\x`})
	mustContain(t, ddl, `LOCATION 's3://b/it\'s\\x/'`)
	ddl, _ = ExternalDDL(tb, Trino, DDLOptions{Location: "s3://b/it's/"})
	mustContain(t, ddl, `external_location = 's3://b/it''s/'`)
	if _, err := ExternalDDL(tb, "presto", DDLOptions{}); err == nil {
		t.Fatal("unknown dialect accepted")
	}
}

func TestIcebergDDL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var lc lake.Config
	lc = lc.WithDefaults(dir)
	st, err := lake.Open(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), lc)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cols := []lake.Column{{Name: "subject", Type: lake.String}, {Name: "time", Type: lake.Timestamp}, {Name: "bpm", Type: lake.Float64}, {Name: "n", Type: lake.Int64}}
	if err := st.AppendRows(ctx, "trusted", "heart_rate", cols, [][]any{{"p1", time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), 61.0, int64(1)}}); err != nil {
		t.Fatal(err)
	}
	tables, err := st.Tables(ctx)
	if err != nil || len(tables) != 1 {
		t.Fatalf("%v %v", tables, err)
	}
	ti := tables[0]
	meta := filepath.Base(ti.MetadataLocation)

	ddl, err := IcebergDDL(ti, Trino, DDLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, ddl, `CALL "iceberg".system.register_table(schema_name => 'trusted', table_name => 'heart_rate', table_location => '`+strings.TrimRight(ti.Location, "/")+`', metadata_file_name => '`+meta+`');`,
		"1 rows in 1 files")
	ddl, err = IcebergDDL(ti, Spark, DDLOptions{Catalog: "lake"})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, ddl, "CALL `lake`.system.register_table(table => 'trusted.heart_rate', metadata_file => '"+ti.MetadataLocation+"');")
	if _, err := IcebergDDL(ti, Athena, DDLOptions{}); !errors.Is(err, ErrLocalLocation) {
		t.Fatalf("athena over a file:// warehouse: %v", err)
	}
	// The same table in an S3 warehouse: the Glue CreateTable input.
	s3 := ti
	s3.Location = "s3://wh/trusted/heart_rate"
	s3.MetadataLocation = "s3://wh/trusted/heart_rate/metadata/" + meta
	ddl, err = IcebergDDL(s3, Athena, DDLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, ddl, "aws glue create-table --database-name 'trusted'", `"table_type":"ICEBERG"`, `"metadata_location":"`+s3.MetadataLocation+`"`,
		`{"Name":"time","Type":"timestamp"}`, `{"Name":"n","Type":"bigint"}`, `{"Name":"bpm","Type":"double"}`)
}

func TestInventory(t *testing.T) {
	ice := []lake.TableInfo{{Zone: "trusted", Name: "heart_rate", Rows: 5, Files: 1, Bytes: 900, Location: "file:///l/trusted/heart_rate"},
		{Zone: "landing", Name: "http", Rows: 2, Files: 1}}
	ext := []Table{{Zone: "trusted", Name: "heart_rate", Format: FormatCSV}, {Zone: "curated", Name: "a", Format: FormatJSON, Rows: 3}}
	got := Inventory(ice, ext)
	var keys []string
	for _, e := range got {
		keys = append(keys, e.Zone+"."+e.Name+":"+e.Kind)
	}
	if want := "landing.http:iceberg trusted.heart_rate:external trusted.heart_rate:iceberg curated.a:external"; strings.Join(keys, " ") != want {
		t.Fatalf("order %v, want %s", keys, want)
	}
	if !got[1].Shadowed || got[3].Shadowed {
		t.Fatalf("shadowed flags %+v", got)
	}
}
