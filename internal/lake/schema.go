package lake

import (
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/pulselake/pulselake/internal/reading"
)

// ColumnType is the type of a column of a table written with AppendRows.
type ColumnType int

// Column types. Go values for AppendRows: string, float64 (or any integer), int64 (or any
// integer), bool, time.Time, []float64; nil is NULL.
const (
	String ColumnType = iota
	Float64
	Int64
	Bool
	Timestamp // microseconds, UTC
	Float64List
)

// Column declares one column of a table.
type Column struct {
	Name string
	Type ColumnType
}

func (t ColumnType) iceberg(id *int) iceberg.Type {
	switch t {
	case Float64:
		return iceberg.PrimitiveTypes.Float64
	case Int64:
		return iceberg.PrimitiveTypes.Int64
	case Bool:
		return iceberg.PrimitiveTypes.Bool
	case Timestamp:
		return iceberg.PrimitiveTypes.TimestampTz
	case Float64List:
		*id++
		return &iceberg.ListType{ElementID: *id, Element: iceberg.PrimitiveTypes.Float64}
	}
	return iceberg.PrimitiveTypes.String
}

// schemaOf builds an Iceberg schema; every column is optional so that later schema
// additions and missing values need no special case.
func schemaOf(cols []Column) *iceberg.Schema {
	fields := make([]iceberg.NestedField, 0, len(cols))
	id := len(cols) // list element IDs follow the column IDs
	for i, c := range cols {
		fields = append(fields, iceberg.NestedField{ID: i + 1, Name: c.Name, Type: c.Type.iceberg(&id)})
	}
	return iceberg.NewSchema(0, fields...)
}

func arrowSchema(sc *iceberg.Schema) (*arrow.Schema, error) {
	as, err := table.SchemaToArrowSchema(sc, nil, true, false)
	if err != nil {
		return nil, fmt.Errorf("converting schema to arrow: %w", err)
	}
	return as, nil
}

// Common column names.
const (
	ColSubject    = "subject"
	ColDevice     = "device"
	ColTime       = "time"
	ColID         = "id"
	ColIngestTime = "ingest_time"
	ColSource     = "source"
	ColReceived   = "received"
)

// TrustedColumns are the columns of trusted.<kind>: subject, device, time, the kind's values
// in declaration order, then id (the reading's identity, hex), ingest_time and source.
func TrustedColumns(k *reading.Kind) []Column {
	cols := []Column{{ColSubject, String}, {ColDevice, String}, {ColTime, Timestamp}}
	for _, f := range k.Fields {
		switch f.Type {
		case reading.Number:
			cols = append(cols, Column{f.Name, Float64})
		case reading.Text:
			cols = append(cols, Column{f.Name, String})
		case reading.Samples:
			cols = append(cols, Column{f.Name, Float64List})
		}
	}
	return append(cols, Column{ColID, String}, Column{ColIngestTime, Timestamp}, Column{ColSource, String})
}

// LandingColumns are the columns of landing.<source>: every record as received.
var LandingColumns = []Column{
	{ColReceived, Timestamp},
	{"seq", Int64},   // ingest stream sequence of the batch
	{"entry", Int64}, // index of the record within the batch
	{ColID, String},  // identity of an accepted reading; NULL when rejected
	{ColSubject, String},
	{"accepted", Bool},
	{"raw", String},
	{"origin", String},
}

// QuarantineColumns are the columns of quarantine.readings: rejected records with the reason.
var QuarantineColumns = []Column{
	{ColReceived, Timestamp},
	{ColSource, String},
	{"seq", Int64},
	{ColSubject, String}, // best effort: the payload's subject when it has one
	{"code", String},     // first error's stable code
	{"path", String},
	{"message", String},
	{"errors", String}, // every error, JSON
	{"raw", String},
	{"origin", String},
}

// QuarantineTable is the name of the quarantine table.
const QuarantineTable = "readings"

// TableName turns a source or kind into a table name: lower case letters, digits and '_'.
func TableName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}
