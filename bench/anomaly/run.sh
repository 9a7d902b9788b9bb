#!/usr/bin/env bash
# Parity and speed of pulselake's anomaly detectors against scikit-learn, in one run.
#
#   bench/anomaly/run.sh            # full run: parity on the Fitbit data and generated series,
#                                   # Isolation Forest fit+score timing on 1M rows
#   ROWS=200000 bench/anomaly/run.sh  # smaller timing run
#
# Needs Go and Debian's python3-sklearn (installed with apt-get when missing; /usr/bin/python3).
# Go runs with GOMAXPROCS=1 and scikit-learn with n_jobs=1: single-threaded on both sides.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
rows=${ROWS:-1000000}
fitbit=${FITBIT:-$repo/../shared/data/fitbit-heartrate-1user.csv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! /usr/bin/python3 -c 'import sklearn' 2>/dev/null; then
	echo "installing python3-sklearn" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq >/dev/null
	$sudo apt-get install -y python3-sklearn >/dev/null
fi

# Prefer the real binary; fall back to the detect-only driver when another package of the tree
# does not build.
bin="$work/pulselake"
if (cd "$repo" && go build -o "$bin" ./cmd/pulselake) 2>"$work/build.log"; then
	detect_cmd=("$bin" detect)
	echo "using: pulselake detect ($(cd "$repo" && git rev-parse --short HEAD))"
else
	echo "pulselake does not build here (see below); using bench/anomaly/detect, the same code path" >&2
	head -5 "$work/build.log" >&2
	(cd "$repo" && go build -o "$work/detect" ./bench/anomaly/detect)
	detect_cmd=("$work/detect")
fi
detect() { "${detect_cmd[@]}" "$@"; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; $(date -u +%F)"
echo "python: $(/usr/bin/python3 -c 'import sklearn, numpy, sys; print("scikit-learn", sklearn.__version__, "numpy", numpy.__version__, "python", sys.version.split()[0])')"

/usr/bin/python3 "$here/compare.py" prepare --work "$work" --fitbit "$fitbit" --rows "$rows"

# Parity: every data set, three seeds, contamination 0.08.
for ds in fitbit synthetic multivariate; do
	for seed in 1 2 3; do
		GOMAXPROCS=1 detect --method iforest --set contamination=0.08 --set seed=$seed \
			--input "$work/$ds.csv" --output "$work/$ds.go.$seed.csv"
	done
done
# Holt-Winters on the real data (with gaps), checked against a transcription of Graphite's
# recurrence in Python.
GOMAXPROCS=1 detect --method holt-winters --input "$work/fitbit-gaps.csv" --output "$work/fitbit-gaps.hw.csv"

# Timing: fit + score on $rows rows, single-threaded, end to end for Go (read CSV, fit, score,
# write CSV). Wall and CPU (user + system) seconds: on a shared machine CPU time is the steadier.
TIMEFORMAT='%R %U %S'
timed() { # runs "$@", sets wall and cpu
	local t="$work/time" u s
	{ time "$@"; } 2>"$t"
	read -r wall u s < <(tail -1 "$t")
	cpu=$(echo "$u + $s" | bc -l)
}
timed env GOMAXPROCS=1 "${detect_cmd[@]}" --method iforest --set contamination=0.08 --set seed=1 \
	--input "$work/big.csv" --output "$work/big.go.csv"
go_secs=$wall go_cpu=$cpu
timed env GOMAXPROCS=1 "${detect_cmd[@]}" --method holt-winters --input "$work/big.csv" --output "$work/big.hw.csv"
hw_secs=$wall hw_cpu=$cpu

# Library speed, single-threaded, in the same run: Isolation Forest fit + score_samples on 1M
# rows in memory, Holt-Winters (with bands and aberration) on 1M points.
echo
echo "## go test -bench (GOMAXPROCS=1)"
(cd "$repo" && GOMAXPROCS=1 go test ./internal/anomaly -run '^$' -bench 'IForestFitScore1M|HoltWinters$' -benchtime 3x) |
	grep -E '^Benchmark'

OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /usr/bin/python3 "$here/compare.py" compare --work "$work" --rows "$rows" \
	--go-seconds "$go_secs" --go-cpu-seconds "$go_cpu" --go-hw-seconds "$hw_secs" --go-hw-cpu-seconds "$hw_cpu"
