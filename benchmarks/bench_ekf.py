"""Benchmark: numba EKF denoiser vs the filterpy reference (same data, same run), and feature speed.

    python benchmarks/bench_ekf.py [--rows 500000] [--ref-rows 10000] [--full-reference]

1. ``compute_features`` on ``--feature-rows`` (631,000) random-walk 5-minute bars.
2. The vectorized EKF on the first ``--rows`` rows x 44 features of that table: a warm-up call on a
   few rows first (JIT compile or numba cache load, reported separately), then the best of
   ``--repeats`` timed runs, with tracemalloc peak memory.
3. The filterpy reference on the first ``--ref-rows`` rows x 44 features (or all ``--rows`` with
   ``--full-reference``); its values are checked against the vectorized run (<= 1e-9) and its time
   is extrapolated linearly to ``--rows`` (the filter is O(T)), which the output says.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numba
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from himari_pipeline.ekf import EKFParams, EKFState, ekf_filter  # noqa: E402
from himari_pipeline.ekf import vectorized as ekf_vectorized  # noqa: E402
from himari_pipeline.ekf.reference import ekf_filter_reference  # noqa: E402
from himari_pipeline.features import FEATURE_NAMES, compute_features  # noqa: E402


def random_walk_bars(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(0.002 * rng.standard_t(4, n)))
    open_ = np.r_[30_000.0, close[:-1]] * np.exp(rng.normal(0, 3e-4, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 1e-3, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 1e-3, n)))
    ts = pd.date_range("2019-01-01 00:05", periods=n, freq="5min", tz="UTC")
    volume = rng.lognormal(3.0, 1.0, n)
    return pd.DataFrame(
        {"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=500_000, help="rows for the EKF timing")
    ap.add_argument("--feature-rows", type=int, default=631_000, help="bars for compute_features timing")
    ap.add_argument("--ref-rows", type=int, default=10_000, help="contiguous rows for the filterpy timing")
    ap.add_argument("--full-reference", action="store_true", help="run filterpy on all --rows rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    n_bars = max(args.feature_rows, args.rows)
    bars = random_walk_bars(n_bars, args.seed)
    t0 = time.perf_counter()
    feats = compute_features(bars.iloc[: args.feature_rows])
    t_feat = time.perf_counter() - t0
    if args.rows > args.feature_rows:
        feats = compute_features(bars)
    rss_feat = peak_rss_mib()

    X = np.ascontiguousarray(feats[list(FEATURE_NAMES)].to_numpy()[: args.rows])
    params = EKFParams.for_features()
    n_rows, n_feat = X.shape

    t0 = time.perf_counter()
    ekf_filter(X[:10], params)
    t_first = time.perf_counter() - t0
    # true compile time: a fresh, uncached dispatcher of the same kernel, compiled on first call
    fresh = numba.njit(cache=False)(ekf_vectorized._ekf_kernel.py_func)
    m, st = params.matrices(), EKFState.empty(n_feat)
    kernel_args = (m.bounded, m.passthrough, m.lo, m.span, m.r, m.q_level, m.q_slope, m.p0, m.clip_eps)
    t0 = time.perf_counter()
    fresh(X[:10], *kernel_args, st.x, st.P, st.initialised, np.empty_like(X[:10]))
    t_compile = time.perf_counter() - t0

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out, _ = ekf_filter(X, params)
        times.append(time.perf_counter() - t0)
    t_vec = min(times)
    tracemalloc.start()
    ekf_filter(X, params)
    _, tm_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    ref_rows = n_rows if args.full_reference else min(args.ref_rows, n_rows)
    t0 = time.perf_counter()
    ref = ekf_filter_reference(X[:ref_rows], params)
    t_ref_slice = time.perf_counter() - t0
    same_nan = bool(np.array_equal(np.isnan(ref), np.isnan(out[:ref_rows])))
    max_diff = float(np.nanmax(np.abs(ref - out[:ref_rows])))
    t_ref = t_ref_slice * n_rows / ref_rows
    extrapolated = ref_rows < n_rows

    steps = n_rows * n_feat
    print(f"\nEKF denoiser benchmark: {n_rows:,} rows x {n_feat} features = {steps:,} filter steps")
    print(f"{'implementation':<34}{'time [s]':>12}{'ns / step':>12}{'rows / s':>14}")
    print("-" * 72)
    print(
        f"{'vectorized (numba), best of ' + str(args.repeats):<34}{t_vec:>12.3f}"
        f"{1e9 * t_vec / steps:>12.1f}{n_rows / t_vec:>14,.0f}"
    )
    label = f"filterpy reference{' (extrapolated)' if extrapolated else ''}"
    print(f"{label:<34}{t_ref:>12.1f}{1e9 * t_ref / steps:>12.1f}{n_rows / t_ref:>14,.0f}")
    print("-" * 72)
    print(f"speed-up (filterpy / vectorized): {t_ref / t_vec:,.0f}x  (target >= 100x)")
    if extrapolated:
        print(
            f"filterpy measured on rows [0, {ref_rows:,}) x {n_feat} features in {t_ref_slice:.2f} s, "
            f"extrapolated linearly x{n_rows / ref_rows:.1f} (the filter is O(T)); "
            "--full-reference runs it all"
        )
    print(
        f"reference check on those rows: max |vectorized - filterpy| = {max_diff:.2e} "
        f"({'OK' if max_diff <= 1e-9 and same_nan else 'FAIL'}: <= 1e-9, NaN pattern equal: {same_nan})"
    )
    print(
        f"JIT compile (fresh, uncached): {t_compile:.3f} s; first call via the cached dispatcher: "
        f"{t_first:.3f} s (both excluded above)"
    )
    print(
        f"vectorized peak traced memory (tracemalloc): {tm_peak / 2**20:.1f} MiB "
        f"(input {X.nbytes / 2**20:.1f} MiB, output {out.nbytes / 2**20:.1f} MiB)"
    )
    print(f"process peak RSS: {peak_rss_mib():.0f} MiB (after compute_features: {rss_feat:.0f} MiB)")
    print(
        f"\ncompute_features on {args.feature_rows:,} bars: {t_feat:.2f} s "
        f"({args.feature_rows / t_feat:,.0f} bars/s, 44 features)"
    )
    if not (max_diff <= 1e-9 and same_nan):
        raise SystemExit("vectorized EKF disagrees with the filterpy reference")


if __name__ == "__main__":
    main()
