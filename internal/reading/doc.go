// Package reading defines a sensor reading, the kinds of readings pulselake understands,
// and the Parse → Validate → Normalize path every reading takes before it is stored.
//
// Invariants:
//   - A Reading that left Parse without field errors has a known kind, a UTC time truncated
//     to microseconds, and values inside the plausible range of its kind.
//   - Field errors carry a stable code and a JSON-pointer path into the payload as received,
//     so clients and the quarantine zone can name exactly what was wrong.
//   - The identity of a reading (Identity) is the client's idempotency key when given, else a
//     hash of (subject, device, kind, time); it is what de-duplication keys on everywhere.
//
// A Registry is immutable after construction and safe for concurrent use.
package reading
