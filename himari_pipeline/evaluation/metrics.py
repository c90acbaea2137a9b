"""Performance statistics of a :class:`BacktestResult` (pure functions, annualized by the real calendar).

Definitions (risk-free rate 0, ``k = bars_per_year``, ``r`` = per-step net returns, ``m = len(r)``):
Sharpe ``mean(r)/std(r, ddof=1)*sqrt(k)``; Sortino ``mean(r)*k / (sqrt(mean(min(r,0)^2))*sqrt(k))``;
annual volatility ``std(r, ddof=1)*sqrt(k)``; CAGR ``(final/initial)^(k/m) - 1``; max drawdown of the
equity curve including the initial value; Calmar ``CAGR/|max drawdown|``. These are the formulas of
empyrical (``annualization=bars_per_year``), which the tests check against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from himari_pipeline.evaluation.backtest import BacktestResult
from himari_pipeline.vocabulary import action_shares, position_actions


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return float(num / den)
    if num == 0:
        return 0.0
    return float(np.sign(num) * np.inf)


def sharpe_ratio(returns: np.ndarray, bars_per_year: float) -> float:
    """Annualized Sharpe ratio (risk-free 0, sample std with ddof=1)."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return float("nan")
    return _ratio(r.mean(), r.std(ddof=1)) * float(np.sqrt(bars_per_year))


def sortino_ratio(returns: np.ndarray, bars_per_year: float) -> float:
    """Annualized Sortino ratio (target 0, downside deviation over all steps)."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return float("nan")
    downside = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))
    return _ratio(r.mean() * bars_per_year, downside * np.sqrt(bars_per_year))


def max_drawdown(equity: np.ndarray) -> float:
    """Most negative ``equity / running peak - 1`` (0 for a never-falling curve, -1 for ruin)."""
    e = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(e)
    with np.errstate(invalid="ignore", divide="ignore"):
        dd = np.where(peak > 0, e / peak - 1.0, 0.0)
    return float(dd.min())


def annual_return(final_over_initial: float, n_steps: int, bars_per_year: float) -> float:
    """CAGR over ``n_steps`` bars of a calendar with ``bars_per_year`` bars."""
    if n_steps < 1:
        return float("nan")
    if final_over_initial <= 0:
        return -1.0
    return float(final_over_initial ** (bars_per_year / n_steps) - 1.0)


def daily_returns(result: BacktestResult, timestamps: Sequence | pd.DatetimeIndex) -> pd.Series:
    """Compounded net return per calendar day; step ``i`` is realized at ``timestamps[i+1]``."""
    ts = pd.DatetimeIndex(timestamps)
    if len(ts) != len(result.equity):
        raise ValueError(f"{len(ts)} timestamps for {len(result.equity)} bars")
    growth = pd.Series(1.0 + result.net_returns, index=ts[1:])
    return growth.groupby(ts[1:].floor("D")).prod() - 1.0


def position_shares(exposure: np.ndarray) -> dict[str, float]:
    """``long_share``, ``short_share``, ``flat_share`` of the steps, by the sign of the exposure."""
    shares = action_shares(position_actions(exposure))
    return {f"{a}_share": shares[a] for a in ("long", "short", "flat")}


def _turnover(exposure: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(exposure, prepend=0.0))


def compute_stats(
    result: BacktestResult,
    bars_per_year: float | None = None,
    timestamps: Sequence | pd.DatetimeIndex | None = None,
) -> dict[str, float]:
    """All summary statistics of a backtest as a flat dict of numbers (see the module doc)."""
    k = float(bars_per_year or result.bars_per_year)
    r = result.net_returns
    m = len(r)
    growth = result.final_value / result.initial
    cagr = annual_return(growth, m, k)
    mdd = max_drawdown(result.equity)
    trades = result.trades
    tr = trades["return"].to_numpy(dtype=np.float64) if len(trades) else np.zeros(0)
    gains, losses = tr[tr > 0].sum(), -tr[tr < 0].sum()
    turnover = _turnover(result.exposure)
    stats: dict[str, float] = {
        "bars": float(m),
        "years": m / k,
        "initial_value": result.initial,
        "final_value": result.final_value,
        "cumulative_return": growth - 1.0,
        "gross_cumulative_return": float(np.prod(1.0 + result.gross_returns) - 1.0),
        "annual_return": cagr,
        "annual_volatility": float(r.std(ddof=1) * np.sqrt(k)) if m > 1 else float("nan"),
        "sharpe": sharpe_ratio(r, k),
        "sortino": sortino_ratio(r, k),
        "max_drawdown": mdd,
        "calmar": _ratio(cagr, abs(mdd)) if mdd < 0 else float("nan"),
        "total_transaction_cost": float(result.transaction_costs.sum()),
        "total_carry_cost": float(result.carry_costs.sum()),
        "total_borrow_cost": float(result.borrow_costs.sum()),
        "turnover_per_bar": float(turnover.mean()) if m else 0.0,
        "turnover_per_year": float(turnover.mean() * k) if m else 0.0,
        "n_position_changes": float(np.count_nonzero(turnover)),
        "n_trades": float(len(trades)),
        "win_rate": float(np.mean(tr > 0)) if len(tr) else float("nan"),
        "avg_trade_return": float(tr.mean()) if len(tr) else float("nan"),
        "avg_hold_bars": float(trades["holding_bars"].mean()) if len(trades) else float("nan"),
        "profit_factor": _ratio(gains, losses) if len(tr) else float("nan"),
        "exposure": float(np.mean(result.exposure != 0)) if m else 0.0,
        **position_shares(result.exposure),
        "ruined": float(result.ruined),
        "ruin_bar": float(result.ruin_bar) if result.ruin_bar is not None else float("nan"),
    }
    if timestamps is not None:
        daily = daily_returns(result, timestamps)
        ts = pd.DatetimeIndex(timestamps)
        bars_per_day = float(pd.Series(1, index=ts[1:]).groupby(ts[1:].floor("D")).size().median())
        days_per_year = k / bars_per_day
        stats["n_days"] = float(len(daily))
        stats["avg_daily_return"] = float(daily.mean())
        stats["sharpe_daily"] = sharpe_ratio(daily.to_numpy(), days_per_year)
    return stats


def stats_by_group(
    result: BacktestResult,
    groups: np.ndarray,
    names: Mapping[int, str] | Sequence[str] | None = None,
    bars_per_year: float | None = None,
) -> pd.DataFrame:
    """Per-group (e.g. per-regime) statistics; step ``i`` belongs to ``groups[i]``, the label known
    at the decision (bar ``i``'s close). ``groups`` has one label per bar (length ``n``)."""
    k = float(bars_per_year or result.bars_per_year)
    g = np.asarray(groups)
    if len(g) != len(result.equity):
        raise ValueError(f"{len(g)} group labels for {len(result.equity)} bars")
    g = g[:-1]
    r = result.net_returns
    turnover = _turnover(result.exposure)
    rows = {}
    for label in pd.unique(g):
        sel = g == label
        rg = r[sel]
        if isinstance(names, Mapping):
            name = names.get(label, str(label))
        elif names is not None:
            name = names[int(label)]
        else:
            name = str(label)
        rows[name] = {
            "bars": float(sel.sum()),
            "share_of_bars": float(sel.mean()),
            "cumulative_return": float(np.prod(1.0 + rg) - 1.0),
            "mean_return": float(rg.mean()),
            "annual_volatility": float(rg.std(ddof=1) * np.sqrt(k)) if len(rg) > 1 else float("nan"),
            "sharpe": sharpe_ratio(rg, k),
            "turnover_per_bar": float(turnover[sel].mean()),
            **position_shares(result.exposure[sel]),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
