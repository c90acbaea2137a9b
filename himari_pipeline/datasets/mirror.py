"""The mirror image of a market, and its dataset splits built through the same data code.

Mirroring negates log prices around the first close ``c0``: every price ``p`` becomes ``c0**2 / p``,
so each bar's log return changes sign, a rising year becomes a falling one, and high and low trade
places (the mirrored high is ``c0**2 / low``). Volume and every other column are kept. A policy
trained on both a market and its mirror cannot profit from the training years' net drift; it can
only profit from patterns that hold in both directions (timing).

:func:`mirrored_splits` recomputes features, EKF-denoised features and regimes from the mirrored
bars with the project's own stages and cuts them with the original dataset's split plan, so each
mirrored row lines up with the original row of the same timestamp (its scaler is fitted on the
mirrored train rows, as the original's is on its train rows).
"""

from __future__ import annotations

import pandas as pd

from himari_pipeline.datasets.splits import DatasetSplits, SplitPlan, build_splits

__all__ = ["mirror_bars", "mirrored_splits"]

PRICE_COLUMNS = ("open", "high", "low", "close")


def mirror_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """The bars with log prices negated around the first close (high and low swapped, volume kept).

    Mirroring twice gives the original bars back (up to float rounding).
    """
    missing = [c for c in PRICE_COLUMNS if c not in bars]
    if missing:
        raise ValueError(f"bars need columns {PRICE_COLUMNS}; missing {missing}")
    if len(bars) == 0:
        return bars.copy()
    prices = bars[list(PRICE_COLUMNS)].astype("float64")
    if not (prices > 0).all().all():
        raise ValueError("mirroring needs positive prices")
    c0 = float(prices["close"].iloc[0])
    square = c0 * c0
    out = bars.copy()
    out["open"] = square / prices["open"]
    out["close"] = square / prices["close"]
    out["high"] = square / prices["low"]
    out["low"] = square / prices["high"]
    return out


def mirrored_splits(bars: pd.DataFrame, timeframe: str, splits: DatasetSplits) -> DatasetSplits:
    """Splits of the mirror image of ``bars``, cut with ``splits``' own plan and feature names.

    ``bars`` must be the bars ``splits`` was built from (same rows); features, denoised features and
    regimes are recomputed from the mirrored bars.
    """
    from himari_pipeline.ekf import EKFParams, denoise_features
    from himari_pipeline.features.compute import compute_features
    from himari_pipeline.regimes.detect import detect_regimes

    plan = SplitPlan.from_dict(splits.metadata["plan"])
    if len(bars) != plan.n_rows:
        raise ValueError(f"{len(bars)} bars, but the splits were planned over {plan.n_rows} rows")
    names = list(splits.metadata["feature_names"])
    mirror = mirror_bars(bars)
    feats = compute_features(mirror)
    den = denoise_features(feats, EKFParams.for_features(names))
    regs = detect_regimes(mirror, timeframe)
    inputs = {"mirror_of": splits.metadata.get("input_versions", {})}
    return build_splits(mirror, feats, den, regs, names, plan, input_versions=inputs)
