// Package rules evaluates alert rules over the stream of accepted readings and drives their
// alerts through the state machine of package alert (inactive → pending → firing →
// resolved), modelled on Prometheus' rule engine.
//
// A rule's `when` is an expr-lang/expr expression over one reading: its value names
// (systolic, bpm, ...), text values, subject, device, kind and time, plus window functions
// over the recent readings of the same subject and device: avg(bpm, 5m), min, max, count,
// delta, rate. `absent_for` rules fire when a device that was seen goes silent.
//
// Alert identity is (rule, subject, device). Every state change is written to a NATS KV
// bucket before the stream message that caused it is acknowledged, and the state is
// restored on start, so a restart neither forgets a pending alert nor fires twice.
//
// Concurrency: an Engine is safe for concurrent use; Run owns the consumer and tick
// goroutines and returns after they stopped. The evaluator inside is single-threaded
// behind the engine's mutex.
package rules
