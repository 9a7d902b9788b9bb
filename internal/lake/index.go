package lake

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/pulselake/pulselake/internal/reading"
)

// kindIndex holds the identities in trusted.<kind> for recently used day partitions.
type kindIndex struct {
	days map[int64]*dayIndex
}

type dayIndex struct {
	ids  map[reading.ID]struct{}
	used time.Time
}

const microsPerDay = 86400 * 1_000_000

// remember reports whether id is new in the day of ts in trusted.<kind>, and records it.
func (w *Writer) remember(ctx context.Context, kind string, t *table.Table, ts time.Time, id reading.ID) (bool, error) {
	ki := w.index[kind]
	if ki == nil {
		ki = &kindIndex{days: map[int64]*dayIndex{}}
		w.index[kind] = ki
	}
	day := ts.UnixMicro() / microsPerDay
	if ts.UnixMicro() < 0 && ts.UnixMicro()%microsPerDay != 0 {
		day--
	}
	di := ki.days[day]
	if di == nil {
		ids, err := loadIdentities(ctx, t, day)
		if err != nil {
			return false, err
		}
		di = &dayIndex{ids: ids}
		ki.days[day] = di
	}
	di.used = time.Now()
	if _, dup := di.ids[id]; dup {
		return false, nil
	}
	di.ids[id] = struct{}{}
	return true, nil
}

// trimIndex keeps the DedupDays most recently used days of each kind.
func (w *Writer) trimIndex() {
	for _, ki := range w.index {
		for len(ki.days) > w.o.Config.DedupDays {
			var oldest int64
			var at time.Time
			first := true
			for d, di := range ki.days {
				if first || di.used.Before(at) {
					oldest, at, first = d, di.used, false
				}
			}
			delete(ki.days, oldest)
		}
	}
}

// reportIndex sets the gauge of identities held in memory.
func (w *Writer) reportIndex() {
	held := 0
	for _, ki := range w.index {
		for _, di := range ki.days {
			held += len(di.ids)
		}
	}
	w.m.indexIDs.Set(float64(held))
}

// loadIdentities reads the id column of one day partition of a trusted table.
func loadIdentities(ctx context.Context, t *table.Table, day int64) (map[reading.ID]struct{}, error) {
	ids := map[reading.ID]struct{}{}
	if t.CurrentSnapshot() == nil {
		return ids, nil
	}
	from, to := iceberg.Timestamp(day*microsPerDay), iceberg.Timestamp((day+1)*microsPerDay)
	filter := iceberg.NewAnd(
		iceberg.GreaterThanEqual(iceberg.Reference(ColTime), from),
		iceberg.LessThan(iceberg.Reference(ColTime), to))
	_, recs, err := t.Scan(table.WithRowFilter(filter), table.WithSelectedFields(ColID)).ToArrowRecords(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading identities of %v: %w", t.Identifier(), err)
	}
	for rec, err := range recs {
		if err != nil {
			return nil, fmt.Errorf("reading identities of %v: %w", t.Identifier(), err)
		}
		col, ok := rec.Column(0).(*array.String)
		if ok {
			for i := range col.Len() {
				if col.IsNull(i) {
					continue
				}
				if id, err := reading.ParseID(col.Value(i)); err == nil {
					ids[id] = struct{}{}
				}
			}
		}
		rec.Release()
	}
	return ids, nil
}
