"""Play every entry once through the exit env with a policy, and the baselines' policies.

:func:`play_trades` runs one env per entry (each from its own entry, in order) until every trade has
ended, on the env's own rules (stops, masks, costs), and returns one row per trade. The baselines are
policies on the same env, so they pay the same costs and obey the same stop rule:

- ``fixed_stops``: HOLD always: the initial stop-loss and take-profit, closed at ``max_hold``;
- ``time_exit``: EXIT at a fixed holding length (with the env's stops);
- ``trailing_stop``: TIGHTEN_SL at every bar;
- ``random_exit``: EXIT at a holding length drawn from a given distribution (e.g. the judged policy's);
  ``length_exit``: EXIT each trade at a given length (the permutation test's null).

``trend_exit`` is an exit rule (EXIT when the trailing trend turns against the trade) and
``policy_actions`` a trained policy as a player.

:func:`trade_metrics` summarises trades: mean return, win rate, profit factor, holding lengths, quick
exits, exit reasons and the action distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from himari_pipeline.exits.env import (
    EXIT,
    EXIT_ACTIONS,
    EXIT_REASONS,
    HOLD,
    TIGHTEN_SL,
    ExitConfig,
    ExitMarket,
    VecExitEnv,
)

Policy = Callable[[VecExitEnv], Tensor]


def play_trades(
    market: ExitMarket, cfg: ExitConfig, policy: Policy, record: bool = False
) -> tuple[pd.DataFrame, dict]:
    """One row per entry (entry_bar, side, return, holding_bars, exit_reason) and the action counts and
    shares;
    with ``record``, ``info["decisions"]``: every decision of an open trade (trade, bar, action as the
    policy proposed it, before the env's masks)."""
    n = len(market.entry_bar)
    env = VecExitEnv(market, cfg, n)
    env.reset(picks=torch.arange(n))
    first = torch.zeros(n, dtype=torch.bool)
    ret = torch.full((n,), torch.nan, dtype=torch.float64)
    held = torch.zeros(n, dtype=torch.long)
    reason = torch.zeros(n, dtype=torch.long)
    counts = torch.zeros(len(EXIT_ACTIONS), dtype=torch.long)
    log: list[tuple[Tensor, Tensor, Tensor]] = []
    for _ in range(cfg.max_hold + 1):
        live = ~first
        actions = policy(env)
        if record:
            rows = live.nonzero().squeeze(-1)
            log.append((rows, (env.e + env.k)[rows], torch.as_tensor(actions)[rows]))
        _, _, done, info = env.step(actions)
        counts += torch.bincount(info["action"][live], minlength=len(EXIT_ACTIONS))
        new = done & live
        ret = torch.where(new, info["trade_return"], ret)
        held = torch.where(new, info["holding_bars"], held)
        reason = torch.where(new, info["exit_reason"], reason)
        first |= done
        if bool(first.all()):
            break
    trades = pd.DataFrame(
        {
            "entry_bar": market.entry_bar.cpu().numpy(),
            "side": market.entry_side.cpu().numpy().astype(np.int8),
            "return": ret.numpy(),
            "holding_bars": held.numpy(),
            "exit_reason": [EXIT_REASONS[i] for i in reason.tolist()],
        }
    )
    actions = dict(zip(EXIT_ACTIONS, counts.tolist(), strict=True))
    total = max(sum(actions.values()), 1)
    info = {
        "actions": actions,
        "action_shares": {a: n / total for a, n in actions.items()},
        "blocked_rate": env.blocked_rate,
    }
    if record:
        cols = [torch.cat(c).numpy() for c in zip(*log, strict=True)]
        info["decisions"] = pd.DataFrame(dict(zip(("trade", "bar", "action"), cols, strict=True)))
    return trades, info


def fixed_stops(env: VecExitEnv) -> Tensor:
    return torch.full((env.n,), HOLD, dtype=torch.long)


def time_exit(bars: int) -> Policy:
    def policy(env: VecExitEnv) -> Tensor:
        return torch.where(env.k >= bars, EXIT, HOLD)

    return policy


def trailing_stop(env: VecExitEnv) -> Tensor:
    return torch.full((env.n,), TIGHTEN_SL, dtype=torch.long)


def length_exit(lengths: np.ndarray) -> Policy:
    """EXIT row ``i`` of the env once it has held ``lengths[i]`` bars (the env's stops still apply)."""
    at = torch.as_tensor(np.asarray(lengths), dtype=torch.long)

    def policy(env: VecExitEnv) -> Tensor:
        return torch.where(env.k >= at, EXIT, HOLD)

    return policy


def random_exit(lengths: np.ndarray, n_trades: int, seed: int = 0) -> Policy:
    """EXIT each trade at a length drawn (with replacement) from ``lengths``; trades are the env's rows."""
    return length_exit(np.random.default_rng(seed).choice(np.asarray(lengths), n_trades))


def trend_exit(close: np.ndarray, window: int = 120, threshold: float = 0.0) -> Policy:
    """The trend-reversal exit rule shipped with the project: EXIT when the trailing trend turns
    against the trade. The score at bar ``t`` is the mean of the last ``window`` simple returns over
    their standard error (bars ``<= t`` only); EXIT when ``side * score < threshold``."""
    r = pd.Series(np.r_[0.0, np.diff(np.asarray(close, dtype=np.float64)) / np.asarray(close)[:-1]])
    score = (r.rolling(window).mean() / r.rolling(window).std() * np.sqrt(window)).to_numpy()
    s = torch.as_tensor(np.nan_to_num(score))

    def policy(env: VecExitEnv) -> Tensor:
        return torch.where(env.side * s[env.e + env.k] < threshold, EXIT, HOLD)

    return policy


def policy_actions(policy, greedy: bool = True) -> Policy:
    """A trained :class:`~himari_pipeline.exits.policy.ExitPolicy` as a player: its greedy action under
    the env's masks at each decision."""

    def play(env: VecExitEnv) -> Tensor:
        return policy.act(env.observe(), env.action_mask(), greedy=greedy)

    return play


def trade_sharpe(returns: np.ndarray) -> float:
    """Per-trade Sharpe: mean over sample std (ddof 1) of the trades' net returns; NaN when undefined."""
    r = np.asarray(returns, dtype=np.float64)
    sd = r.std(ddof=1) if len(r) > 1 else math.nan
    return float(r.mean() / sd) if sd and math.isfinite(sd) and sd > 0 else math.nan


def trade_metrics(trades: pd.DataFrame, min_exit_bar: int) -> dict[str, float]:
    """Per-trade statistics (returns are fractions of the entry notional, net of costs); ``sharpe`` is
    per trade (:func:`trade_sharpe`)."""
    r = trades["return"].to_numpy(np.float64)
    h = trades["holding_bars"].to_numpy()
    gains, losses = r[r > 0].sum(), -r[r < 0].sum()
    out = {
        "trades": float(len(r)),
        "mean_return": float(r.mean()) if len(r) else np.nan,
        "std_return": float(r.std(ddof=1)) if len(r) > 1 else np.nan,
        "sharpe": trade_sharpe(r),
        "win_rate": float((r > 0).mean()) if len(r) else np.nan,
        "profit_factor": float(gains / losses) if losses > 0 else np.inf if gains > 0 else np.nan,
        "avg_holding": float(h.mean()) if len(h) else np.nan,
        "min_holding": float(h.min()) if len(h) else np.nan,
        "median_holding": float(np.median(h)) if len(h) else np.nan,
        "quick_exit_share": float((h <= min_exit_bar).mean()) if len(h) else np.nan,
    }
    shares = trades["exit_reason"].value_counts(normalize=True)
    out.update({f"exit_{k}": float(shares.get(k, 0.0)) for k in EXIT_REASONS[1:]})
    return out
