"""Builders shared by the tests: bars, bar files, a data run's resources, a `himari` subprocess's environment.

Dagster, the definitions and the synthetic market are imported only by the builders that need them, so
a test of plain domain code that uses the random-walk builder does not pay for them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from himari_pipeline.market.bars import timeframe_delta


def walk_bars(ts: pd.DatetimeIndex, seed: int = 0, spread: float = 0.002) -> pd.DataFrame:
    """Random-walk OHLCV bars closing at ``ts``: 1% log steps, high/low ``spread`` outside open/close."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame(
        {
            "timestamp": ts,
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volume": rng.uniform(1, 5, len(ts)),
        }
    )


def synthetic_bars(start: str, end: str, seed: int = 3, timeframe: str = "1h") -> pd.DataFrame:
    """The planted synthetic market's bars from ``start`` to ``end`` (dates, inclusive)."""
    from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars

    return generate_synthetic_bars(SyntheticConfig(seed=seed, start=start, end=end, timeframe=timeframe))


def write_binance_csv(bars: pd.DataFrame, path: Path, micros: bool = False, timeframe: str = "1h") -> Path:
    """Bars as a Binance kline CSV (no header; open time in ms, or µs like 2025+ spot files)."""
    bar_ms = int(timeframe_delta(timeframe).value // 1_000_000)
    open_ms = (bars["timestamp"].astype("int64") // 1_000_000 - bar_ms).to_numpy()
    scale = 1000 if micros else 1
    rows = pd.DataFrame(
        {
            "open_time": open_ms * scale,
            "open": bars["open"],
            "high": bars["high"],
            "low": bars["low"],
            "close": bars["close"],
            "volume": bars["volume"],
            "close_time": (open_ms + bar_ms) * scale - 1,
            "quote_volume": bars["volume"] * bars["close"],
            "count": 100,
            "taker_buy_volume": bars["volume"] / 2,
            "taker_buy_quote_volume": bars["volume"] * bars["close"] / 2,
            "ignore": 0,
        }
    )
    rows.to_csv(path, header=False, index=False)
    return path


def data_resources(lake_root: str | Path, **settings) -> dict:
    """The resources of a data run: the lake at ``lake_root`` and :class:`PipelineSettings` (``settings``)."""
    from himari_pipeline.defs.resources import LakeResource, PipelineSettings

    return {"lake": LakeResource(root=str(lake_root)), "settings": PipelineSettings(**settings)}


def materialize_data(key: str, resources: dict, instance=None, selection=None, raise_on_error: bool = False):
    """Run the data assets and their checks for dataset ``key`` in process (a fresh ephemeral instance
    unless ``instance`` is given; the dataset is registered as a partition first)."""
    import dagster as dg

    from himari_pipeline.defs.data_assets import DATA_ASSETS
    from himari_pipeline.defs.data_checks import DATA_CHECKS

    instance = instance or dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("datasets", [key])
    return dg.materialize(
        [*DATA_ASSETS, *DATA_CHECKS],
        partition_key=key,
        instance=instance,
        resources=resources,
        selection=selection,
        raise_on_error=raise_on_error,
    )


def himari_env(tmp: Path, **settings: str) -> dict[str, str]:
    """The environment of a ``himari`` subprocess with its own lake and Dagster home under ``tmp``.

    This process's environment without its ``DAGSTER_*``/``HIMARI_*`` variables (the suite's row count
    for the every-row truncation check is kept), then ``settings`` as ``HIMARI_<NAME>``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "HIMARI_"))}
    env |= {"DAGSTER_HOME": str(tmp / "dagster_home"), "HIMARI_LAKE_ROOT": str(tmp / "lake")}
    if "HIMARI_TRUNCATION_ROWS" in os.environ:
        env["HIMARI_TRUNCATION_ROWS"] = os.environ["HIMARI_TRUNCATION_ROWS"]
    return env | {f"HIMARI_{name.upper()}": str(value) for name, value in settings.items()}
