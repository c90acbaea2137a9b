"""Bar builders shared by the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
