"""Catalog rows and plots for a training run (no Dagster): one row per checkpoint, training curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from himari_pipeline.rl.checkpoints import META_FILE, best_checkpoint, weights_fingerprint
from himari_pipeline.storage.lake import lake_relative
from himari_pipeline.vocabulary import ACTIONS

CHECKPOINT_COLUMNS = (
    "experiment",
    "dataset",
    "config_hash",
    "split_version",
    "step",
    "checkpoint_path",
    "is_best",
    "collapsed",
    "val_greedy_sharpe",
    "val_sampled_sharpe",
    "val_total_return",
    "val_entropy",
    "val_share_flat",
    "val_share_long",
    "val_share_short",
    "weights_sha256",
)


def _num(meta: dict, key: str) -> float:
    v = meta.get(key)
    return float(v) if isinstance(v, int | float) and math.isfinite(float(v)) else float("nan")


def weights_sha(path: Path) -> str:
    """sha256 of each safetensors file of a checkpoint (name:hash16, comma-separated)."""
    return weights_fingerprint(path)  # what evaluation and promotion verify against


def checkpoints_table(summary, lake_root: str | Path, dataset: str) -> pd.DataFrame:
    """One row per evaluated checkpoint of ``summary.out_dir`` (the lake's ``checkpoints`` contract).

    A seed population's summary gives the rows of every seed, with a ``seed`` column and each seed's
    own ``is_best``.
    """
    if hasattr(summary, "runs"):  # a PopulationSummary
        parts = [
            checkpoints_table(run, lake_root, dataset).assign(seed=seed)
            for seed, run in zip(summary.seeds, summary.runs, strict=True)
        ]
        return pd.concat(parts, ignore_index=True).astype({"seed": "int64"})
    run = Path(summary.out_dir)
    root = Path(lake_root).resolve()
    best = best_checkpoint(run)
    best_path = None if best is None else best.resolve()
    rows = []
    for ck in sorted(p for p in run.glob("step_*") if (p / META_FILE).exists()):
        meta = json.loads((ck / META_FILE).read_text())
        m = meta.get("metrics") or {}
        if not m:  # the end-of-run save carries no evaluation
            continue
        rows.append(
            {
                "experiment": summary.experiment,
                "dataset": dataset,
                "config_hash": summary.config_hash,
                "split_version": summary.split_version,
                "step": int(meta.get("global_step", meta.get("step", 0))),
                "checkpoint_path": lake_relative(root, ck),
                "is_best": best_path is not None and ck.resolve() == best_path,
                "collapsed": bool(_num(m, "collapsed") == 1.0),
                "val_greedy_sharpe": _num(m, "greedy_sharpe"),
                "val_sampled_sharpe": _num(m, "temp_sharpe"),
                "val_total_return": _num(m, "greedy_total_return"),
                "val_entropy": _num(m, "greedy_entropy"),
                "val_share_flat": _num(m, "greedy_share_flat"),
                "val_share_long": _num(m, "greedy_share_long"),
                "val_share_short": _num(m, "greedy_share_short"),
                "weights_sha256": weights_sha(ck),
            }
        )
    table = pd.DataFrame(rows, columns=list(CHECKPOINT_COLUMNS))
    return table.astype({"step": "int64", "is_best": bool, "collapsed": bool})


def training_curves_plot(log: pd.DataFrame, table: pd.DataFrame, title: str) -> bytes:
    """Validation Sharpe per checkpoint, entropy and action shares over training steps."""
    from himari_pipeline.plots import _png, pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
    if len(table):
        axes[0].plot(table["step"], table["val_greedy_sharpe"], "o-", label="greedy")
        axes[0].plot(table["step"], table["val_sampled_sharpe"], "s--", label="T=0.5")
        axes[0].axhline(0, color="#999", lw=0.5)
        axes[0].legend(fontsize=7)
    axes[0].set_title("validation Sharpe (ann., net)", fontsize=9)
    for key, ax, name in (("losses/entropy", axes[1], "entropy"),):
        if key in log:
            ax.plot(log["step"], log[key])
        ax.set_title(name, fontsize=9)
    for a in ACTIONS:
        key = f"actions/share_{a}"
        if key in log:
            axes[2].plot(log["step"], log[key], label=a)
    axes[2].set_title("rollout action shares", fontsize=9)
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return _png(fig)
