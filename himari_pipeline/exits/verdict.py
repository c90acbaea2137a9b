"""Judge an exit policy or rule: per-trade metrics against the baselines on every segment, the
significance of its exits, and the promotion gate (:func:`~himari_pipeline.evaluation.verdict.judge`).

Per segment (train, val, test, live) every entry is played once
(:func:`~himari_pipeline.exits.evaluate.play_trades`) by the subject and by the baselines, net of
the same costs and under the same stop rule: ``fixed_stops`` (hold with the initial stop-loss and
take-profit to ``max_hold``), ``time_exit`` (exit after ``max_hold // 2`` bars), ``trailing_stop``
(tighten every bar) and ``random_exit`` (exits at holding lengths drawn from the subject's own).
Annualized Sharpe = per-trade Sharpe x sqrt(trades per year of the segment).

**Significance.** Permutation over trades: the null is "the subject's exits are no better timed than
random ones of the same lengths": each of ``n_perm`` draws gives every trade another trade's holding
length (a permutation of the subject's lengths; the env's stops still apply) and plays them; p = (1 +
#{null mean >= the subject's mean}) / (1 + n_perm), on test (the gate) and live (reported). The
Deflated Sharpe is the subject's per-trade Sharpe on validation against every trial (each evaluated
checkpoint of a trained policy).

**Evidence for the gate** (the trading gate's keys, measured for trades):

- ``truncation_invariant``: the observation of every decision equals the observation computed on the
  bars cut after that decision's bar (4 cuts);
- ``leak_correlations``: each observation column at decision k against the next bar's side-adjusted
  return (the log-002 v3 bug, P&L of bar k+1 visible at k, correlates about 1);
- ``*_action_shares``: the shares of the trades' holding lengths in five bins (``quick`` <=
  ``min_exit_bar``, ``short`` <= max_hold/4, ``medium`` <= max_hold/2, ``long`` < max_hold, ``full``):
  a policy whose trades all end in one bin (log 002's exit at bar 0) has collapsed, and the train ->
  live drift of the bins is the action-drift gate;
- ``dsr``, ``permutation_p`` (test) and ``live_permutation_p``: the exit gate (:data:`EXIT_GATES`)
  requires both out-of-sample years to be significant. The null is approximate (holding lengths are
  not independent of a trade's path: a stop ends a volatile trade early), and one significant year
  passed the trend rule on a null market (seed 0: test p 0.01, live p 0.25); two years bound a false
  pass near alpha squared. ``validation_sharpe``, ``test_sharpe`` feed the warnings;
- ``live_sharpe`` against ``live_buy_and_hold_sharpe`` (here the ``fixed_stops`` baseline: doing
  nothing after entry), ``live_max_drawdown`` and ``live_ruined`` of the live trades compounded in
  entry order (one trade at a time, the whole account each).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from himari_pipeline.evaluation.metrics import max_drawdown
from himari_pipeline.evaluation.significance import deflated_sharpe_ratio
from himari_pipeline.evaluation.verdict import Gates, Verdict, judge
from himari_pipeline.exits.data import SEGMENTS, ExitData
from himari_pipeline.exits.env import (
    ExitConfig,
    ExitMarket,
    exit_observation,
    market_features,
    observation_names,
)
from himari_pipeline.exits.evaluate import (
    Policy,
    fixed_stops,
    length_exit,
    play_trades,
    random_exit,
    time_exit,
    trade_metrics,
    trade_sharpe,
    trailing_stop,
)

#: the exit gate: the trading gate, with the live year's permutation test required as well
EXIT_GATES = Gates(max_live_permutation_p=0.05)
BASELINES = ("fixed_stops", "time_exit", "trailing_stop", "random_exit")
HOLDING_BINS = ("quick", "short", "medium", "long", "full")
TABLE_COLUMNS = (
    "trades", "mean_return", "win_rate", "profit_factor", "sharpe", "avg_holding", "min_holding",
    "median_holding", "quick_exit_share", "exit_agent", "exit_stop_loss", "exit_take_profit", "exit_time",
)  # fmt: skip


@dataclass
class ExitSubject:
    """What is judged: its name, how it plays on given bars (``policy_for(bars)``: a rule reads the
    bars it is given; a trained policy reads the env's observation), and the selection's trials."""

    name: str
    policy_for: Callable[[pd.DataFrame], Policy]
    note: str = ""
    trial_sharpes: np.ndarray | None = None  # per-trade Sharpes of every trial (None: only this one)
    n_trials: int = 1


@dataclass
class ExitEvaluation:
    """Everything the exit report shows."""

    data: str
    subject: str
    note: str
    config: ExitConfig
    bars_per_year: float
    bounds: dict[str, tuple[str, str]]
    table: pd.DataFrame  # index (segment, strategy), TABLE_COLUMNS
    trades: dict[str, pd.DataFrame]  # the subject's trades per segment
    actions: dict[str, dict[str, float]]  # the subject's action shares per segment
    blocked_rate: dict[str, float]
    holding: dict[str, dict[str, float]]  # holding-length bin shares per segment
    permutation: dict[str, float]  # test and live p-values
    trials: pd.DataFrame
    evidence: dict
    verdict: Verdict
    extra: dict = field(default_factory=dict)


def holding_shares(holding: np.ndarray, cfg: ExitConfig) -> dict[str, float]:
    """Shares of the trades' holding lengths in :data:`HOLDING_BINS`."""
    h = np.asarray(holding)
    edges = [cfg.min_exit_bar, cfg.max_hold // 4, cfg.max_hold // 2, cfg.max_hold - 1]
    idx = np.searchsorted(np.maximum.accumulate(edges), h, side="left")
    counts = np.bincount(np.minimum(idx, 4), minlength=5)
    total = max(int(counts.sum()), 1)
    return {b: float(c / total) for b, c in zip(HOLDING_BINS, counts, strict=True)}


def compounded(returns: np.ndarray) -> tuple[float, bool]:
    """Max drawdown and ruin of the trades compounded in order (one at a time, the whole account)."""
    eq = np.cumprod(1.0 + np.asarray(returns, dtype=np.float64))
    return max_drawdown(np.r_[1.0, np.maximum(eq, 0.0)]), bool((eq <= 0).any())


def permutation_pvalue(
    market: ExitMarket,
    cfg: ExitConfig,
    holding: np.ndarray,
    observed: float,
    n_perm: int = 199,
    seed: int = 0,
) -> float:
    """p of the subject's mean trade return against exits at permuted holding lengths (module doc);
    all permutations are played at once in one env."""
    n = len(market.entry_bar)
    if n < 2 or not math.isfinite(observed):
        return math.nan
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([rng.permutation(np.asarray(holding)) for _ in range(n_perm)])
    big = ExitMarket(market.open, market.high, market.low, market.close,
                     market.entry_bar.repeat(n_perm), market.entry_side.repeat(n_perm))  # fmt: skip
    trades, _ = play_trades(big, cfg, length_exit(lengths))
    null = trades["return"].to_numpy().reshape(n_perm, n).mean(axis=1)
    return float((1 + np.sum(null >= observed - 1e-15)) / (1 + n_perm))


def _hold_path(close: torch.Tensor, market: ExitMarket, cfg: ExitConfig) -> tuple[torch.Tensor, ...]:
    """Every decision of every entry on the hold path (k = 0 .. max_hold - 1): bar t, side, k, entry
    price and the initial stop and take-profit, one row per decision."""
    e = market.entry_bar.repeat_interleave(cfg.max_hold)
    side = market.entry_side.repeat_interleave(cfg.max_hold)
    k = torch.arange(cfg.max_hold).repeat(len(market.entry_bar))
    entry = close[e]
    return e + k, side, k, entry, entry * (1 - side * cfg.stop_loss), entry * (1 + side * cfg.take_profit)


def observation_leak_correlations(
    close: torch.Tensor, market: ExitMarket, cfg: ExitConfig, observe: Callable = exit_observation
) -> dict:
    """Each observation column (on the hold path from every entry) against the next bar's
    side-adjusted log return: Pearson and Spearman; constant columns are left out."""
    path = _hold_path(close, market, cfg)
    keep = path[0] + 1 < len(close)  # decisions with a next bar
    t, side, k, entry, stop, take = (x[keep] for x in path)
    obs = observe(close, t, side, entry, k.double(), torch.ones_like(entry), stop, take, cfg,
                  market_features(close, cfg))  # fmt: skip
    y = pd.Series((side * torch.log(close[t + 1] / close[t])).numpy())
    frame = pd.DataFrame(obs.double().numpy(), columns=observation_names(cfg))
    return {
        name: {"pearson": float(x.corr(y)), "spearman": float(x.corr(y, method="spearman"))}
        for name, x in frame.items()
        if x.std() > 0
    }


def observation_truncation_invariant(
    close: torch.Tensor, market: ExitMarket, cfg: ExitConfig, cuts: int = 4,
    observe: Callable = exit_observation,
) -> bool:  # fmt: skip
    """Every decision's observation on the full bars equals the one on the bars cut right after the
    decision's bar (``cuts`` cut points over the entries)."""
    t, side, k, entry, stop, take = _hold_path(close, market, cfg)

    def obs(c: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        return observe(c, t[sel], side[sel], entry[sel], k[sel].double(), torch.ones_like(entry[sel]),
                       stop[sel], take[sel], cfg, market_features(c, cfg))  # fmt: skip

    for cut in np.linspace(int(t.min()) + 1, int(t.max()) + 1, cuts + 2, dtype=int)[1:-1]:
        sel = t < cut
        if bool(sel.any()) and not torch.equal(obs(close, sel), obs(close[:cut], sel)):
            return False
    return True


def decisions_truncation_invariant(
    bars: pd.DataFrame,
    entries: pd.DataFrame,
    cfg: ExitConfig,
    policy_for: Callable,
    full: pd.DataFrame | None = None,
    cuts: int = 8,
) -> bool:
    """The subject decides the same at every bar ``t < cut`` when every bar from ``cut`` on is replaced
    by NaN: no decision reads a later bar. The cuts fall right after ``cuts`` decision bars spread
    over the subject's own decisions, so open trades decide at each cut's last bar; a rule that peeks
    at the next bar (log 002's v3 market tensor) decides differently there. ``full``: the decisions
    on the whole bars, when already recorded (``play_trades(..., record=True)``)."""
    if full is None:
        market = ExitMarket.from_numpy(bars, entries["entry_bar"], entries["side"])
        full = play_trades(market, cfg, policy_for(bars), record=True)[1]["decisions"]
    bars_decided = np.unique(full["bar"].to_numpy())
    picks = bars_decided[np.linspace(0, len(bars_decided) - 1, min(cuts, len(bars_decided)), dtype=int)] + 1
    for cut in picks[picks < len(bars)]:
        masked = bars.copy()
        masked.iloc[cut:] = np.nan
        m = ExitMarket.from_numpy(masked, entries["entry_bar"], entries["side"])
        part = play_trades(m, cfg, policy_for(masked), record=True)[1]["decisions"]
        a, b = (d[d["bar"] < cut].set_index(["trade", "bar"])["action"].sort_index() for d in (full, part))
        if not a.equals(b):
            return False
    return True


def _row(trades: pd.DataFrame, cfg: ExitConfig, years: float) -> dict[str, float]:
    m = trade_metrics(trades, cfg.min_exit_bar)
    per_year = len(trades) / years if years > 0 else math.nan
    m["sharpe"] *= math.sqrt(per_year)  # per trade -> annualized
    return {c: m.get(c, math.nan) for c in TABLE_COLUMNS}


def evaluate_exits(
    data: ExitData,
    entries: pd.DataFrame,
    cfg: ExitConfig,
    subject: ExitSubject,
    gates: Gates | None = None,
    n_perm: int = 199,
    seed: int = 0,
) -> ExitEvaluation:
    """Play the subject and the baselines on every segment's entries, test, gather evidence, judge."""
    per_seg = data.segment_entries(entries, cfg.max_hold)
    empty = [s for s in SEGMENTS if len(per_seg[s]) < 2]
    if empty:
        raise ValueError(f"{data.name}: fewer than 2 entries in segment(s) {', '.join(empty)}")
    rows, trades, actions, blocked, holding, perm = {}, {}, {}, {}, {}, {}
    policy = subject.policy_for(data.bars)
    markets = {seg: data.market(per_seg[seg]) for seg in SEGMENTS}
    same_as_fixed, test_decisions = 0.0, None
    for seg, market in markets.items():
        tr, info = play_trades(market, cfg, policy, record=seg == "test")
        trades[seg] = tr.assign(entry_time=pd.to_datetime(data.timestamps[tr["entry_bar"]], utc=True))
        actions[seg] = info["action_shares"]
        test_decisions = info.get("decisions", test_decisions)
        blocked[seg] = float(info["blocked_rate"])
        h = tr["holding_bars"].to_numpy()
        holding[seg] = holding_shares(h, cfg)
        players = {
            subject.name: tr,
            "fixed_stops": play_trades(market, cfg, fixed_stops)[0],
            "time_exit": play_trades(market, cfg, time_exit(cfg.max_hold // 2))[0],
            "trailing_stop": play_trades(market, cfg, trailing_stop)[0],
            "random_exit": play_trades(market, cfg, random_exit(h, len(h), seed))[0],
        }
        for name, played in players.items():
            rows[seg, name] = _row(played, cfg, data.years(seg))
        if seg == "test":
            same_as_fixed = float(
                np.mean(np.isclose(tr["return"], players["fixed_stops"]["return"], 0, 1e-12))
            )
        if seg in ("test", "live"):
            perm[seg] = permutation_pvalue(market, cfg, h, float(tr["return"].mean()), n_perm, seed)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["segment", "strategy"])

    close = torch.as_tensor(data.bars["close"].to_numpy(np.float64))
    val_r = trades["val"]["return"].to_numpy()
    trial = None if subject.trial_sharpes is None or len(subject.trial_sharpes) < 2 else subject.trial_sharpes
    dsr = deflated_sharpe_ratio(val_r, trial, max(1, subject.n_trials))
    mdd, ruined = compounded(trades["live"]["return"].to_numpy())
    evidence = {
        "truncation_invariant": observation_truncation_invariant(close, markets["test"], cfg)
        and decisions_truncation_invariant(
            data.bars, per_seg["test"], cfg, subject.policy_for, test_decisions
        ),
        **{f"{'validation' if s == 'val' else s}_action_shares": holding[s] for s in SEGMENTS},
        "dsr": float(dsr),
        "permutation_p": perm["test"],
        "live_permutation_p": perm["live"],
        "live_ruined": ruined,
        "live_max_drawdown": mdd,
        "live_sharpe": float(table.loc[("live", subject.name), "sharpe"]),
        "live_buy_and_hold_sharpe": float(table.loc[("live", "fixed_stops"), "sharpe"]),
        "leak_correlations": observation_leak_correlations(close, markets["test"], cfg),
        "validation_sharpe": float(table.loc[("val", subject.name), "sharpe"]),
        "test_sharpe": float(table.loc[("test", subject.name), "sharpe"]),
        "test_mean_return": float(table.loc[("test", subject.name), "mean_return"]),
        "test_blocked_rate": blocked["test"],
    }
    verdict = judge(evidence, gates or EXIT_GATES)
    if same_as_fixed >= 0.95:
        verdict.warnings.append(
            f"{same_as_fixed:.0%} of the test trades are the fixed-stops baseline's: the subject hardly acts "
            "after entry, so whatever it earns is the entries' and the stops'"
        )
    ts = np.asarray(subject.trial_sharpes if subject.trial_sharpes is not None else [trade_sharpe(val_r)])
    trials = pd.DataFrame({"trial": np.arange(len(ts)), "val_trade_sharpe": ts}).set_index("trial")
    return ExitEvaluation(
        data=data.name, subject=subject.name, note=subject.note, config=cfg,
        bars_per_year=data.bars_per_year, bounds=data.bounds, table=table, trades=trades, actions=actions,
        blocked_rate=blocked, holding=holding, permutation=perm, trials=trials, evidence=evidence,
        verdict=verdict, extra={"test_same_as_fixed_stops": same_as_fixed},
    )  # fmt: skip
