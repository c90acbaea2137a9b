"""Time of the truncation-invariance checks on SYNTH-PLANTED_1h 2020-01-01..2025-12-31 (52,608 bars).

Runs the domain calls the three Dagster checks make: the whole-prefix part (6 prefixes, as before the
row-by-row part existed) and the row-by-row part (every row, or the newest ``--rows``), per table.

    python benchmarks/bench_truncation.py [--rows N] [--start 2020-01-01] [--end 2025-12-31] [--tables ...]
"""

from __future__ import annotations

import argparse
import time

from himari_pipeline import incremental
from himari_pipeline.causality import check_every_row, check_truncation_invariance, default_prefixes
from himari_pipeline.ekf import EKFParams, denoise_features
from himari_pipeline.features.catalog import FEATURE_NAMES
from himari_pipeline.features.compute import compute_features
from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars
from himari_pipeline.regimes.detect import detect_regimes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=None, help="newest rows checked one by one (default all)")
    ap.add_argument("--start", default="2020-01-01")
    ap.add_argument("--end", default="2025-12-31")
    ap.add_argument("--tables", default="features,features_denoised,regimes", help="comma-separated")
    args = ap.parse_args()
    cfg = SyntheticConfig(seed=7, variant="planted", start=args.start, end=args.end, timeframe="1h")
    bars = generate_synthetic_bars(cfg)
    n = len(bars)
    start = 0 if args.rows is None else max(n - args.rows, 0)
    params = EKFParams.for_features(FEATURE_NAMES)
    feats = compute_features(bars)
    den = denoise_features(feats, params)
    regs = detect_regimes(bars, "1h")
    ks = default_prefixes(n, count=6, min_rows=min(500, n // 2))
    tables = {
        "features": (compute_features, lambda: incremental.features_bar_by_bar(bars, start), feats),
        "features_denoised": (
            lambda b: denoise_features(compute_features(b), params),
            lambda: incremental.denoised_row_by_row(feats, params, start),
            den,
        ),
        "regimes": (
            lambda b: detect_regimes(b, "1h"),
            lambda: incremental.regimes_bar_by_bar(bars, "1h", None, start),
            regs,
        ),
    }
    print(f"{n} bars; row by row from row {start} ({n - start} rows)")
    total = {"prefixes": 0.0, "rows": 0.0}
    for name, (compute, step, full) in tables.items():
        if name not in args.tables.split(","):
            continue
        t0 = time.perf_counter()
        pre = check_truncation_invariance(compute, bars, full=full, prefixes=ks)
        t1 = time.perf_counter()
        rows = check_every_row(step(), full, start)
        t2 = time.perf_counter()
        total["prefixes"] += t1 - t0
        total["rows"] += t2 - t1
        per_row = 1e3 * (t2 - t1) / max(n - start, 1)
        print(
            f"{name:18s} 6 prefixes {t1 - t0:6.1f} s ({'ok' if pre.ok else 'FAIL'})   row by row "
            f"{t2 - t1:7.1f} s ({'ok' if rows.ok else 'FAIL'}, {per_row:.2f} ms/row)"
        )
    print(f"{'in all':18s} 6 prefixes {total['prefixes']:6.1f} s   row by row {total['rows']:7.1f} s")


if __name__ == "__main__":
    main()
