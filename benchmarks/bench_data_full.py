"""Benchmark: the data half on the `full` profile (5-minute synthetic bars, 2020-2025).

    python benchmarks/bench_data_full.py [--end 2025-12-31] [--lake]

Times each stage (generate, features, EKF, regimes, splits) and reports peak memory (tracemalloc
peak of Python allocations per stage, measured in a second untimed run because tracing slows Python
loops, and the process's peak RSS). ``--lake`` also times writing and
reading the tables through the DuckLake lake in a temporary directory. The reference is the same
pipeline on the default 1-hour profile, measured in the same run: the ratio shows how the cost scales
with the 12x larger input.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc

from himari_pipeline.datasets.splits import SplitConfig, build_splits, plan_splits, required_warmup
from himari_pipeline.ekf import EKFParams, denoise_features
from himari_pipeline.features import FEATURE_NAMES, compute_features
from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars
from himari_pipeline.regimes.detect import detect_regimes
from himari_pipeline.storage.lake import Lake


def _stage(name: str, fn, rows: dict):
    """Time ``fn`` (untraced), then run it again under tracemalloc for its peak allocation."""
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    tracemalloc.start()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rows[name] = (dt, peak)
    return out


def run_profile(timeframe: str, end: str, with_lake: bool, with_splits: bool = True) -> dict:
    rows: dict[str, tuple[float, float]] = {}
    bars = _stage(
        "generate", lambda: generate_synthetic_bars(SyntheticConfig(timeframe=timeframe, end=end)), rows
    )
    feats = _stage("features (44)", lambda: compute_features(bars), rows)
    params = EKFParams.for_features(FEATURE_NAMES)
    den = _stage("EKF denoise", lambda: denoise_features(feats, params), rows)
    regs = _stage("regimes", lambda: detect_regimes(bars, timeframe), rows)

    def splits():
        plan = plan_splits(bars["timestamp"], required_warmup(feats, den, regs), SplitConfig())
        return build_splits(bars, feats, den, regs, list(FEATURE_NAMES), plan)

    if with_splits:
        _stage("splits", splits, rows)
    if with_lake:
        with tempfile.TemporaryDirectory() as tmp:
            lake = Lake(tmp)

            def write():
                for name, table in (("raw_ohlcv", bars), ("features", feats), ("features_denoised", den)):
                    lake.write_table(name, f"SYNTH-PLANTED_{timeframe}", table)

            _stage("lake write x3", write, rows)
            _stage(
                "lake read features", lambda: lake.read_table("features", f"SYNTH-PLANTED_{timeframe}"), rows
            )
    rows["_bars"] = (float(len(bars)), 0.0)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--end", default="2025-12-31")
    ap.add_argument("--lake", action="store_true", help="also time lake writes and reads")
    args = ap.parse_args()
    # warm numba caches so compile time is not counted in either profile
    run_profile("1h", "2020-03-31", with_lake=False, with_splits=False)
    ref = run_profile("1h", args.end, args.lake)
    full = run_profile("5m", args.end, args.lake)
    n_ref, n_full = int(ref.pop("_bars")[0]), int(full.pop("_bars")[0])
    print(f"bars: full (5m) {n_full:,}   reference (1h) {n_ref:,}   ratio {n_full / n_ref:.1f}x")
    print(f"{'stage':<20} {'5m s':>8} {'5m peak MiB':>12} {'1h s':>8} {'1h peak MiB':>12} {'time ratio':>10}")
    for name in full:
        (tf, mf), (tr, mr) = full[name], ref[name]
        print(f"{name:<20} {tf:>8.2f} {mf:>12.0f} {tr:>8.2f} {mr:>12.0f} {tf / max(tr, 1e-9):>10.1f}")
    core = ("features (44)", "EKF denoise", "regimes")
    total_full = sum(full[k][0] for k in core)
    total_ref = sum(ref[k][0] for k in core)
    print(
        f"features + EKF + regimes on the full profile: {total_full:.1f} s "
        f"({n_full / total_full:,.0f} bars/s); 1h reference {total_ref:.1f} s; "
        f"ratio {total_full / total_ref:.1f}x"
    )
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
