"""Time of the every-row causality check on SYNTH-PLANTED_1h 2020-01-01..2025-12-31 (52,608 bars).

For each table, in one run: the old way (one call of the table's code per row, on the slice of
bars that row needs, states carried from the previous row) on the newest ``--old-rows`` rows, the new way
(:mod:`himari_pipeline.every_row`: every cut's trailing window through the same code in a few
vectorized calls) on every row (or the newest ``--rows``), both compared with the stored table by
:func:`~himari_pipeline.causality.check_every_row`; then ms per row of each and their ratio. The
whole-prefix part of the Dagster check (6 prefixes) is timed too.

    python benchmarks/bench_truncation.py [--rows N] [--old-rows 2000] [--start 2020-01-01]
        [--end 2025-12-31] [--tables features,features_denoised,regimes]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from himari_pipeline import every_row
from himari_pipeline.bar_tail import resume_window
from himari_pipeline.causality import check_every_row, check_truncation_invariance, default_prefixes
from himari_pipeline.ekf import EKFParams, denoise_features
from himari_pipeline.features.append import TAIL_LENGTH
from himari_pipeline.features.catalog import FEATURE_NAMES
from himari_pipeline.features.compute import WARMUP_BARS, compute_features, feature_arrays_resumable
from himari_pipeline.market.bars import BAR_COLUMNS
from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars
from himari_pipeline.regimes.append import RegimeState, append_regimes
from himari_pipeline.regimes.detect import detect_regimes


def features_old_way(bars: pd.DataFrame, start: int) -> pd.DataFrame:
    """The previous every-row path: row ``t`` from the feature code on the slice of bars it needs
    (``TAIL_LENGTH + 1`` bars), EWM states carried from the previous row's slice."""
    bars = bars[list(BAR_COLUMNS)].reset_index(drop=True)
    ewm_start, ewm = 0, None
    if start > 0:
        _, ewm_start = resume_window(0, start, 0, TAIL_LENGTH)
        ewm = feature_arrays_resumable(bars.iloc[:start], None, snapshot=ewm_start)[1] if ewm_start else None
    out = np.full((len(bars) - start, len(FEATURE_NAMES)), np.nan)
    for t in range(start, len(bars)):
        first, nxt = resume_window(t, t + 1, ewm_start, TAIL_LENGTH)
        f, rec = feature_arrays_resumable(
            bars.iloc[first : t + 1], ewm, start=ewm_start - first, snapshot=nxt - first
        )
        out[t - start] = [f[name][-1] for name in FEATURE_NAMES]
        ewm_start, ewm = nxt, (rec if nxt > 0 else None)
    out[np.isinf(out)] = np.nan
    table = pd.DataFrame(out, columns=list(FEATURE_NAMES))
    table.insert(0, "timestamp", bars["timestamp"].iloc[start:].reset_index(drop=True))
    table["warmup"] = np.arange(start, len(bars)) < WARMUP_BARS
    return table


def regimes_old_way(bars: pd.DataFrame, start: int) -> pd.DataFrame:
    """The previous every-row path for regimes: the append path one bar at a time."""
    _, state = append_regimes(RegimeState.empty("1h"), bars.iloc[:start])
    rows = []
    for t in range(start, len(bars)):
        row, state = append_regimes(state, bars.iloc[t : t + 1])
        rows.append(row)
    return pd.concat(rows, ignore_index=True).drop(columns="regime")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=None, help="newest rows checked the new way (default all)")
    ap.add_argument("--old-rows", type=int, default=2000, help="newest rows checked the old way")
    ap.add_argument("--start", default="2020-01-01")
    ap.add_argument("--end", default="2025-12-31")
    ap.add_argument("--tables", default="features,features_denoised,regimes", help="comma-separated")
    args = ap.parse_args()
    cfg = SyntheticConfig(seed=7, variant="planted", start=args.start, end=args.end, timeframe="1h")
    bars = generate_synthetic_bars(cfg)
    n = len(bars)
    start = 0 if args.rows is None else max(n - args.rows, 0)
    old_start = max(n - args.old_rows, 0)
    params = EKFParams.for_features(FEATURE_NAMES)
    feats = compute_features(bars)
    den = denoise_features(feats, params)
    regs = detect_regimes(bars, "1h")
    ks = default_prefixes(n, count=6, min_rows=min(500, n // 2))
    tables = {
        "features": (
            compute_features,
            lambda s: features_old_way(bars, s),
            lambda s: every_row.features_every_row(bars, s),
            feats,
        ),
        "features_denoised": (
            lambda b: denoise_features(compute_features(b), params),
            lambda s: every_row.denoised_every_row(feats, params, s),  # a recursion: already one row a step
            lambda s: every_row.denoised_every_row(feats, params, s),
            den,
        ),
        "regimes": (
            lambda b: detect_regimes(b, "1h"),
            lambda s: regimes_old_way(bars, s),
            lambda s: every_row.regimes_every_row(bars, "1h", None, s),
            regs,
        ),
    }
    every_row.features_every_row(bars.iloc[:400], 300)  # numba kernels compiled/loaded before timing
    every_row.regimes_every_row(bars.iloc[:2300], "1h", None, 2250)
    print(f"{n} bars; new way from row {start} ({n - start} rows), old way from row {old_start}")
    total = {"prefixes": 0.0, "new": 0.0}
    for name, (compute, old, new, full) in tables.items():
        if name not in args.tables.split(","):
            continue
        t0 = time.perf_counter()
        pre = check_truncation_invariance(compute, bars, full=full, prefixes=ks)
        t1 = time.perf_counter()
        old_rep = check_every_row(old(old_start), full, old_start)
        t2 = time.perf_counter()
        new_rep = check_every_row(new(start), full, start)
        t3 = time.perf_counter()
        total["prefixes"] += t1 - t0
        total["new"] += t3 - t2
        old_ms = 1e3 * (t2 - t1) / max(n - old_start, 1)
        new_ms = 1e3 * (t3 - t2) / max(n - start, 1)
        print(
            f"{name:18s} 6 prefixes {t1 - t0:5.1f} s ({'ok' if pre.ok else 'FAIL'}) | "
            f"old {old_ms:6.3f} ms/row "
            f"({'ok' if old_rep.ok else 'FAIL'}) | new {t3 - t2:6.1f} s, {new_ms:6.3f} ms/row "
            f"({'ok' if new_rep.ok else 'FAIL'}) | ratio {old_ms / new_ms:5.1f}x"
        )
    print(
        f"{'in all':18s} 6 prefixes {total['prefixes']:5.1f} s | every row the new way {total['new']:6.1f} s"
    )


if __name__ == "__main__":
    main()
