#!/bin/sh
# Reproduces the ECG figures in docs/ecg.md and docs/benchmarks.md (section "ECG").
# Usage: bench/ecg/run.sh [DATA_DIR]   (default: ../shared/data/mitdb-ds1 beside the checkout)
# Output goes to bench/ecg/out/. Takes about eight minutes on two cores (longer when loaded).
set -eu
cd "$(dirname "$0")/../.."
data=${1:-../shared/data/mitdb-ds1}
out=bench/ecg/out
mkdir -p "$out"
go build -o "$out/pulselake" ./cmd/pulselake
pl="$out/pulselake"

# QRS detection on every DS1 record (per-record and gross Se / +P, 150 ms window).
go test ./internal/ecg -run TestQRSAllDS1 -v -count=1 | tee "$out/qrs.txt"

# Training time and model size of the default model (all 22 DS1 records, seed 1).
/usr/bin/time -p "$pl" ecg train --records "$data" --seed 1 --out "$out/model.bin" 2>&1 | tee "$out/train.txt"

# (1) Intra-patient: random 80/20 beat split of DS1 (seeds 1 to 3, as docs/ecg.md).
"$pl" ecg eval --records "$data" --split random --test-share 0.2 --seed 1 | tee "$out/random.txt"
"$pl" ecg eval --records "$data" --split random --test-share 0.2 --seed 1 --json > "$out/random.json"
for seed in 2 3; do
	"$pl" ecg eval --records "$data" --split random --test-share 0.2 --seed $seed | tee "$out/random-seed$seed.txt"
done

# (2) Inter-patient: leave-records-out cross-validation within DS1 (5 folds, round-robin;
# seeds 1 and 2, as docs/ecg.md).
"$pl" ecg eval --records "$data" --split records --folds 5 --seed 1 | tee "$out/records.txt"
"$pl" ecg eval --records "$data" --split records --folds 5 --seed 2 | tee "$out/records-seed2.txt"

# Micro-benchmarks: classification beats/s and QRS samples/s on one core.
go test ./internal/ecg -run '^$' -bench . -benchtime 2s -cpu 1 -count=1 | tee "$out/bench.txt"

# Beats without RR features (ecg_beat readings): the shape-only model, both splits.
"$pl" ecg eval --records "$data" --split random --test-share 0.2 --seed 1 --without-rr | tee "$out/random-norr.txt"
"$pl" ecg eval --records "$data" --split records --folds 5 --seed 1 --without-rr | tee "$out/records-norr.txt"

# Streaming classification in serve: ecg_beat readings over HTTP until every prediction is
# stored, against ingest alone (classification off) in the same run.
go test ./e2e -run '^$' -bench StreamingECG -benchtime 20000x -count 2 | tee "$out/streaming.txt"
