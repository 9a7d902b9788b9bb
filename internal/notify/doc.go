// Package notify turns alerts into notifications the way Prometheus Alertmanager does:
// a routing tree matches alert labels to receivers, alerts are grouped (group_by,
// group_wait, group_interval), a notification log de-duplicates and enforces
// repeat_interval, silences and inhibition rules mute alerts, and resolved notices are sent
// when every firing alert a receiver was told about has resolved.
//
// Receivers are channels: email over SMTP (STARTTLS, AUTH), a generic JSON webhook (with a
// Slack-compatible option), forwarding to a Prometheus Alertmanager (API v2), and the log.
//
// Invariants: the notification log (what each receiver was told, per group) is written only
// after a channel accepted a notification, so a crash re-sends rather than loses; silences
// and the notification log live in NATS KV buckets and survive restarts. Secrets (SMTP
// passwords, webhook tokens) are read from files and never logged.
//
// Concurrency: a Dispatcher is safe for concurrent use. Run owns the scheduler goroutine and
// the delivery workers and returns after they stopped. A Silences store owns a KV watcher
// goroutine stopped by Close.
package notify
