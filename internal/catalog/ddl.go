package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/apache/iceberg-go"

	"github.com/pulselake/pulselake/internal/lake"
)

// Dialect is a SQL engine DDL is written for.
type Dialect string

// Dialects of DDL.
const (
	Athena Dialect = "athena"
	Trino  Dialect = "trino"
	Spark  Dialect = "spark"
)

// Dialects lists the supported dialects.
var Dialects = []Dialect{Athena, Trino, Spark}

// DDLOptions adjusts the statements.
type DDLOptions struct {
	// Location replaces the table's location, e.g. the s3:// prefix the crawled folder was
	// copied to. Athena needs an s3:// location.
	Location string
	// Catalog is the engine's catalog name: Trino's hive (external tables, default "hive")
	// or iceberg catalog (default "iceberg"), Spark's Iceberg catalog (default
	// "spark_catalog").
	Catalog string
}

// ErrLocalLocation is returned for Athena DDL of data that is not on S3.
var ErrLocalLocation = errors.New("Athena reads only s3:// locations")

// ExternalDDL returns statements that register a crawled table in the dialect's catalog
// over the same files.
func ExternalDDL(t Table, d Dialect, o DDLOptions) (string, error) {
	loc, err := location(t.Location, o.Location, d)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "-- %s.%s: %d rows in %d %s files (%s), crawled %s by pulselake\n", t.Zone, t.Name, t.Rows, t.Files, t.Format, HumanBytes(t.Bytes), t.CrawledAt)
	switch d {
	case Athena:
		athenaExternal(&b, t, loc)
	case Trino:
		trinoExternal(&b, t, loc, or(o.Catalog, "hive"))
	case Spark:
		sparkExternal(&b, t, loc)
	default:
		return "", fmt.Errorf("dialect %q: want athena, trino or spark", d)
	}
	return b.String(), nil
}

// location returns the table location as a URL with a trailing slash.
func location(local, override string, d Dialect) (string, error) {
	loc := override
	if loc == "" {
		if strings.Contains(local, "://") {
			loc = local
		} else {
			loc = (&url.URL{Scheme: "file", Path: local}).String()
		}
	}
	u, err := url.Parse(loc)
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("location %q: want a URL such as s3://bucket/prefix/", loc)
	}
	if d == Athena && u.Scheme != "s3" {
		return "", fmt.Errorf("%w, and %s is not one: copy the files to S3 keeping the k=v folders (aws s3 sync) and pass --location s3://bucket/prefix/", ErrLocalLocation, loc)
	}
	if !strings.HasSuffix(loc, "/") {
		loc += "/"
	}
	return loc, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// backtick quotes an identifier for Hive DDL (Athena) and Spark.
func backtick(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// dquote quotes an identifier for Trino.
func dquote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// hiveString is a string literal for Hive DDL and Spark SQL (backslash escapes).
func hiveString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// trinoString is a string literal for Trino (doubled quotes).
func trinoString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// athenaType maps a portable type for an Athena table of the given format. Athena's CSV
// SerDes do not parse ISO-8601 timestamps (LazySimpleSerDe wants java.sql.Timestamp text,
// OpenCSVSerde epoch milliseconds), so CSV timestamps are declared string; OpenCSVSerde also
// reads dates only as day numbers.
func athenaType(typ string, t Table) (string, string) {
	if t.Format == FormatCSV {
		if typ == TypeTimestamp {
			return TypeString, "timestamp text: from_iso8601_timestamp(col) or CAST(col AS timestamp)"
		}
		if typ == TypeDate && t.Quoted {
			return TypeString, "date text: CAST(col AS date)"
		}
	}
	return typ, ""
}

func athenaExternal(b *strings.Builder, t Table, loc string) {
	name := backtick(t.Zone) + "." + backtick(t.Name)
	fmt.Fprintf(b, "CREATE DATABASE IF NOT EXISTS %s;\n\n", backtick(t.Zone))
	fmt.Fprintf(b, "CREATE EXTERNAL TABLE IF NOT EXISTS %s (\n", name)
	var mappings []string
	for i, c := range t.Columns {
		typ, note := athenaType(c.Type, t)
		if c.Nested {
			note = "JSON text of an object or array"
		}
		name := c.Name
		if safe := athenaName(c.Name); safe != strings.ToLower(c.Name) {
			switch t.Format {
			case FormatCSV: // read by position: any name works
				name, note = safe, strings.TrimPrefix(note+"; ", "; ")+"header "+c.Name
			case FormatJSON: // the OpenX SerDe maps the key to the column
				name = safe
				mappings = append(mappings, hiveString("mapping."+safe)+" = "+hiveString(c.Name))
			default:
				note = strings.TrimPrefix(note+"; ", "; ") + "Athena accepts only letters, digits and _ in column names: rewrite the files or read them through a view elsewhere"
			}
		}
		writeColumn(b, backtick(name)+" "+typ, note, i == len(t.Columns)-1)
	}
	b.WriteString(")\n")
	if len(t.Partitions) > 0 {
		b.WriteString("PARTITIONED BY (\n")
		for i, p := range t.Partitions {
			writeColumn(b, backtick(p.Name)+" "+p.Type, "", i == len(t.Partitions)-1)
		}
		b.WriteString(")\n")
	}
	var props []string
	switch t.Format {
	case FormatJSON:
		b.WriteString("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\n")
		if len(mappings) > 0 {
			fmt.Fprintf(b, "WITH SERDEPROPERTIES (%s)\n", strings.Join(mappings, ", "))
		}
		b.WriteString("STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'\n")
		b.WriteString("  OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n")
	case FormatCSV:
		if t.Quoted {
			b.WriteString("ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'\n")
			b.WriteString("WITH SERDEPROPERTIES ('separatorChar' = ',', 'quoteChar' = '\"', 'escapeChar' = '\\\\')\n")
			props = append(props, "'use.null.for.invalid.data' = 'true'")
		} else {
			b.WriteString("ROW FORMAT DELIMITED FIELDS TERMINATED BY ','\n")
		}
		b.WriteString("STORED AS TEXTFILE\n")
		props = append([]string{"'skip.header.line.count' = '1'"}, props...)
	case FormatParquet:
		b.WriteString("STORED AS PARQUET\n")
	}
	fmt.Fprintf(b, "LOCATION %s", hiveString(loc))
	if len(props) > 0 {
		fmt.Fprintf(b, "\nTBLPROPERTIES (%s)", strings.Join(props, ", "))
	}
	b.WriteString(";\n")
	if t.Format == FormatCSV {
		b.WriteString("-- CSV columns are read by position: every file needs the header order above.\n")
	}
	if len(t.Partitions) > 0 {
		b.WriteString("\n-- Load the k=v partitions (run again after new partition folders appear),\n")
		b.WriteString("-- or use partition projection instead (docs/catalog.md):\n")
		fmt.Fprintf(b, "MSCK REPAIR TABLE %s;\n", name)
	}
}

// athenaName is a column name Athena accepts: lower case letters, digits and underscores
// (other characters become underscores).
func athenaName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, s)
}

// trinoType maps a portable type to Trino.
func trinoType(typ string) string {
	switch typ {
	case TypeString:
		return "varchar"
	case TypeTimestamp:
		return "timestamp(3)"
	}
	return typ
}

func trinoExternal(b *strings.Builder, t Table, loc, cat string) {
	schema := dquote(cat) + "." + dquote(t.Zone)
	fmt.Fprintf(b, "CREATE SCHEMA IF NOT EXISTS %s;\n\n", schema)
	table := t.Name
	csv := t.Format == FormatCSV
	if csv {
		// The hive connector's CSV format supports only varchar columns: the table holds the
		// text and a view of the crawled name converts it.
		table = t.Name + "_csv"
		b.WriteString("-- Trino reads CSV tables as varchar only; the view below converts the types.\n")
	}
	fmt.Fprintf(b, "CREATE TABLE IF NOT EXISTS %s.%s (\n", schema, dquote(table))
	all := append(append([]Column{}, t.Columns...), t.Partitions...)
	for i, c := range all {
		typ := trinoType(c.Type)
		if csv {
			typ = "varchar"
		}
		note := ""
		if c.Nested {
			note = "JSON text of an object or array"
		}
		writeColumn(b, dquote(c.Name)+" "+typ, note, i == len(all)-1)
	}
	b.WriteString(")\nWITH (\n")
	props := []string{"external_location = " + trinoString(loc), "format = " + trinoString(strings.ToUpper(string(t.Format)))}
	if csv {
		props = append(props, "skip_header_line_count = 1")
	}
	if len(t.Partitions) > 0 {
		keys := make([]string, len(t.Partitions))
		for i, p := range t.Partitions {
			keys[i] = trinoString(p.Name)
		}
		props = append(props, "partitioned_by = ARRAY["+strings.Join(keys, ", ")+"]")
	}
	b.WriteString("  " + strings.Join(props, ",\n  ") + "\n);\n")
	if len(t.Partitions) > 0 {
		b.WriteString("\n-- Register the k=v partitions (run again after new partition folders appear):\n")
		fmt.Fprintf(b, "CALL %s.system.sync_partition_metadata(schema_name => %s, table_name => %s, mode => 'ADD');\n",
			dquote(cat), trinoString(t.Zone), trinoString(table))
	}
	if csv {
		fmt.Fprintf(b, "\nCREATE OR REPLACE VIEW %s.%s AS\nSELECT\n", schema, dquote(t.Name))
		for i, c := range all {
			writeColumn(b, trinoCast(dquote(c.Name), c.Type)+" AS "+dquote(c.Name), "", i == len(all)-1)
		}
		fmt.Fprintf(b, "FROM %s.%s;\n", schema, dquote(table))
	}
}

// trinoCast converts varchar text to a portable type; text that does not convert is NULL.
func trinoCast(col, typ string) string {
	switch typ {
	case TypeString:
		return col
	case TypeTimestamp:
		// CAST takes 'YYYY-MM-DD hh:mm:ss'; from_iso8601_timestamp the T and zone forms.
		return fmt.Sprintf("COALESCE(TRY_CAST(%s AS timestamp(3)), TRY(CAST(from_iso8601_timestamp(%s) AS timestamp(3))))", col, col)
	}
	return fmt.Sprintf("TRY_CAST(%s AS %s)", col, trinoType(typ))
}

func sparkExternal(b *strings.Builder, t Table, loc string) {
	name := backtick(t.Zone) + "." + backtick(t.Name)
	fmt.Fprintf(b, "CREATE DATABASE IF NOT EXISTS %s;\n\n", backtick(t.Zone))
	fmt.Fprintf(b, "CREATE TABLE IF NOT EXISTS %s (\n", name)
	all := append(append([]Column{}, t.Columns...), t.Partitions...)
	for i, c := range all {
		note := ""
		if c.Nested {
			note = "JSON text of an object or array"
		}
		writeColumn(b, backtick(c.Name)+" "+strings.ToUpper(c.Type), note, i == len(all)-1)
	}
	fmt.Fprintf(b, ")\nUSING %s\n", t.Format)
	if t.Format == FormatCSV {
		b.WriteString("OPTIONS (header 'true')\n")
	}
	if len(t.Partitions) > 0 {
		keys := make([]string, len(t.Partitions))
		for i, p := range t.Partitions {
			keys[i] = backtick(p.Name)
		}
		fmt.Fprintf(b, "PARTITIONED BY (%s)\n", strings.Join(keys, ", "))
	}
	fmt.Fprintf(b, "LOCATION %s;\n", hiveString(loc))
	if t.Format == FormatCSV {
		b.WriteString("-- CSV columns are matched by position: every file needs the header order above.\n")
	}
	if len(t.Partitions) > 0 {
		b.WriteString("\n-- Discover the k=v partitions (run again after new partition folders appear):\n")
		fmt.Fprintf(b, "MSCK REPAIR TABLE %s;\n", name)
	}
}

func writeColumn(b *strings.Builder, def, note string, last bool) {
	b.WriteString("  " + def)
	if !last {
		b.WriteString(",")
	}
	if note != "" {
		b.WriteString(" -- " + note)
	}
	b.WriteString("\n")
}

// IcebergDDL returns what registers a pulselake Iceberg table (its current metadata file) in
// the dialect's catalog. Registration pins the metadata file of this moment: later commits
// of pulselake are not seen until the table is registered again (or the engines share
// pulselake's catalog).
func IcebergDDL(ti lake.TableInfo, d Dialect, o DDLOptions) (string, error) {
	loc, meta := ti.Location, ti.MetadataLocation
	if meta == "" {
		return "", fmt.Errorf("table %s.%s has no metadata file yet", ti.Zone, ti.Name)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "-- %s.%s: Iceberg table, %d rows in %d files (%s), snapshot %d\n", ti.Zone, ti.Name, ti.Rows, ti.Files, HumanBytes(ti.Bytes), ti.SnapshotID)
	fmt.Fprintf(&b, "-- metadata %s\n", meta)
	b.WriteString("-- Registering pins this metadata file; register again after new commits, or share the\n")
	b.WriteString("-- catalog (lake.catalog: rest) so every engine sees the current snapshot.\n")
	switch d {
	case Trino:
		cat := or(o.Catalog, "iceberg")
		b.WriteString("-- Needs iceberg.register-table-procedure.enabled=true in the catalog properties.\n")
		fmt.Fprintf(&b, "CREATE SCHEMA IF NOT EXISTS %s.%s;\n", dquote(cat), dquote(ti.Zone))
		fmt.Fprintf(&b, "CALL %s.system.register_table(schema_name => %s, table_name => %s, table_location => %s, metadata_file_name => %s);\n",
			dquote(cat), trinoString(ti.Zone), trinoString(ti.Name), trinoString(strings.TrimRight(loc, "/")), trinoString(path.Base(meta)))
	case Spark:
		cat := or(o.Catalog, "spark_catalog")
		fmt.Fprintf(&b, "-- Needs an Iceberg catalog: spark.sql.catalog.%s = org.apache.iceberg.spark.SparkSessionCatalog\n", cat)
		b.WriteString("-- (or SparkCatalog) and spark.sql.extensions = org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions.\n")
		fmt.Fprintf(&b, "CREATE DATABASE IF NOT EXISTS %s.%s;\n", backtick(cat), backtick(ti.Zone))
		fmt.Fprintf(&b, "CALL %s.system.register_table(table => %s, metadata_file => %s);\n",
			backtick(cat), hiveString(ti.Zone+"."+ti.Name), hiveString(meta))
	case Athena:
		if u, err := url.Parse(meta); err != nil || u.Scheme != "s3" {
			return "", fmt.Errorf("%w; %s.%s lives in %s: put the warehouse on S3 (lake.warehouse: s3://bucket/prefix) to query it from Athena", ErrLocalLocation, ti.Zone, ti.Name, loc)
		}
		b.WriteString("-- Athena's CREATE TABLE ... TBLPROPERTIES ('table_type'='ICEBERG') makes a new, empty table;\n")
		b.WriteString("-- an existing one is registered in the Glue Data Catalog (AWS CLI), then queried in Athena.\n")
		db, _ := json.Marshal(map[string]any{"Name": ti.Zone})
		fmt.Fprintf(&b, "aws glue create-database --database-input %s\n", shellQuote(string(db)))
		input := map[string]any{
			"Name":      ti.Name,
			"TableType": "EXTERNAL_TABLE",
			"Parameters": map[string]string{
				"table_type":        "ICEBERG",
				"metadata_location": meta,
			},
			"StorageDescriptor": map[string]any{"Location": loc, "Columns": glueColumns(ti.Schema)},
		}
		tb, _ := json.Marshal(input)
		fmt.Fprintf(&b, "aws glue create-table --database-name %s --table-input %s\n", shellQuote(ti.Zone), shellQuote(string(tb)))
		b.WriteString("-- After new commits: aws glue update-table with the new metadata_location\n")
		b.WriteString("-- (and previous_metadata_location set to the old one).\n")
	default:
		return "", fmt.Errorf("dialect %q: want athena, trino or spark", d)
	}
	return b.String(), nil
}

type glueColumn struct {
	Name string `json:"Name"`
	Type string `json:"Type"`
}

// glueColumns lists an Iceberg schema's columns with Hive type names (what Glue shows).
func glueColumns(sc *iceberg.Schema) []glueColumn {
	if sc == nil {
		return nil
	}
	var out []glueColumn
	for _, f := range sc.Fields() {
		out = append(out, glueColumn{Name: f.Name, Type: hiveType(f.Type)})
	}
	return out
}

func hiveType(t iceberg.Type) string {
	switch t := t.(type) {
	case iceberg.Int64Type:
		return "bigint"
	case iceberg.Int32Type:
		return "int"
	case iceberg.TimestampTzType, iceberg.TimestampType:
		return "timestamp"
	case *iceberg.ListType:
		return "array<" + hiveType(t.Element) + ">"
	}
	return t.String() // string, double, float, boolean, date, binary, decimal(p, s)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// HumanBytes writes a byte count with a binary unit (1.5 MiB).
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
