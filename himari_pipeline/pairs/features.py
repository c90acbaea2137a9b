"""The pair's feature table for a policy, and its market arrays for the env.

Per leg (from its closes only): log returns over 1, 5 and 20 bars and the 20-bar volatility of
one-bar log returns. Spread (:mod:`.spread`): the z-score, its one-bar change, the hedge ratio, its
5-bar change and the spread's one-bar return. Every column at ``t`` uses bars ``<= t`` (rolling
windows end at ``t``; cutting the bars after ``t`` leaves row ``t`` unchanged, tested). Features are
standardized with the mean and std of the train segment's rows (the datasets' scaler). The policy is
regime-conditioned; pairs have one regime (id 0) until a spread regime detector exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from himari_pipeline.datasets.splits import apply_scaler, fit_scaler
from himari_pipeline.evaluation.backtest import Legs
from himari_pipeline.pairs.legs import AlignedLegs
from himari_pipeline.pairs.spread import SpreadConfig, spread_frame, spread_legs
from himari_pipeline.rl.env import MarketArrays

LEG_WINDOWS = (1, 5, 20)
VOL_WINDOW = 20


def pair_features(aligned: AlignedLegs, spread: pd.DataFrame, legs: Legs) -> pd.DataFrame:
    """Raw (unscaled) features per bar; NaN during the warm-up."""
    cols: dict[str, np.ndarray] = {}
    for leg in aligned.names:
        log = np.log(aligned.closes[leg])
        for w in LEG_WINDOWS:
            cols[f"{leg}_ret_{w}"] = (log - log.shift(w)).to_numpy()
        cols[f"{leg}_vol_{VOL_WINDOW}"] = log.diff().rolling(VOL_WINDOW).std().to_numpy()
    z, beta = spread["zscore"], spread["beta"]
    cols["zscore"] = z.to_numpy()
    cols["zscore_change"] = z.diff().to_numpy()
    cols["beta"] = beta.to_numpy()
    cols["beta_change_5"] = (beta - beta.shift(5)).to_numpy()
    cols["spread_return"] = legs.spread_returns
    return pd.DataFrame(cols, index=aligned.timestamps)


@dataclass
class PairMarket:
    """A pair ready for the env: scaled features, legs and the first usable row."""

    aligned: AlignedLegs
    spread: pd.DataFrame
    features: np.ndarray  # (T, F) float32, standardized on train rows; 0 before ``first_row``
    feature_names: list[str]
    legs: Legs
    first_row: int  # first row where every feature is finite

    def market(self, lo: int, hi: int, device: str = "cpu") -> MarketArrays:
        """Rows ``lo .. hi-1`` as :class:`MarketArrays` (one regime; returns = the spread's)."""
        ret = self.legs.spread_returns[lo:hi].copy()
        return MarketArrays.from_numpy(
            self.features[lo:hi],
            np.zeros(hi - lo, dtype=np.int64),
            ret,
            self.aligned.closes.iloc[lo:hi, 0].to_numpy(np.float64),
            device=device,
            gap_before=self.aligned.gap_before[lo:hi],
            leg_returns=self.legs.returns[lo:hi],
            leg_weights=self.legs.weights[lo:hi],
        )


def pair_market(aligned: AlignedLegs, cfg: SpreadConfig, train: tuple[int, int]) -> PairMarket:
    """Features scaled on the ``train`` rows ``[lo, hi)`` and the legs of one unit of spread."""
    spread = spread_frame(aligned.closes, cfg)
    legs = spread_legs(aligned.returns, spread["beta"].to_numpy(), aligned.names)
    raw = pair_features(aligned, spread, legs)
    finite = np.isfinite(raw.to_numpy()).all(axis=1)
    first = int(np.argmax(finite)) if finite.any() else len(raw)
    if not finite[first:].all():
        bad = first + int(np.argmin(finite[first:]))
        raise ValueError(f"pair features are not finite at bar {raw.index[bad]}")
    lo, hi = max(train[0], first), train[1]
    if hi - lo < 2:
        raise ValueError("the train segment has fewer than 2 rows with every feature")
    x = raw.to_numpy(np.float64)
    scaled = np.where(finite[:, None], apply_scaler(x, fit_scaler(x[lo:hi])), np.float32(0.0))
    return PairMarket(aligned, spread, scaled, list(raw.columns), legs, first)
