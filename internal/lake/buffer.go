package lake

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBufferRows bounds the rows a RowBuffer holds across its tables.
const DefaultBufferRows = 100_000

// RowBuffer collects rows that monitoring produces (ops.alerts, ops.predictions,
// ops.anomalies) and commits them to their tables in one Iceberg commit per table and
// interval, instead of one commit per row. It is bounded: when full, Add refuses rows and
// counts them as dropped. Safe for concurrent use.
type RowBuffer struct {
	log      *slog.Logger
	store    *Store
	interval time.Duration
	max      int
	dropped  *prometheus.CounterVec

	mu     sync.Mutex
	tables map[string]*bufTable
	order  []string
	rows   int
}

type bufTable struct {
	zone, name string
	cols       []Column
	rows       [][]any
}

// NewRowBuffer returns a buffer committing to store every interval (default 5s) holding at
// most maxRows rows (default DefaultBufferRows). Drive it with Run.
func NewRowBuffer(log *slog.Logger, reg prometheus.Registerer, store *Store, interval time.Duration, maxRows int) *RowBuffer {
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	if maxRows <= 0 {
		maxRows = DefaultBufferRows
	}
	b := &RowBuffer{log: log, store: store, interval: interval, max: maxRows, tables: map[string]*bufTable{},
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulselake_lake_buffer_dropped_rows_total",
			Help: "Monitoring rows (ops zone) dropped because the lake buffer was full or the commit kept failing."}, []string{"table"})}
	if reg != nil {
		reg.MustRegister(b.dropped)
	}
	return b
}

// Add queues one row for zone.name with columns cols (the same for every row of a table).
// It reports false when the buffer is full and the row was dropped.
func (b *RowBuffer) Add(zone, name string, cols []Column, row []any) bool {
	key := zone + "." + name
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rows >= b.max {
		b.dropped.WithLabelValues(key).Inc()
		return false
	}
	t := b.tables[key]
	if t == nil {
		t = &bufTable{zone: zone, name: name, cols: cols}
		b.tables[key] = t
		b.order = append(b.order, key)
	}
	t.rows = append(t.rows, row)
	b.rows++
	return true
}

// Run commits the buffered rows every interval until ctx ends, then commits what is left.
func (b *RowBuffer) Run(ctx context.Context) error {
	tick := time.NewTicker(b.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b.Flush(fctx)
			return nil
		case <-tick.C:
			b.Flush(ctx)
		}
	}
}

// Flush commits every buffered row now. Rows of a table whose commit fails stay buffered
// for the next flush (they still count against the bound).
func (b *RowBuffer) Flush(ctx context.Context) {
	b.mu.Lock()
	tables, order := b.tables, b.order
	b.tables, b.order = map[string]*bufTable{}, nil
	b.mu.Unlock()
	for _, key := range order {
		t := tables[key]
		err := b.store.AppendRows(ctx, t.zone, t.name, t.cols, t.rows)
		b.mu.Lock()
		if err != nil {
			b.log.Warn("committing monitoring rows to the lake; will retry", "table", key, "rows", len(t.rows), "err", err)
			if nt := b.tables[key]; nt != nil {
				nt.rows = append(t.rows, nt.rows...)
			} else {
				b.tables[key] = t
				b.order = append(b.order, key)
			}
		} else {
			b.rows -= len(t.rows)
		}
		b.mu.Unlock()
	}
}
