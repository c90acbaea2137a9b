"""Vectorized long/flat/short trading environment in torch (no Python loop over envs).

Kept whole: the market arrays, their segments and the step arithmetic are one causal contract (which
rows a decision may see and which return it earns), read together.

Causality: the agent stands at bar ``t``'s close (``Obs.t``) and may look at rows ``<= t`` only. The
action chosen there sets the position held during bar ``t+1``; it earns ``position * returns[t+1]``
with ``returns[i] = close[i]/close[i-1] - 1``. Costs, equity, ruin and the min-hold / cooldown masks
are the trading rules of :mod:`himari_pipeline.trading.rules` (carry and borrow charged once per bar
of time, so ``1 + gap_before[t+1]`` times across missing bars); ruin ends the episode (terminated).
Envs auto-reset when done. A market may hold several independent segments (``segment_starts``):
episodes start and end inside one of them. A market of several legs (a pair: ``leg_returns`` and
``leg_weights``, with ``returns`` the spread's return) trades a position in the spread: every leg
pays the rules (:func:`~himari_pipeline.trading.rules.legs_step`: costs on each leg's traded notional,
rebalancing included, borrow on the short leg).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from himari_pipeline.datasets.splits import SplitArrays
from himari_pipeline.rl.configs import EnvConfig
from himari_pipeline.rl.rewards import StepContext, make_reward
from himari_pipeline.trading.rules import (
    advance_hold,
    hold_blocked,
    hold_restricted,
    legs_step,
    trade_step,
)
from himari_pipeline.vocabulary import FLAT, LONG, N_REGIMES, NUM_ACTIONS, SHORT

__all__ = ["FLAT", "LONG", "SHORT", "BARS_HELD_SCALE", "EnvConfig", "MarketArrays", "Obs", "VecTradingEnv"]

BARS_HELD_SCALE = math.log1p(100.0)
"""``position_state[:, 1] = log1p(bars_held) / BARS_HELD_SCALE`` (1.0 after 100 bars)."""


@dataclass
class MarketArrays:
    """One split of the dataset as tensors on one device (shared by all envs and by the policy).

    ``gap_before[i]`` (optional) counts the expected bars missing just before bar ``i``; None = no
    gaps. ``segment_starts`` (optional, first 0, increasing) cuts the rows into independent
    segments (e.g. a market and its mirror image); None = one segment. ``leg_returns`` and
    ``leg_weights`` (optional, (T, K) float64): the legs of a spread; ``returns`` is then the spread's
    return ``leg_weights[i-1] @ leg_returns[i]`` and a position of 1 holds ``leg_weights[t]`` of the legs.
    """

    features: Tensor  # (T, F) float32
    regime_ids: Tensor  # (T,) int64 in 0..3
    returns: Tensor  # (T,) float64, returns[i] = close[i]/close[i-1] - 1
    prices: Tensor  # (T,) float64
    gap_before: Tensor | None = None  # (T,) int64 >= 0
    segment_starts: tuple[int, ...] | None = None
    leg_returns: Tensor | None = None  # (T, K) float64
    leg_weights: Tensor | None = None  # (T, K) float64

    def __post_init__(self) -> None:
        t = self.returns.shape[0]
        if (self.leg_returns is None) != (self.leg_weights is None):
            raise ValueError("leg_returns and leg_weights come together")
        if self.leg_returns is not None and (
            self.leg_returns.ndim != 2
            or self.leg_returns.shape[0] != t
            or self.leg_weights.shape != self.leg_returns.shape
        ):
            raise ValueError(
                f"leg_returns {tuple(self.leg_returns.shape)} and leg_weights "
                f"{tuple(self.leg_weights.shape)} must both be (T={t}, K)"
            )
        if self.features.ndim != 2 or self.features.shape[0] != t:
            raise ValueError(f"features must be (T, F) with T={t}, got {tuple(self.features.shape)}")
        for name in ("regime_ids", "prices", "gap_before"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (t,):
                raise ValueError(f"{name} must have shape ({t},), got {tuple(arr.shape)}")
        if t < 2:
            raise ValueError("need at least 2 bars")
        if self.gap_before is not None and bool((self.gap_before < 0).any()):
            raise ValueError("gap_before must be >= 0")
        if self.segment_starts is not None:
            starts = tuple(int(s) for s in self.segment_starts)
            if not starts or starts[0] != 0 or bool((np.diff(starts) <= 0).any()) or starts[-1] >= t:
                raise ValueError(f"segment_starts must start at 0 and increase below {t}, got {starts}")
            self.segment_starts = starts

    @property
    def num_bars(self) -> int:
        return int(self.returns.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def device(self) -> torch.device:
        return self.features.device

    @property
    def segments(self) -> list[tuple[int, int]]:
        """``(start, end)`` row ranges (end exclusive) of the independent segments."""
        starts = list(self.segment_starts or (0,))
        return list(zip(starts, [*starts[1:], self.num_bars], strict=True))

    @classmethod
    def from_numpy(
        cls,
        features: np.ndarray,
        regime_ids: np.ndarray,
        returns: np.ndarray,
        prices: np.ndarray,
        device: torch.device | str = "cpu",
        gap_before: np.ndarray | None = None,
        segment_starts: Sequence[int] | None = None,
        leg_returns: np.ndarray | None = None,
        leg_weights: np.ndarray | None = None,
    ) -> MarketArrays:
        """Validate numpy arrays and move them to ``device``.

        ``returns[0]`` (and the first return of every segment) may be NaN (no previous close; never
        earned by any decision). Any other non-finite return or feature, or a regime outside 0..3,
        raises ``ValueError``. Leg returns follow the same rule (row 0 may be NaN: it becomes 0).
        """
        feats = np.asarray(features, dtype=np.float32)
        reg = np.asarray(regime_ids)
        ret = np.asarray(returns, dtype=np.float64).copy()
        px = np.asarray(prices, dtype=np.float64)
        if ret.ndim != 1:
            raise ValueError(f"returns must be 1-D, got shape {ret.shape}")
        firsts = np.asarray([0, *(segment_starts if segment_starts is not None else [])], dtype=np.int64)
        firsts = firsts[(firsts >= 0) & (firsts < ret.size)]
        ret[firsts] = np.where(np.isfinite(ret[firsts]), ret[firsts], 0.0)
        if not np.isfinite(ret).all():
            raise ValueError(f"non-finite return at row {int(np.flatnonzero(~np.isfinite(ret))[0])}")
        if not np.isfinite(feats).all():
            bad = np.argwhere(~np.isfinite(feats))[0]
            raise ValueError(f"non-finite feature at row {int(bad[0])}, column {int(bad[1])}")
        if reg.size and (reg.min() < 0 or reg.max() >= N_REGIMES):
            raise ValueError(f"regime_ids must be in 0..{N_REGIMES - 1}, got [{reg.min()}, {reg.max()}]")
        dev = torch.device(device)
        gaps = (
            None if gap_before is None else torch.from_numpy(np.asarray(gap_before).astype(np.int64)).to(dev)
        )
        legs = [None, None]
        if leg_returns is not None and leg_weights is not None:
            lr = np.array(leg_returns, dtype=np.float64)
            lr[firsts] = np.where(np.isfinite(lr[firsts]), lr[firsts], 0.0)
            lw = np.asarray(leg_weights, dtype=np.float64)
            if not (np.isfinite(lr).all() and np.isfinite(lw).all()):
                raise ValueError("leg returns and weights must be finite (past each segment's first row)")
            legs = [torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in (lr, lw)]
        return cls(
            features=torch.from_numpy(np.ascontiguousarray(feats)).to(dev),
            regime_ids=torch.from_numpy(reg.astype(np.int64)).to(dev),
            returns=torch.from_numpy(ret).to(dev),
            prices=torch.from_numpy(np.ascontiguousarray(px)).to(dev),
            gap_before=gaps,
            segment_starts=None if segment_starts is None else tuple(int(s) for s in segment_starts),
            leg_returns=legs[0],
            leg_weights=legs[1],
        )

    @classmethod
    def from_split(
        cls,
        split: Mapping[str, np.ndarray] | SplitArrays,
        device: torch.device | str = "cpu",
        features_key: str = "features_denoised",
    ) -> MarketArrays:
        """From one split of the dataset: a ``datasets.SplitArrays`` or a dict of its arrays.

        Reads ``features_key`` (``features_denoised`` or ``features_raw``; a plain ``features`` key
        also works), ``regime_ids``, ``returns``, ``prices`` and ``gap_before`` when present.
        """
        if isinstance(split, Mapping):
            get, gaps = split.__getitem__, split.get("gap_before")
        else:
            get, gaps = (lambda k: getattr(split, k)), split.gap_before
        return cls.from_numpy(
            get(features_key),
            get("regime_ids"),
            get("returns"),
            get("prices"),
            device=device,
            gap_before=gaps,
        )

    @classmethod
    def concat(cls, markets: Sequence[MarketArrays]) -> MarketArrays:
        """Markets stacked row-wise as independent segments (e.g. a market and its mirror image).

        Each market's own segments and ``gap_before`` are kept (zeros for one without gaps); one
        market is returned as it is. Tensors go to the first market's device.
        """
        if not markets:
            raise ValueError("need at least one market")
        if len(markets) == 1:
            return markets[0]
        if len({m.num_features for m in markets}) != 1:
            raise ValueError("segments must have the same number of features")
        dev, starts, row = markets[0].device, [], 0
        for m in markets:
            starts += [row + lo for lo, _ in m.segments]
            row += m.num_bars
        gaps = None
        if any(m.gap_before is not None for m in markets):
            gaps = torch.cat(
                [
                    torch.zeros(m.num_bars, dtype=torch.long, device=dev)
                    if m.gap_before is None
                    else m.gap_before.to(dev)
                    for m in markets
                ]
            )
        with_legs = {m.leg_returns is not None for m in markets}
        if len(with_legs) != 1:
            raise ValueError("segments must all have legs or none")
        legs = [None, None]
        if with_legs == {True}:
            legs = [
                torch.cat([getattr(m, k).to(dev) for m in markets]) for k in ("leg_returns", "leg_weights")
            ]
        return cls(
            torch.cat([m.features.to(dev) for m in markets]),
            torch.cat([m.regime_ids.to(dev) for m in markets]),
            torch.cat([m.returns.to(dev) for m in markets]),
            torch.cat([m.prices.to(dev) for m in markets]),
            gaps,
            tuple(starts),
            *legs,
        )

    @property
    def replay_series(self) -> tuple:
        """The arrays :func:`himari_pipeline.rl.replay.replay_policies` reads for one series."""
        return (
            self.features,
            self.regime_ids,
            self.returns,
            self.gap_before,
            self.leg_returns,
            self.leg_weights,
        )

    def to(self, device: torch.device | str) -> MarketArrays:
        dev = torch.device(device)
        return MarketArrays(
            self.features.to(dev),
            self.regime_ids.to(dev),
            self.returns.to(dev),
            self.prices.to(dev),
            None if self.gap_before is None else self.gap_before.to(dev),
            self.segment_starts,
            None if self.leg_returns is None else self.leg_returns.to(dev),
            None if self.leg_weights is None else self.leg_weights.to(dev),
        )


@dataclass
class Obs:
    """What the policy receives; it builds ``features[t-context+1 : t+1]`` itself.

    ``position_state[:, 0]`` = position / leverage (-1, 0, 1); ``[:, 1]`` = log1p(bars held) /
    :data:`BARS_HELD_SCALE`; ``[:, 2]`` = unrealized PnL of the open position (equity / equity at
    the entry decision - 1, entry cost included; 0 when flat).
    """

    t: Tensor  # (N,) long
    position_state: Tensor  # (N, 3) float32
    regime: Tensor  # (N,) long, regime_ids[t]


class VecTradingEnv:
    """``num_envs`` independent episodes over one :class:`MarketArrays`, stepped as a batch.

    ``step(actions)`` returns ``(obs, reward, done, info)``; done envs are already reset in ``obs``
    and their pre-reset observation is ``info["final_obs"]``. ``info`` holds (N,) tensors
    ``pnl, transaction_cost, carry_cost, borrow_cost, cost, equity`` (after the step, before reset),
    ``position``, ``blocked``, ``terminated`` (ruin), ``truncated`` (episode length or end of
    segment), ``episode_return`` (final equity - 1, clamped at -1; NaN where not done),
    ``episode_length`` (0 where not done) and the scalar tensor ``blocked_share`` (share of envs
    whose action was masked this step). ``blocked_total`` / ``steps_total`` count since construction.
    """

    def __init__(
        self,
        market: MarketArrays,
        cfg: EnvConfig,
        num_envs: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1")
        self.device = torch.device(device)
        self.market = market if market.device == self.device else market.to(self.device)
        self.cfg = cfg
        self.rules = cfg.rules
        self.num_envs = int(num_envs)
        self._init_rows(cfg)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(seed))
        self.reward_fn = make_reward(cfg.reward, self.num_envs, self.device, **cfg.reward_kwargs)
        lev = float(cfg.leverage)
        self._pos_of_action = torch.tensor([0.0, lev, -lev], dtype=torch.float64, device=self.device)
        gaps = self.market.gap_before
        self._span = None if gaps is None or not bool(gaps.any()) else 1.0 + gaps.double()
        self._fixed_start: Tensor | None = None
        self.blocked_total = torch.zeros((), dtype=torch.long, device=self.device)
        self.steps_total = 0
        n, dev = self.num_envs, self.device
        self.t = torch.full((n,), self.t_lo, dtype=torch.long, device=dev)
        self.action = torch.zeros(n, dtype=torch.long, device=dev)
        self.position = torch.zeros(n, dtype=torch.float64, device=dev)
        self.held = torch.zeros(n, dtype=torch.long, device=dev)
        self.after_close = torch.zeros(n, dtype=torch.bool, device=dev)
        self.equity = torch.ones(n, dtype=torch.float64, device=dev)
        self.entry_equity = torch.ones(n, dtype=torch.float64, device=dev)
        self.steps = torch.zeros(n, dtype=torch.long, device=dev)

    def _init_rows(self, cfg: EnvConfig) -> None:
        """Decision rows per segment: ``start + context - 1 .. end - 2`` (``returns[t+1]`` must exist
        in the segment); episode starts leave room for ``episode_length`` decisions."""
        n_bars = self.market.num_bars
        self.max_steps = cfg.episode_length if cfg.episode_length is not None else n_bars
        room = 0 if cfg.episode_length is None else cfg.episode_length - 1
        starts, last_row = [], torch.empty(n_bars, dtype=torch.long)
        for lo, hi in self.market.segments:
            if hi - 2 < lo + cfg.context - 1:
                raise ValueError(f"a segment of {hi - lo} bars is too short for context {cfg.context}")
            last_row[lo:hi] = hi - 2
            if hi - 2 - room >= lo + cfg.context - 1:
                starts.append(torch.arange(lo + cfg.context - 1, hi - 1 - room))
        if not starts:
            raise ValueError(
                f"episode_length {cfg.episode_length} + context {cfg.context} needs more than "
                f"{max(hi - lo for lo, hi in self.market.segments)} bars"
            )
        self.t_lo = cfg.context - 1  # first decision row of the first segment
        self.t_hi = n_bars - 2  # last decision row of the last segment
        self._decision_row = torch.zeros(n_bars, dtype=torch.bool)
        for lo, hi in self.market.segments:
            self._decision_row[lo + cfg.context - 1 : hi - 1] = True
        if len(self.market.segments) == 1:
            self._start_rows = None  # one contiguous range: t_lo .. start_hi
            self._last_row = None
            self.start_hi = int(starts[0][-1])
        else:
            self._start_rows = torch.cat(starts).to(self.device)
            self._last_row = last_row.to(self.device)
            self.start_hi = int(self._start_rows[-1])

    # ------------------------------------------------------------------ reset / observation
    def seed(self, seed: int) -> None:
        self.gen.manual_seed(int(seed))

    def _starts(self) -> Tensor:
        if self._fixed_start is not None:
            return self._fixed_start
        if self._start_rows is None:
            return torch.randint(
                self.t_lo, self.start_hi + 1, (self.num_envs,), generator=self.gen, device=self.device
            )
        pick = torch.randint(
            0, len(self._start_rows), (self.num_envs,), generator=self.gen, device=self.device
        )
        return self._start_rows[pick]

    def reset(self, start: int | Tensor | None = None, seed: int | None = None) -> Obs:
        """Reset every env. ``start`` (int or (N,) tensor) pins the first decision row for evaluation;
        later auto-resets then return to that same row until ``reset()`` is called without it."""
        if seed is not None:
            self.seed(seed)
        if start is None:
            self._fixed_start = None
        else:
            s = torch.as_tensor(start, dtype=torch.long, device=self.device).expand(self.num_envs).clone()
            if bool(((s < self.t_lo) | (s > self.t_hi)).any()) or not bool(self._decision_row[s.cpu()].all()):
                raise ValueError(
                    f"start must be a decision row in [{self.t_lo}, {self.t_hi}] "
                    "(context - 1 .. T - 2 of a segment)"
                )
            self._fixed_start = s
        self.t = self._starts().clone()
        self.action.zero_()
        self.position.zero_()
        self.held.zero_()
        self.after_close.zero_()
        self.equity.fill_(1.0)
        self.entry_equity.fill_(1.0)
        self.steps.zero_()
        self.reward_fn.reset(None)
        return self._obs(self.t, self.action, self.held, self.equity, self.entry_equity)

    def _obs(self, t: Tensor, action: Tensor, held: Tensor, equity: Tensor, entry: Tensor) -> Obs:
        direction = (action == LONG).float() - (action == SHORT).float()
        upnl = torch.where(action != FLAT, equity / entry - 1.0, 0.0).float()
        bars = torch.log1p(held.float()) / BARS_HELD_SCALE
        return Obs(
            t=t, position_state=torch.stack((direction, bars, upnl), dim=1), regime=self.market.regime_ids[t]
        )

    def observe(self) -> Obs:
        return self._obs(self.t, self.action, self.held, self.equity, self.entry_equity)

    # ------------------------------------------------------------------ state (checkpoint / resume)
    _STATE = ("t", "action", "position", "held", "after_close", "equity", "entry_equity", "steps")

    def state_dict(self) -> dict:
        """Everything needed to resume mid-episode exactly: tensors, the RNG state and plain ints."""
        state: dict = {k: getattr(self, k).clone() for k in self._STATE}
        state["blocked_total"] = self.blocked_total.clone()
        state["steps_total"] = int(self.steps_total)
        state["generator"] = self.gen.get_state()
        state["fixed_start_set"] = self._fixed_start is not None
        if self._fixed_start is not None:
            state["fixed_start"] = self._fixed_start.clone()
        state.update({f"reward.{k}": v for k, v in self.reward_fn.state_dict().items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict` (tensors are moved to this env's device)."""
        for k in self._STATE:
            old = getattr(self, k)
            if tuple(state[k].shape) != tuple(old.shape):
                raise ValueError(f"state {k!r} has shape {tuple(state[k].shape)}, env has {tuple(old.shape)}")
            setattr(self, k, state[k].to(self.device, old.dtype).clone())
        self.blocked_total = state["blocked_total"].to(self.device).clone()
        self.steps_total = int(state["steps_total"])
        self.gen.set_state(state["generator"].cpu())
        fixed = state.get("fixed_start") if state.get("fixed_start_set") else None
        self._fixed_start = None if fixed is None else fixed.to(self.device, torch.long).clone()
        self.reward_fn.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("reward.")})

    # ------------------------------------------------------------------ masks
    def action_mask(self) -> Tensor:
        """(N, 3) bool, True = allowed. The current action is always allowed (keeping is free)."""
        allowed = torch.ones(self.num_envs, NUM_ACTIONS, dtype=torch.bool, device=self.device)
        if not self.rules.holds_on:
            return allowed
        restricted = hold_restricted(self.rules, self.action, self.held, self.after_close)
        keep = torch.arange(NUM_ACTIONS, device=self.device)[None, :] == self.action[:, None]
        return allowed & (~restricted[:, None] | keep)

    # ------------------------------------------------------------------ step
    def step(self, actions: Tensor) -> tuple[Obs, Tensor, Tensor, dict]:
        rules = self.rules
        a = torch.as_tensor(actions, device=self.device).long()
        old_a, old_pos, held = self.action, self.position, self.held
        if rules.holds_on:  # on action codes: FLAT is 0, as a flat position is
            blocked = hold_blocked(rules, old_a, a, held, self.after_close)
            a = torch.where(blocked, old_a, a)
        else:
            blocked = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        new_pos = self._pos_of_action[a]
        t_next = self.t + 1
        r_next = self.market.returns[t_next]
        span = None if self._span is None else self._span[t_next]
        if self.market.leg_weights is None:
            out = trade_step(rules, old_pos, new_pos, r_next, self.equity, span)
        else:  # old_pos is 0 at an episode's first step, so row t - 1 of another segment never counts
            w = self.market.leg_weights
            old_legs, new_legs = old_pos[:, None] * w[self.t - 1], new_pos[:, None] * w[self.t]
            out = legs_step(rules, old_legs, new_legs, self.market.leg_returns[t_next], self.equity, span)
        equity = out.equity

        ctx = StepContext(
            position=old_pos,
            new_position=new_pos,
            r_next=r_next,
            pnl=out.pnl,
            costs=out.cost,
            transaction_cost=out.transaction_cost,
            carry_cost=out.carry_cost,
            borrow_cost=out.borrow_cost,
            regime=self.market.regime_ids[self.t],
            bars_held=held,
            after_close=self.after_close,
            leverage=rules.leverage,
        )
        reward = self.reward_fn(ctx)

        new_held, after_close = advance_hold(old_a, a, held, self.after_close)
        entry = torch.where(a != old_a, self.equity, self.entry_equity)
        steps = self.steps + 1
        terminated = out.ruined
        last = self.t_hi if self._last_row is None else self._last_row[self.t]
        truncated = ((steps >= self.max_steps) | (t_next > last)) & ~terminated
        done = terminated | truncated
        final_obs = self._obs(t_next, a, new_held, equity, entry)

        # auto-reset
        self.t = torch.where(done, self._starts(), t_next)
        self.action = torch.where(done, FLAT, a)
        self.position = torch.where(done, 0.0, new_pos)
        self.held = torch.where(done, 0, new_held)
        self.after_close = after_close & ~done
        self.equity = torch.where(done, 1.0, equity)
        self.entry_equity = torch.where(done, 1.0, entry)
        self.steps = torch.where(done, 0, steps)
        self.reward_fn.reset(done)
        self.blocked_total += blocked.sum()
        self.steps_total += self.num_envs

        info = {
            "pnl": out.pnl,
            "transaction_cost": out.transaction_cost,
            "carry_cost": out.carry_cost,
            "borrow_cost": out.borrow_cost,
            "cost": out.cost,
            "equity": equity,
            "position": new_pos,
            "blocked": blocked,
            "blocked_share": blocked.float().mean(),
            "terminated": terminated,
            "truncated": truncated,
            "episode_return": torch.where(done, equity.clamp(min=0.0) - 1.0, math.nan),
            "episode_length": torch.where(done, steps, 0),
            "final_obs": final_obs,
        }
        return self.observe(), reward, done, info
