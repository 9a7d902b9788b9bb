package lake

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go/table"

	"github.com/pulselake/pulselake/internal/reading"
)

// recBuilder builds one Arrow record in a table's schema, column by column.
type recBuilder struct {
	b *array.RecordBuilder
	n int
}

func newRecBuilder(sc *arrow.Schema) *recBuilder {
	return &recBuilder{b: array.NewRecordBuilder(memory.DefaultAllocator, sc)}
}

func (r *recBuilder) str(i int, s string, valid bool) {
	b := r.b.Field(i).(*array.StringBuilder)
	if valid {
		b.Append(s)
	} else {
		b.AppendNull()
	}
}

// bytes appends v to string column i without converting it to a string first.
func (r *recBuilder) bytes(i int, v []byte) {
	r.b.Field(i).(*array.StringBuilder).BinaryBuilder.Append(v)
}

// id appends the hexadecimal form of a reading identity to string column i.
func (r *recBuilder) id(i int, id reading.ID) {
	var h [2 * len(reading.ID{})]byte
	hex.Encode(h[:], id[:])
	r.bytes(i, h[:])
}

// reserve makes room for n more rows in every column.
func (r *recBuilder) reserve(n int) {
	for _, b := range r.b.Fields() {
		b.Reserve(n)
	}
}

// reserveData makes room for n more bytes of values in string column i.
func (r *recBuilder) reserveData(i, n int) {
	if b, ok := r.b.Field(i).(*array.StringBuilder); ok {
		b.ReserveData(n)
	}
}

func (r *recBuilder) f64(i int, v float64, valid bool) {
	b := r.b.Field(i).(*array.Float64Builder)
	if valid {
		b.Append(v)
	} else {
		b.AppendNull()
	}
}

func (r *recBuilder) i64(i int, v int64) { r.b.Field(i).(*array.Int64Builder).Append(v) }

func (r *recBuilder) boolean(i int, v bool) { r.b.Field(i).(*array.BooleanBuilder).Append(v) }

func (r *recBuilder) ts(i int, t time.Time) {
	r.b.Field(i).(*array.TimestampBuilder).Append(arrow.Timestamp(t.UnixMicro()))
}

func (r *recBuilder) list(i int, v []float64, valid bool) {
	b := r.b.Field(i).(*array.ListBuilder)
	if !valid {
		b.AppendNull()
		return
	}
	b.Append(true)
	vb := b.ValueBuilder().(*array.Float64Builder)
	vb.AppendValues(v, nil)
}

func (r *recBuilder) null(i int) { r.b.Field(i).AppendNull() }

// value appends a Go value to column i (AppendRows).
func (r *recBuilder) value(i int, v any) error {
	if v == nil {
		r.null(i)
		return nil
	}
	switch b := r.b.Field(i).(type) {
	case *array.StringBuilder:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a string, got %T", v)
		}
		b.Append(s)
	case *array.Float64Builder:
		f, ok := toFloat(v)
		if !ok {
			return fmt.Errorf("want a number, got %T", v)
		}
		b.Append(f)
	case *array.Int64Builder:
		f, ok := toInt(v)
		if !ok {
			return fmt.Errorf("want an integer, got %T", v)
		}
		b.Append(f)
	case *array.BooleanBuilder:
		x, ok := v.(bool)
		if !ok {
			return fmt.Errorf("want a bool, got %T", v)
		}
		b.Append(x)
	case *array.TimestampBuilder:
		t, ok := v.(time.Time)
		if !ok {
			return fmt.Errorf("want a time.Time, got %T", v)
		}
		b.Append(arrow.Timestamp(t.UnixMicro()))
	case *array.ListBuilder:
		x, ok := v.([]float64)
		if !ok {
			return fmt.Errorf("want []float64, got %T", v)
		}
		r.list(i, x, true)
	default:
		return fmt.Errorf("unsupported column builder %T", b)
	}
	return nil
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	}
	n, ok := toInt(v)
	return float64(n), ok
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), true
	}
	return 0, false
}

func (r *recBuilder) record() arrow.RecordBatch {
	rec := r.b.NewRecordBatch()
	r.n = 0
	return rec
}

func (r *recBuilder) release() { r.b.Release() }

// AppendRows appends rows to zone.name in one Iceberg commit, creating the table with cols
// when it does not exist (partitioned by day of a Timestamp column named "time", if any).
// Each row holds one value per column of cols, in order (see ColumnType for Go types).
// cols may be a subset of an existing table's columns (the others are NULL) but may not name
// a column the table lacks. It is the way other packages write the ops and curated zones.
func (s *Store) AppendRows(ctx context.Context, zone, name string, cols []Column, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	part := ""
	for _, c := range cols {
		if c.Name == ColTime && c.Type == Timestamp {
			part = ColTime
		}
	}
	t, err := s.ensure(ctx, zone, name, schemaOf(cols), part)
	if err != nil {
		return err
	}
	rec, err := buildRows(t, cols, rows)
	if err != nil {
		return fmt.Errorf("appending to %s.%s: %w", zone, name, err)
	}
	defer rec.Release()
	_, err = s.commitAppend(ctx, zone, name, t, []arrow.RecordBatch{rec}, 0)
	return err
}

func buildRows(t *table.Table, cols []Column, rows [][]any) (arrow.RecordBatch, error) {
	as, err := arrowSchema(t.Schema())
	if err != nil {
		return nil, err
	}
	pos := make([]int, len(cols)) // column of cols → field of the table
	have := make([]bool, len(as.Fields()))
	for i, c := range cols {
		idx := as.FieldIndices(c.Name)
		if len(idx) == 0 {
			return nil, fmt.Errorf("table has no column %q", c.Name)
		}
		pos[i] = idx[0]
		have[idx[0]] = true
	}
	rb := newRecBuilder(as)
	defer rb.release()
	for ri, row := range rows {
		if len(row) != len(cols) {
			return nil, fmt.Errorf("row %d has %d values for %d columns", ri, len(row), len(cols))
		}
		for i, v := range row {
			if err := rb.value(pos[i], v); err != nil {
				return nil, fmt.Errorf("row %d column %s: %w", ri, cols[i].Name, err)
			}
		}
		for f, ok := range have {
			if !ok {
				rb.null(f)
			}
		}
	}
	return rb.record(), nil
}
