"""Any strategy's positions, read and checked against a dataset's bars, as report replays.

A positions file is CSV or Parquet with columns ``timestamp,position``: ``timestamp`` is a bar of the
dataset as the lake stores it (bar close, UTC; ISO text or a datetime column, naive = UTC), and
``position`` is decided at that bar's close and held during the next bar, in ``[-leverage,
+leverage]`` (the exposure; 1 = fully long). It must cover every bar of the dataset's ``val``,
``test`` and ``live`` segments; ``train`` is used (for the action-drift reference) when the file
covers it completely, else the drift gate compares live with val+test. Bars outside the segments
(warm-up, embargo) are allowed and ignored.

Every problem is a :class:`PositionsError` naming the file, the row (1-based data row, header not
counted) and the rule: ``missing_column``, ``bad_timestamp``, ``duplicate_timestamp``,
``non_finite`` (NaN/inf position), ``out_of_range``, ``unknown_timestamp`` (not a bar of the
dataset), ``missing_bar`` (a segment bar without a position), ``empty``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from himari_pipeline.datasets.splits import DatasetSplits
from himari_pipeline.evaluation.backtest import backtest
from himari_pipeline.evaluation.report import (
    Replay,
    StrategySubject,
    ValidationReport,
    build_validation_report,
)
from himari_pipeline.evaluation.timestamped import read_timestamped, rule_error
from himari_pipeline.evaluation.verdict import Gates
from himari_pipeline.trading.rules import TradingRules

__all__ = [
    "evaluate_positions",
    "REQUIRED_SEGMENTS",
    "PositionsError",
    "read_positions",
    "segment_positions",
    "strategy_replays",
]

REQUIRED_SEGMENTS: tuple[str, ...] = ("val", "test", "live")


class PositionsError(ValueError):
    """A positions file broke a rule; the message names file, row and rule."""


def _err(path: Path, row: int | None, rule: str, detail: str) -> PositionsError:
    return rule_error(PositionsError, path, row, rule, detail)


def read_positions(path: str | Path) -> pd.DataFrame:
    """The file as ``timestamp`` (int64 ns UTC) and ``position`` (float64), checked row by row."""
    path = Path(path)
    frame, ns = read_timestamped(path, ("timestamp", "position"), PositionsError)
    pos = pd.to_numeric(frame["position"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(pos))
    if len(bad):
        raise _err(path, int(bad[0]) + 1, "non_finite", f"position {frame['position'].iloc[bad[0]]!r}")
    out = pd.DataFrame({"timestamp": ns, "position": pos, "row": np.arange(1, len(ns) + 1)})
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def segment_positions(
    frame: pd.DataFrame,
    splits: DatasetSplits,
    leverage: float,
    path: str | Path = "positions",
    bar_timestamps: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Positions per segment on its bars: ``val``, ``test``, ``live`` and ``train`` when covered.

    ``bar_timestamps``: every bar close of the dataset (int64 ns); without it a timestamp is known when it
    lies on the splits' time grid between the first warm-up bar and the last bar.
    """
    path = Path(path)
    pos, rows = frame["position"].to_numpy(), frame["row"].to_numpy()
    bad = np.flatnonzero(np.abs(pos) > leverage + 1e-12)
    if len(bad):
        raise _err(
            path,
            int(rows[bad[0]]),
            "out_of_range",
            f"position {pos[bad[0]]:g} outside [-{leverage:g}, +{leverage:g}]",
        )
    ts = frame["timestamp"].to_numpy()
    if bar_timestamps is not None:
        unknown = ~np.isin(ts, np.asarray(bar_timestamps, dtype=np.int64))
    else:  # the split rows and the bars before them (warm-up, embargo) on the bars' time grid
        known = np.concatenate([np.asarray(s.timestamps, dtype=np.int64) for s in splits.splits.values()])
        step = int(np.median(np.diff(np.sort(known))))
        lo = known.min() - step * int(splits.metadata.get("plan", {}).get("warmup", 0))
        unknown = ~np.isin(ts, known) & ((ts < lo) | (ts > known.max()) | ((ts - lo) % step != 0))
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise _err(
            path,
            int(rows[i]),
            "unknown_timestamp",
            f"{pd.Timestamp(ts[i], tz='UTC')} is not a bar close of this dataset",
        )
    out: dict[str, np.ndarray] = {}
    index = pd.Series(np.arange(len(ts)), index=ts)
    for name in ("train", *REQUIRED_SEGMENTS):
        if name not in splits.splits:
            continue
        seg_ts = np.asarray(splits[name].timestamps, dtype=np.int64)
        hit = index.reindex(seg_ts).to_numpy()
        missing = np.isnan(hit)
        if missing.any():
            if name == "train" and missing.all():
                continue
            first = pd.Timestamp(seg_ts[np.flatnonzero(missing)[0]], tz="UTC")
            raise PositionsError(
                f"{path.name}: rule missing_bar: {int(missing.sum())} of {len(seg_ts)} bars of the {name} "
                f"segment have no position, the first at {first}"
            )
        out[name] = pos[hit.astype(np.int64)]
    return out


def strategy_replays(
    positions: dict[str, np.ndarray], splits: DatasetSplits, costs: TradingRules, bars_per_year: float
) -> dict[str, Replay]:
    """One :class:`Replay` per segment: decisions at every bar but the last (which earns nothing), as
    the trading rules let them through (min hold / cooldown), with the segment's missing bars."""
    out = {}
    for name, p in positions.items():
        split = splits[name]
        ret = np.asarray(split.returns, dtype=np.float64).copy()
        ret[0] = 0.0
        res = backtest(p / costs.leverage, ret, costs, bars_per_year, gap_before=split.gap_before)
        exposure = res.exposure
        action = np.where(exposure > 0, 1, np.where(exposure < 0, 2, 0)).astype(np.int64)
        out[name] = Replay(
            np.arange(len(exposure)),
            action,
            exposure,
            res.raw_net_returns,
            bool(res.ruined),
            direction=res.positions,
        )
    return out


def evaluate_positions(
    frame: pd.DataFrame,
    splits: DatasetSplits,
    *,
    name: str,
    dataset: str,
    costs: TradingRules,
    bars_per_year: float,
    n_trials: int = 1,
    truncation_results: dict[str, bool] | None = None,
    bar_timestamps: np.ndarray | None = None,
    source: str | Path = "positions",
    gates: Gates | None = None,
    n_perm: int = 1000,
) -> ValidationReport:
    """The validation report and verdict of a strategy's positions (``frame`` from :func:`read_positions`)."""
    if n_trials < 1:
        raise PositionsError(f"--trials must be >= 1, got {n_trials}")
    segs = segment_positions(frame, splits, costs.leverage, source, bar_timestamps)
    subject = StrategySubject(
        name, dataset, strategy_replays(segs, splits, costs, bars_per_year), n_trials, str(source)
    )
    return build_validation_report(
        None,
        splits,
        None,
        bars_per_year=bars_per_year,
        costs=costs,
        truncation_results=truncation_results,
        gates=gates,
        n_perm=n_perm,
        strategy=subject,
    )
