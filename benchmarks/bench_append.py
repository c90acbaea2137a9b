"""Benchmark: appending one day of bars vs the full recompute (features + EKF + regimes), one run.

    python benchmarks/bench_append.py [--timeframe 5m] [--days 1] [--repeats 5]

1. The synthetic market 2020-2025 at ``--timeframe`` (5m: ~631k bars).
2. Setup (untimed beyond a report): each table from its empty state on all bars but the last
   ``--days`` days (``append_features``, the EKF, ``append_regimes``), which also compiles/loads the
   numba kernels; the states' JSON size.
3. The full recompute on all bars with the public functions ``compute_features``,
   ``denoise_features`` and ``detect_regimes`` (timed once: it is the reference).
4. The three appends of the last day after a JSON round trip of the states, best of ``--repeats``.
5. Checks that the appended rows are *exactly* (bit for bit, NaN matching NaN) the full
   recompute's last rows, then prints both times and the ratio (target >= 50x).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from himari_pipeline.ekf import EKFParams, denoise_features  # noqa: E402
from himari_pipeline.ekf.vectorized import EKFState, denoise_features_with_state  # noqa: E402
from himari_pipeline.features import compute_features  # noqa: E402
from himari_pipeline.features.append import FeatureState, append_features  # noqa: E402
from himari_pipeline.market.bars import timeframe_delta  # noqa: E402
from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars  # noqa: E402
from himari_pipeline.regimes import detect_regimes  # noqa: E402
from himari_pipeline.regimes.append import RegimeState, append_regimes  # noqa: E402

STATES = (FeatureState, RegimeState, EKFState)


def append_all(texts: list[str], new: pd.DataFrame, params: EKFParams):
    """Load the three states from JSON and append ``new`` to each table."""
    fs, rs, ekf = (cls.from_dict(json.loads(t)) for cls, t in zip(STATES, texts, strict=True))
    f_new, _ = append_features(fs, new)
    r_new, _ = append_regimes(rs, new)
    d_new, _ = denoise_features_with_state(f_new, params, ekf)
    return f_new, d_new, r_new


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
    params = EKFParams.for_features()
    f_hist, fs = append_features(FeatureState(), history)
    _, rs = append_regimes(RegimeState.empty(args.timeframe), history)
    _, ekf = denoise_features_with_state(f_hist, params)
    t_init = time.perf_counter() - t0
    texts = [json.dumps(s.to_dict()) for s in (fs, rs, ekf)]
    print(
        f"setup: the three tables on {len(history):,} bars {t_init:.2f} s; "
        f"states: {len(fs.tail):,} + {len(rs.tail):,} tail bars, {sum(map(len, texts)) / 1e6:.2f} MB JSON"
    )

    t0 = time.perf_counter()
    feats = compute_features(bars)
    den = denoise_features(feats, params)
    reg = detect_regimes(bars, args.timeframe)
    t_full = time.perf_counter() - t0

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        f_new, d_new, r_new = append_all(texts, new, params)
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
