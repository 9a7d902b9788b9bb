// Package stream is pulselake's durable log: an embedded NATS JetStream server (or a
// connection to an external NATS cluster), the streams and key-value buckets pulselake uses,
// the batch envelope in which readings travel through the stream, and the consumer loop
// (Consumer) every processor of the stream runs: byte-bounded pulls, decoding, the
// processor's handler, acknowledgement after it, redelivery with back-off, and termination
// and quarantine of poison messages.
//
// Invariants:
//   - A batch is acknowledged to its producer only after JetStream stored it; in the
//     embedded server every write is fsynced (SyncAlways) before that acknowledgement.
//   - Consumers acknowledge a message only after its effect is durable; every downstream
//     write is idempotent on the reading identity, so re-delivery is harmless.
//
// Concurrency: Server and Conn are safe for concurrent use. The package starts no goroutine
// that it does not stop in Shutdown/Close.
package stream
