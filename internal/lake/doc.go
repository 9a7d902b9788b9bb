// Package lake writes pulselake's Iceberg tables: it consumes the ingest stream and lands
// every batch in the landing, trusted and quarantine zones, and offers a small table API
// (AppendRows) that other packages use for the ops zone.
//
// Layout (docs/lake.md): zones are Iceberg namespaces; tables live in a warehouse on the
// local file system (file://<data>/lake, SQLite catalog at <data>/lake/catalog.db) or on
// S3-compatible storage with a SQL or REST catalog.
//
// Invariants:
//   - A stream message is acknowledged only after every table it touched has committed, or
//     has been set aside with a durable consumer of its own from which it catches up later
//     (repair.go): one failing table does not stop the others.
//   - A reading is written to trusted.<kind> at most once: each table records, in the same
//     Iceberg commit as its rows, the highest stream sequence it has absorbed (table property
//     pulselake.stream-seq, also in the snapshot summary); messages at or below it are
//     skipped after a restart, and identities already present in a day partition are
//     dropped (identity index per kind and day).
//   - The writer consumes in stream order: on start it resets its durable consumer to the
//     consumer's ack floor (never deleting it), and it retries a failed commit in place
//     instead of moving on.
//
// Concurrency: a Writer is driven by one goroutine (Run) that owns the consumer, the buffer
// and the compaction timer. Store is safe for concurrent use. Only one Writer per warehouse.
package lake
