// Package anomaly finds unusual points in sensor time series with five detectors, each in a
// batch form (whole series in memory, allocation-aware) and a streaming form (one observation at
// a time, O(1) or amortized O(1) work and bounded memory):
//
// Online (online.go): pulselake's own parameter-free detector. Each point is scored from the
// past only, by five views — residual against a bank of smoothed forecasts with a learned daily
// profile, volatility, level drift, stuck values and gaps — each calibrated to a tail
// probability on the series' own past, combined by a Bonferroni minimum.
//
// Isolation Forest, with scikit-learn's IsolationForest semantics. Each of n_estimators trees is
// grown on max_samples rows ('auto' = min(256, n)) drawn without replacement (with, for
// bootstrap) and on max_features features; a node splits on a random non-constant feature at a
// threshold drawn uniformly between the node's minimum and maximum, down to depth
// ceil(log2(max_samples)). A point's path length in a tree is the depth of its leaf plus c(size
// of the leaf), with
//
//	c(n) = 2(ln(n-1) + γ) - 2(n-1)/n  (n > 2),  c(2) = 1,  c(0) = c(1) = 0,
//	score_samples(x)     = -2^(-E[h(x)] / c(max_samples))        in [-1, 0)
//	decision_function(x) = score_samples(x) - offset_
//	predict(x)           = -1 if decision_function(x) < 0 else 1
//
// where offset_ is -0.5 for contamination 'auto', else the 100·contamination percentile (linear
// interpolation) of the training scores. Trees live in one flat slice of 16-byte nodes; scoring
// runs blocks of rows through every tree and allocates nothing. The random generator is PCG, so
// forests equal scikit-learn's in distribution, not bit for bit.
//
// Holt-Winters, exactly as Graphite's holtWintersAnalysis (α = γ = 0.1, β = 0.0035, season
// length L = seasonality / step, δ = 3). For point i with value x (previous point's intercept a,
// slope b; seasonal s and deviation d of point i-L, 0 before the first season):
//
//	intercept  = α(x - s[i-L]) + (1-α)(a + b)
//	slope      = β(intercept - a) + (1-β)b
//	seasonal   = γ(x - intercept) + (1-γ)s[i-L]
//	deviation  = γ|x - forecast| + (1-γ)d[i-L]     (a None forecast counts as 0)
//	forecast for the next point = intercept + slope + s[i+1-L]
//
// The first point's forecast is the point itself. A missing point reports the pending forecast,
// records intercept None, slope 0, seasonal 0 and deviation 0, and makes the next forecast None;
// the next present point then restarts the level from itself. Bands are forecast ∓ δ·deviation
// and the aberration is x - upper above the upper band, x - lower below the lower one, else 0.
// The library forms take Graphite's bootstrap interval as leading points that are analysed and
// then trimmed.
//
// Coefficient of variation over a window of W points (the current one included), with
// Graphite's stdev arithmetic: running Σx and Σx², population deviation sqrt(nΣx² - (Σx)²)/n over
// the n present points, and no value unless n/W >= windowTolerance (default 0.1). cv =
// deviation / mean over the same window.
//
// Timeshift: change = |x(t) - x(t - shift)| / |x(t)|, the point shift earlier being the one
// nearest to t - shift within half a step.
//
// Scores. Every method maps to a score in [0, 1], higher is more anomalous. Isolation Forest's
// score is scikit-learn's anomaly score -score_samples (0.5 is the paper's neutral point; the
// flag uses offset_). The others use r/(1+r) where r is the distance to the method's threshold
// in units of it, so a point exactly on the threshold scores 0.5 and is not flagged:
// Holt-Winters r = |x - forecast| / (δ·deviation) (flag: aberration ≠ 0), cv r = |cv| /
// threshold, timeshift r = change / threshold.
//
// Detect sorts rows out of time order (stable) and, for the time-series methods, merges rows
// with the same timestamp into one point holding the mean of their values.
//
// Concurrency: a fitted IsolationForest is read-only and safe for concurrent scoring; every
// other type is for one goroutine at a time. StreamIForest owns one refit goroutine, stopped by
// Close. The package holds no global state.
package anomaly
