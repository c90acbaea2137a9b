"""Small PNG plots for people who would rather look than read (pure matplotlib, no Dagster)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

REGIME_COLORS = ("#9ecae1", "#74c476", "#fd8d3c", "#de2d26")


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported on first use (it costs ~0.6 s per process)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _thin(n: int, limit: int = 4000) -> slice:
    return slice(None, None, max(1, n // limit))


def price_plot(bars: pd.DataFrame, title: str) -> bytes:
    """Close price on a log scale."""
    s = _thin(len(bars))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ax.plot(bars["timestamp"].iloc[s], bars["close"].iloc[s], lw=0.8, color="#333")
    ax.set_yscale("log")
    ax.set_title(title)
    return _png(fig)


def regime_plot(bars: pd.DataFrame, regimes: pd.DataFrame, names: tuple[str, ...], title: str) -> bytes:
    """Close price with each bar coloured by its regime label."""
    s = _thin(len(bars))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ts, close, ids = bars["timestamp"].iloc[s], bars["close"].iloc[s], regimes["regime_id"].iloc[s]
    ax.plot(ts, close, lw=0.5, color="#999")
    for rid, name in enumerate(names):
        m = (ids == rid).to_numpy()
        ax.scatter(ts[m], close[m], s=2, color=REGIME_COLORS[rid % len(REGIME_COLORS)], label=name)
    ax.set_yscale("log")
    ax.legend(loc="upper left", markerscale=4, fontsize=7)
    ax.set_title(title)
    return _png(fig)


def denoise_plot(raw: pd.DataFrame, denoised: pd.DataFrame, columns: list[str], last: int = 400) -> bytes:
    """Raw against EKF-denoised values of a few features over the last ``last`` bars."""
    plt = pyplot()
    fig, axes = plt.subplots(len(columns), 1, figsize=(9, 1.8 * len(columns)), sharex=True)
    for ax, col in zip(np.atleast_1d(axes), columns, strict=True):
        ax.plot(raw["timestamp"].iloc[-last:], raw[col].iloc[-last:], lw=0.6, color="#bbb", label="raw")
        ax.plot(
            denoised["timestamp"].iloc[-last:],
            denoised[col].iloc[-last:],
            lw=1.0,
            color="#08519c",
            label="EKF",
        )
        ax.set_ylabel(col, fontsize=7)
    np.atleast_1d(axes)[0].legend(loc="upper left", fontsize=7)
    return _png(fig)


def splits_plot(bars: pd.DataFrame, ranges: dict[str, tuple[int, int]], title: str) -> bytes:
    """Close price with the train/val/test/live row ranges shaded (gaps between them are embargo)."""
    colors = {"train": "#c6dbef", "val": "#fdd0a2", "test": "#c7e9c0", "live": "#fcbba1"}
    s = _thin(len(bars))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ax.plot(bars["timestamp"].iloc[s], bars["close"].iloc[s], lw=0.8, color="#333")
    for name, (a, b) in ranges.items():
        if b > a:
            ax.axvspan(
                bars["timestamp"].iloc[a],
                bars["timestamp"].iloc[b - 1],
                color=colors.get(name, "#eee"),
                label=name,
            )
    ax.set_yscale("log")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title)
    return _png(fig)
