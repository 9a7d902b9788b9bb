// Package ecg turns ECG recordings into classified heartbeats: an online QRS detector,
// heartbeat windows in the 187-sample 125 Hz form of Kachuee et al. (2018) with RR-interval
// features, the AAMI mapping of MIT-BIH beat labels to the classes N, S, V, F and Q, a
// gradient-boosted tree classifier trained in pure Go, and evaluation (confusion matrix,
// sensitivity, positive predictivity, F1).
//
// Invariants: a Beat always holds exactly WindowLen samples in [0, 1]; class indices follow
// the order of Classes (N, S, V, F, Q) everywhere, including the model file and the
// evaluation output. Training is deterministic for a given seed and data.
//
// Concurrency: a Model is immutable after loading and safe for concurrent use; a QRSDetector
// and a BeatStream hold per-stream state and must be used by one goroutine at a time.
// The package has no package-level mutable state. WFDB file reading lives in package wfdb.
package ecg
