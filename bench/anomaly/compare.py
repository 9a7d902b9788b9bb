"""Data preparation and comparison for bench/anomaly/run.sh (scikit-learn side of the parity run).

prepare: writes the data sets (timestamp + value columns, NAB style) and their anomaly labels.
compare: runs scikit-learn's IsolationForest on the same data and seeds, reads pulselake's
output, and prints ROC AUC, fraction flagged, Holt-Winters agreement and timings.
"""
import argparse
import csv
import math
import os
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def write_csv(path, header, times, columns):
    with open(path, "w", newline="") as f:
        f.write(",".join(header) + "\n")
        for i, t in enumerate(times):
            vals = []
            for c in columns:
                v = c[i]
                vals.append("" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v)))
            f.write(t + "," + ",".join(vals) + "\n")


def grid(n, step=5):
    return [(T0 + timedelta(seconds=step * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]


def synthetic(n, rng):
    """Heart-rate-like series at 5 s: daily cycle + noise, 1% spikes or drops (labelled)."""
    i = np.arange(n)
    v = 70 + 12 * np.sin(2 * np.pi * i / (86400 / 5)) + rng.normal(0, 4, n)
    lab = rng.random(n) < 0.01
    up = rng.random(n) < 0.5
    v = np.where(lab & up, v + 40 + 40 * rng.random(n), v)
    v = np.where(lab & ~up, v - 25 - 10 * rng.random(n), v)
    return np.round(v, 1), lab


def prepare(a):
    rng = np.random.default_rng(2026)
    w = a.work
    # Real data: one user's Fitbit heart rate, with 2% of rows replaced by spikes or drops.
    times, hr = [], []
    with open(a.fitbit, newline="") as f:
        r = csv.reader(f)
        next(r)
        for row in r:
            times.append(row[1])
            hr.append(float(row[2]))
    hr = np.array(hr)
    n = len(hr)
    lab = rng.random(n) < 0.02
    up = rng.random(n) < 0.5
    v = hr.copy()
    v[lab & up] += 40 + 40 * rng.random((lab & up).sum())
    v[lab & ~up] = np.maximum(30, v[lab & ~up] - 25 - 15 * rng.random((lab & ~up).sum()))
    write_csv(f"{w}/fitbit.csv", ["timestamp", "value"], times, [np.round(v, 1)])
    np.save(f"{w}/fitbit.labels.npy", lab)
    # The same real data with 3% missing values and three long gaps, for Holt-Winters.
    g = hr.copy()
    g[rng.random(n) < 0.03] = np.nan
    for s in rng.integers(0, n - 20000, 3):
        g[s : s + 5000 + rng.integers(0, 15000)] = np.nan
    write_csv(f"{w}/fitbit-gaps.csv", ["timestamp", "value"], times, [g])
    # Generated univariate series.
    v, lab = synthetic(200_000, rng)
    write_csv(f"{w}/synthetic.csv", ["timestamp", "value"], grid(len(v)), [v])
    np.save(f"{w}/synthetic.labels.npy", lab)
    # Generated two-column series: heart rate follows activity; anomalies are high heart rate
    # at rest (each column alone is within its usual range).
    m = 100_000
    act = np.clip(rng.gamma(1.5, 30, m), 0, 200)
    hrm = 60 + 0.4 * act + rng.normal(0, 5, m)
    lab = rng.random(m) < 0.01
    act[lab] = rng.uniform(0, 10, lab.sum())
    hrm[lab] = rng.uniform(110, 140, lab.sum())
    write_csv(f"{w}/multivariate.csv", ["timestamp", "hr", "activity"], grid(m), [np.round(hrm, 1), np.round(act, 1)])
    np.save(f"{w}/multivariate.labels.npy", lab)
    # Timing data.
    v, lab = synthetic(a.rows, rng)
    write_csv(f"{w}/big.csv", ["timestamp", "value"], grid(len(v)), [v])
    np.save(f"{w}/big.labels.npy", lab)


def load_values(path, ncols):
    with open(path, newline="") as f:
        r = csv.reader(f)
        next(r)
        X = np.array([[float(x) for x in row[1 : 1 + ncols]] for row in r])
    return X


def load_go(path, names):
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        idx = [header.index(n) for n in names]
        cols = [[] for _ in names]
        for row in r:
            for k, i in enumerate(idx):
                cols[k].append(float(row[i]) if row[i] != "" else np.nan)
    return [np.array(c) for c in cols]


def graphite_hw(values, season):
    """Graphite's holtWintersAnalysis + bands + aberration, transcribed (None as nan)."""
    alpha = gamma = 0.1
    beta = 0.0035
    intercepts, slopes, seasonals, preds, devs = [], [], [], [], []
    next_pred = None
    for i, actual in enumerate(values):
        if math.isnan(actual):
            intercepts.append(None); slopes.append(0); seasonals.append(0)
            preds.append(next_pred); devs.append(0); next_pred = None
            continue
        if i == 0:
            last_i, last_s, pred = actual, 0, actual
        else:
            last_i = intercepts[-1] if intercepts[-1] is not None else actual
            last_s = slopes[-1]
            pred = next_pred
        ls = seasonals[i - season] if i - season >= 0 else 0
        nls = seasonals[i + 1 - season] if i + 1 - season >= 0 else 0
        ld = devs[i - season] if i - season >= 0 else 0
        inter = alpha * (actual - ls) + (1 - alpha) * (last_i + last_s)
        slope = beta * (inter - last_i) + (1 - beta) * last_s
        seas = gamma * (actual - inter) + (1 - gamma) * ls
        next_pred = inter + slope + nls
        dev = gamma * abs(actual - (pred if pred is not None else 0)) + (1 - gamma) * ld
        intercepts.append(inter); slopes.append(slope); seasonals.append(seas)
        preds.append(pred); devs.append(dev)
    f = np.array([np.nan if p is None else p for p in preds])
    d = np.array(devs)
    lo, up = f - 3 * d, f + 3 * d
    v = np.asarray(values)
    ab = np.where(v > up, v - up, np.where(v < lo, v - lo, 0.0))
    ab = np.where(np.isnan(v) | np.isnan(f), 0.0, ab)
    return f, lo, up, ab


def compare(a):
    w = a.work
    print()
    print("## Isolation Forest parity (contamination 0.08, n_estimators 100, max_samples auto)")
    print(f"{'data':<14}{'rows':>8}{'seed':>6}{'AUC sklearn':>13}{'AUC go':>9}{'diff':>8}{'flagged sklearn':>17}{'flagged go':>12}")
    for ds, ncols in (("fitbit", 1), ("synthetic", 1), ("multivariate", 2)):
        X = load_values(f"{w}/{ds}.csv", ncols)
        lab = np.load(f"{w}/{ds}.labels.npy")
        aucs_s, aucs_g = [], []
        for seed in (1, 2, 3):
            clf = IsolationForest(n_estimators=100, contamination=0.08, random_state=seed, n_jobs=1).fit(X)
            s = clf.score_samples(X)
            frac_s = float(np.mean(s - clf.offset_ < 0))
            auc_s = roc_auc_score(lab, -s)
            score, flag = load_go(f"{w}/{ds}.go.{seed}.csv", ["score", "anomaly"])
            auc_g = roc_auc_score(lab, score)
            aucs_s.append(auc_s); aucs_g.append(auc_g)
            print(f"{ds:<14}{len(X):>8}{seed:>6}{auc_s:>13.4f}{auc_g:>9.4f}{auc_g - auc_s:>+8.4f}{frac_s:>17.4f}{flag.mean():>12.4f}")
        ms, mg = np.mean(aucs_s), np.mean(aucs_g)
        print(f"{ds:<14}{'':>8}{'mean':>6}{ms:>13.4f}{mg:>9.4f}{mg - ms:>+8.4f}   {'within 0.01' if abs(mg - ms) <= 0.01 else 'NOT within 0.01'}")

    print()
    print("## Holt-Winters vs a Python transcription of Graphite's recurrence (Fitbit data with gaps)")
    with open(f"{w}/fitbit-gaps.csv", newline="") as f:
        r = csv.reader(f)
        next(r)
        rows = list(r)
    vals = [float(x[1]) if x[1] != "" else math.nan for x in rows]
    ts = [datetime.strptime(x[0], "%Y-%m-%d %H:%M:%S").timestamp() for x in rows]
    gaps = np.diff(ts)
    gaps = gaps[gaps > 0]
    uniq, cnt = np.unique(gaps, return_counts=True)
    step = uniq[np.argmax(cnt)]
    season = int(86400 // step)
    ref = graphite_hw(vals, season)
    got = load_go(f"{w}/fitbit-gaps.hw.csv", ["forecast", "lower", "upper", "aberration"])
    worst = 0.0
    for name, g, e in zip(("forecast", "lower", "upper", "aberration"), got, ref):
        same_none = np.array_equal(np.isnan(g), np.isnan(e))
        m = ~np.isnan(e)
        diff = float(np.max(np.abs(g[m] - e[m]) / np.maximum(1, np.abs(e[m])))) if m.any() else 0.0
        worst = max(worst, diff)
        print(f"{name:<11} rows {len(e)}, None at the same rows: {same_none}, max relative difference {diff:.2e}")
    print(f"step {step:g}s, season {season} points: {'equal to 1e-9' if worst <= 1e-9 else 'DIFFERENT'}")

    print()
    print(f"## Isolation Forest fit + score on {a.rows} rows, single-threaded")
    X = load_values(f"{w}/big.csv", 1)
    lab = np.load(f"{w}/big.labels.npy")
    t0, c0 = time.perf_counter(), time.process_time()
    clf = IsolationForest(n_estimators=100, contamination=0.08, random_state=1, n_jobs=1).fit(X)
    t1, c1 = time.perf_counter(), time.process_time()
    s = clf.score_samples(X)
    t2, c2 = time.perf_counter(), time.process_time()
    score, flag = load_go(f"{w}/big.go.csv", ["score", "anomaly"])
    fit, fit_score = t1 - t0, t2 - t0
    cfit, cfit_score = c1 - c0, c2 - c0
    # Wall time depends on what else runs on the machine; CPU time (user + system) much less.
    print("                                                              wall      CPU")
    print(f"scikit-learn fit (scores the training rows once for offset_): {fit:7.2f} s {cfit:7.2f} s")
    print(f"scikit-learn fit + score_samples:                             {fit_score:7.2f} s {cfit_score:7.2f} s")
    print(f"pulselake detect end to end (read CSV, fit, score, write CSV): {a.go_seconds:7.2f} s {a.go_cpu_seconds:7.2f} s")
    print(f"speed-up vs fit + score_samples: {fit_score / a.go_seconds:.1f}x wall, {cfit_score / a.go_cpu_seconds:.1f}x CPU; "
          f"vs fit alone: {fit / a.go_seconds:.1f}x wall, {cfit / a.go_cpu_seconds:.1f}x CPU")
    print(f"AUC sklearn {roc_auc_score(lab, -s):.4f}, go {roc_auc_score(lab, score):.4f}; "
          f"flagged sklearn {np.mean(s - clf.offset_ < 0):.4f}, go {flag.mean():.4f}")
    print(f"pulselake detect --method holt-winters end to end on {a.rows} rows: {a.go_hw_seconds:.2f} s wall, {a.go_hw_cpu_seconds:.2f} s CPU")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["prepare", "compare"])
    p.add_argument("--work", required=True)
    p.add_argument("--fitbit")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--go-seconds", type=float)
    p.add_argument("--go-hw-seconds", type=float)
    p.add_argument("--go-cpu-seconds", type=float)
    p.add_argument("--go-hw-cpu-seconds", type=float)
    a = p.parse_args()
    prepare(a) if a.cmd == "prepare" else compare(a)


if __name__ == "__main__":
    main()
