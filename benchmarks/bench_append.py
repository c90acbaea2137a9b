"""Benchmark: appending one day of bars vs the full recompute (features + EKF + regimes), one run.

    python benchmarks/bench_append.py [--timeframe 5m] [--days 1] [--repeats 5]

1. The synthetic market 2020-2025 at ``--timeframe`` (5m: ~631k bars).
2. Setup (untimed beyond a report): :func:`initial_state` on all bars but the last ``--days`` days,
   which also compiles/loads the numba kernels; the state's JSON size.
3. The full recompute on all bars with the public functions ``compute_features``,
   ``denoise_features`` and ``detect_regimes`` (timed once: it is the reference).
4. ``append(state, last day)`` after a JSON round trip of the state, best of ``--repeats``.
5. Checks that the appended rows are *exactly* (bit for bit, NaN matching NaN) the full
   recompute's last rows, then prints both times and the ratio (target >= 50x).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from himari_pipeline.ekf import EKFParams, denoise_features  # noqa: E402
from himari_pipeline.features import compute_features  # noqa: E402
from himari_pipeline.incremental import AppendState, append, initial_state  # noqa: E402
from himari_pipeline.market.bars import timeframe_delta  # noqa: E402
from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars  # noqa: E402
from himari_pipeline.regimes import detect_regimes  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeframe", default="5m")
    ap.add_argument("--days", type=float, default=1.0, help="days of bars to append")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    t0 = time.perf_counter()
    bars = generate_synthetic_bars(SyntheticConfig(timeframe=args.timeframe))
    m = int(round(pd.Timedelta(days=args.days) / timeframe_delta(args.timeframe)))
    t_gen = time.perf_counter() - t0
    print(f"bars: {len(bars):,} {args.timeframe} bars ({t_gen:.1f} s to generate); append {m}")
    history, new = bars.iloc[:-m], bars.iloc[-m:].reset_index(drop=True)

    t0 = time.perf_counter()
    *_, state = initial_state(history, args.timeframe)
    t_init = time.perf_counter() - t0
    text = state.to_json()
    print(
        f"setup: initial_state on {len(history):,} bars {t_init:.2f} s; "
        f"state: {len(state.tail):,} tail bars, {len(text) / 1e6:.2f} MB JSON"
    )

    t0 = time.perf_counter()
    feats = compute_features(bars)
    den = denoise_features(feats, EKFParams.for_features())
    reg = detect_regimes(bars, args.timeframe)
    t_full = time.perf_counter() - t0

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        f_new, d_new, r_new, _ = append(AppendState.from_json(text), new, args.timeframe)
        times.append(time.perf_counter() - t0)
    t_app = min(times)

    for name, got, full in (("features", f_new, feats), ("denoised", d_new, den), ("regimes", r_new, reg)):
        ref = full.iloc[-m:].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, ref, check_exact=True)
        print(f"check: appended {name} rows == full recompute's last {m} rows (exact)")

    print(f"full recompute (features + EKF + regimes, {len(bars):,} bars): {t_full:.3f} s")
    print(f"append {m} bars (incl. JSON load of the state), best of {args.repeats}: {t_app * 1e3:.1f} ms")
    ratio = t_full / t_app
    print(f"speed-up: {ratio:.0f}x (target >= 50x) {'OK' if ratio >= 50 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
