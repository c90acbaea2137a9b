"""PNG plots of the validation report (matplotlib, Agg backend; each returns the PNG bytes)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from himari_pipeline.plots import _png, _thin, pyplot
from himari_pipeline.vocabulary import ACTIONS


def equity_plot(
    timestamps: np.ndarray, curves: Mapping[str, np.ndarray], title: str, log: bool = True
) -> bytes:
    """Equity curves (one value per bar close) on one axis; a ruined curve is drawn down to its floor."""
    ts = pd.to_datetime(np.asarray(timestamps), utc=True)
    s = _thin(len(ts))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.0))
    for name, eq in curves.items():
        e = np.asarray(eq, dtype=np.float64)
        shown = np.maximum(e, 1e-4) if log else e
        ax.plot(ts[s], shown[s], lw=1.0, label=name)
    if log:
        ax.set_yscale("log")
    ax.axhline(1.0, color="#999", lw=0.5)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title)
    return _png(fig)


def null_histogram(null: np.ndarray, observed: float, title: str, xlabel: str = "Sharpe") -> bytes:
    """Histogram of a null distribution with the observed statistic as a red line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.hist(np.asarray(null, dtype=np.float64), bins=40, color="#9ecae1")
    ax.axvline(observed, color="#de2d26", lw=2, label=f"observed {observed:.2f}")
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7)
    ax.set_title(title)
    return _png(fig)


def correlation_bars(
    corr: pd.Series, threshold: float, suspicious: float, title: str, top: int = 20
) -> bytes:
    """The ``top`` largest |correlations| as bars with the chance threshold and the leak bar."""
    c = corr.reindex(corr.abs().sort_values(ascending=False).index)[:top]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(c) + 1.0))
    colors = ["#de2d26" if abs(v) > suspicious else "#fd8d3c" if abs(v) > threshold else "#9ecae1" for v in c]
    ax.barh(np.arange(len(c)), c.to_numpy(), color=colors)
    ax.set_yticks(np.arange(len(c)), list(c.index), fontsize=6)
    ax.invert_yaxis()
    for x in (threshold, -threshold):
        ax.axvline(x, color="#fd8d3c", lw=0.8, ls="--")
    for x in (suspicious, -suspicious):
        ax.axvline(x, color="#de2d26", lw=0.8, ls="--")
    ax.set_title(title)
    return _png(fig)


def action_share_bars(shares: pd.DataFrame, title: str) -> bytes:
    """Stacked bars: one bar per row of ``shares`` (columns flat/long/short, summing to 1)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(shares) + 1.0))
    left = np.zeros(len(shares))
    colors = {"flat": "#bdbdbd", "long": "#74c476", "short": "#de2d26"}
    for col in shares.columns:
        v = shares[col].to_numpy(dtype=np.float64)
        ax.barh(np.arange(len(shares)), v, left=left, color=colors.get(col, None), label=col)
        left += v
    ax.set_yticks(np.arange(len(shares)), [str(i) for i in shares.index], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(title)
    return _png(fig)


def action_mix_per_regime(tables: Mapping[str, pd.DataFrame], title: str) -> bytes:
    """Stacked action shares per regime, one block of bars per segment (``{segment: regime x action}``).

    Each table is indexed by regime (``ALL`` first) with columns ``flat``, ``long``, ``short``.
    """
    rows = pd.concat({seg: t[list(ACTIONS)] for seg, t in tables.items()})
    rows.index = [f"{seg}: {regime}" for seg, regime in rows.index]
    return action_share_bars(rows, title)
