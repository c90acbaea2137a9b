"""Vectorized long/flat/short trading environment in torch (no Python loop over envs).

Causality (DESIGN.md): the agent stands at bar ``t``'s close (``Obs.t``) and may look at rows
``<= t`` only. The action chosen there sets the position held during bar ``t+1``; it earns
``position * returns[t+1]`` with ``returns[i] = close[i]/close[i-1] - 1``. Costs are fractions of
equity charged at the decision: ``transaction_cost * |new_pos - old_pos|``, ``carry_cost * |new_pos|``
per bar in a position and ``borrow_rate_annual / bars_per_year * |new_pos|`` per bar short. Equity
compounds: ``equity *= 1 + new_pos * returns[t+1] - costs``; ``equity <= ruin_equity`` ends the
episode (terminated). Envs auto-reset when done.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from himari_pipeline.rl.rewards import REWARDS, StepContext, make_reward
from himari_pipeline.vocabulary import FLAT, LONG, N_REGIMES, NUM_ACTIONS, SHORT

__all__ = ["FLAT", "LONG", "SHORT", "BARS_HELD_SCALE", "EnvConfig", "MarketArrays", "Obs", "VecTradingEnv"]

BARS_HELD_SCALE = math.log1p(100.0)
"""``position_state[:, 1] = log1p(bars_held) / BARS_HELD_SCALE`` (1.0 after 100 bars)."""


@dataclass
class MarketArrays:
    """One split of the dataset as tensors on one device (shared by all envs and by the policy)."""

    features: Tensor  # (T, F) float32
    regime_ids: Tensor  # (T,) int64 in 0..3
    returns: Tensor  # (T,) float64, returns[i] = close[i]/close[i-1] - 1
    prices: Tensor  # (T,) float64

    def __post_init__(self) -> None:
        t = self.returns.shape[0]
        if self.features.ndim != 2 or self.features.shape[0] != t:
            raise ValueError(f"features must be (T, F) with T={t}, got {tuple(self.features.shape)}")
        for name in ("regime_ids", "prices"):
            if getattr(self, name).shape != (t,):
                raise ValueError(f"{name} must have shape ({t},), got {tuple(getattr(self, name).shape)}")
        if t < 2:
            raise ValueError("need at least 2 bars")

    @property
    def num_bars(self) -> int:
        return int(self.returns.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def device(self) -> torch.device:
        return self.features.device

    @classmethod
    def from_numpy(
        cls,
        features: np.ndarray,
        regime_ids: np.ndarray,
        returns: np.ndarray,
        prices: np.ndarray,
        device: torch.device | str = "cpu",
    ) -> MarketArrays:
        """Validate numpy arrays and move them to ``device``.

        ``returns[0]`` may be NaN (no previous close; never earned by any decision). Any other
        non-finite return or feature, or a regime outside 0..3, raises ``ValueError``.
        """
        feats = np.asarray(features, dtype=np.float32)
        reg = np.asarray(regime_ids)
        ret = np.asarray(returns, dtype=np.float64).copy()
        px = np.asarray(prices, dtype=np.float64)
        if ret.ndim != 1:
            raise ValueError(f"returns must be 1-D, got shape {ret.shape}")
        if ret.size and not np.isfinite(ret[0]):
            ret[0] = 0.0
        if not np.isfinite(ret).all():
            raise ValueError(f"non-finite return at row {int(np.flatnonzero(~np.isfinite(ret))[0])}")
        if not np.isfinite(feats).all():
            bad = np.argwhere(~np.isfinite(feats))[0]
            raise ValueError(f"non-finite feature at row {int(bad[0])}, column {int(bad[1])}")
        if reg.size and (reg.min() < 0 or reg.max() >= N_REGIMES):
            raise ValueError(f"regime_ids must be in 0..{N_REGIMES - 1}, got [{reg.min()}, {reg.max()}]")
        dev = torch.device(device)
        return cls(
            features=torch.from_numpy(np.ascontiguousarray(feats)).to(dev),
            regime_ids=torch.from_numpy(reg.astype(np.int64)).to(dev),
            returns=torch.from_numpy(ret).to(dev),
            prices=torch.from_numpy(np.ascontiguousarray(px)).to(dev),
        )

    @classmethod
    def from_split(
        cls,
        split: Mapping[str, np.ndarray] | object,
        device: torch.device | str = "cpu",
        features_key: str = "features_denoised",
    ) -> MarketArrays:
        """From one split of the dataset: a ``datasets.SplitArrays`` or a dict of its arrays.

        Reads ``features_key`` (``features_denoised`` or ``features_raw``; a plain ``features`` key
        also works), ``regime_ids``, ``returns`` and ``prices``.
        """
        get = split.__getitem__ if isinstance(split, Mapping) else lambda k: getattr(split, k)
        return cls.from_numpy(
            get(features_key), get("regime_ids"), get("returns"), get("prices"), device=device
        )

    def to(self, device: torch.device | str) -> MarketArrays:
        dev = torch.device(device)
        return MarketArrays(
            self.features.to(dev), self.regime_ids.to(dev), self.returns.to(dev), self.prices.to(dev)
        )


@dataclass
class EnvConfig:
    """Trading rules and reward choice. Costs are fractions of equity (0.0015 = 0.15 %)."""

    transaction_cost: float = 0.0015  # per unit of |position change|
    carry_cost: float = 0.0  # per bar, per unit of |position| held
    borrow_rate_annual: float = 0.0  # shorts, per year, per unit of |short position|
    bars_per_year: float = 8760.0  # 24/7 hourly bars; 105_120 for 5-minute crypto bars
    leverage: float = 1.0  # |position| of LONG and SHORT
    max_leverage: float = 5.0
    min_hold: int = 0  # bars a position must be held before it may change (0 = off)
    cooldown: int = 0  # bars flat after a close before a new position may open (0 = off)
    episode_length: int | None = 1024  # decisions per episode; None = to the end of the data
    context: int = 1  # feature window length: decisions start at t >= context - 1
    reward: str = "pnl"
    reward_kwargs: dict = field(default_factory=dict)
    ruin_equity: float = 0.0  # equity <= this ends the episode

    def __post_init__(self) -> None:
        for name in ("transaction_cost", "carry_cost", "borrow_rate_annual"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if not self.bars_per_year > 0:
            raise ValueError(f"bars_per_year must be > 0, got {self.bars_per_year}")
        if not 0 < self.max_leverage < math.inf:
            raise ValueError(f"max_leverage must be finite and > 0, got {self.max_leverage}")
        if not 0 < self.leverage <= self.max_leverage:
            raise ValueError(
                f"leverage must be in (0, max_leverage={self.max_leverage}], got {self.leverage}"
            )
        if self.min_hold < 0 or self.cooldown < 0:
            raise ValueError("min_hold and cooldown must be >= 0")
        if self.episode_length is not None and self.episode_length < 1:
            raise ValueError(f"episode_length must be >= 1 or None, got {self.episode_length}")
        if self.context < 1:
            raise ValueError(f"context must be >= 1, got {self.context}")
        if self.reward not in REWARDS:
            raise ValueError(f"unknown reward {self.reward!r}; choose one of {sorted(REWARDS)}")
        if self.ruin_equity < 0:
            raise ValueError(f"ruin_equity must be >= 0, got {self.ruin_equity}")

    @property
    def borrow_per_bar(self) -> float:
        return self.borrow_rate_annual / self.bars_per_year


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
    data), ``episode_return`` (final equity - 1, clamped at -1; NaN where not done),
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
        self.num_envs = int(num_envs)
        n_bars = self.market.num_bars
        self.t_lo = cfg.context - 1
        self.t_hi = n_bars - 2  # last decision row: returns[t+1] must exist
        if self.t_hi < self.t_lo:
            raise ValueError(f"{n_bars} bars are too few for context {cfg.context}")
        self.max_steps = cfg.episode_length if cfg.episode_length is not None else n_bars
        self.start_hi = self.t_hi if cfg.episode_length is None else self.t_hi - cfg.episode_length + 1
        if self.start_hi < self.t_lo:
            raise ValueError(
                f"episode_length {cfg.episode_length} + context {cfg.context} needs more than {n_bars} bars"
            )
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(seed))
        self.reward_fn = make_reward(cfg.reward, self.num_envs, self.device, **cfg.reward_kwargs)
        lev = float(cfg.leverage)
        self._pos_of_action = torch.tensor([0.0, lev, -lev], dtype=torch.float64, device=self.device)
        self._masks_on = cfg.min_hold > 0 or cfg.cooldown > 0
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

    # ------------------------------------------------------------------ reset / observation
    def seed(self, seed: int) -> None:
        self.gen.manual_seed(int(seed))

    def _starts(self) -> Tensor:
        if self._fixed_start is not None:
            return self._fixed_start
        return torch.randint(
            self.t_lo, self.start_hi + 1, (self.num_envs,), generator=self.gen, device=self.device
        )

    def reset(self, start: int | Tensor | None = None, seed: int | None = None) -> Obs:
        """Reset every env. ``start`` (int or (N,) tensor) pins the first decision row for evaluation;
        later auto-resets then return to that same row until ``reset()`` is called without it."""
        if seed is not None:
            self.seed(seed)
        if start is None:
            self._fixed_start = None
        else:
            s = torch.as_tensor(start, dtype=torch.long, device=self.device).expand(self.num_envs).clone()
            if bool(((s < self.t_lo) | (s > self.t_hi)).any()):
                raise ValueError(f"start must be in [{self.t_lo}, {self.t_hi}] (context - 1 .. T - 2)")
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
    def _restricted(self) -> Tensor:
        """(N,) True where only the current action is allowed (min hold or cooldown running)."""
        cfg = self.cfg
        in_pos = self.action != FLAT
        return (in_pos & (self.held < cfg.min_hold)) | (
            ~in_pos & self.after_close & (self.held < cfg.cooldown)
        )

    def action_mask(self) -> Tensor:
        """(N, 3) bool, True = allowed. The current action is always allowed (keeping is free)."""
        allowed = torch.ones(self.num_envs, NUM_ACTIONS, dtype=torch.bool, device=self.device)
        if not self._masks_on:
            return allowed
        keep = torch.arange(NUM_ACTIONS, device=self.device)[None, :] == self.action[:, None]
        return allowed & (~self._restricted()[:, None] | keep)

    # ------------------------------------------------------------------ step
    def step(self, actions: Tensor) -> tuple[Obs, Tensor, Tensor, dict]:
        cfg = self.cfg
        a = torch.as_tensor(actions, device=self.device).long()
        old_a, old_pos, held = self.action, self.position, self.held
        if self._masks_on:
            blocked = self._restricted() & (a != old_a)
            a = torch.where(blocked, old_a, a)
        else:
            blocked = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        new_pos = self._pos_of_action[a]
        abs_new = new_pos.abs()
        tx = cfg.transaction_cost * (new_pos - old_pos).abs()
        carry = cfg.carry_cost * abs_new
        borrow = cfg.borrow_per_bar * (-new_pos).clamp(min=0.0)
        costs = tx + carry + borrow
        t_next = self.t + 1
        r_next = self.market.returns[t_next]
        pnl = new_pos * r_next
        equity = self.equity * (1.0 + pnl - costs)

        ctx = StepContext(
            position=old_pos,
            new_position=new_pos,
            r_next=r_next,
            pnl=pnl,
            costs=costs,
            transaction_cost=tx,
            carry_cost=carry,
            borrow_cost=borrow,
            regime=self.market.regime_ids[self.t],
            bars_held=held,
            after_close=self.after_close,
            leverage=cfg.leverage,
        )
        reward = self.reward_fn(ctx)

        changed = a != old_a
        new_held = torch.where(changed, 1, held + 1)
        after_close = torch.where(changed, a == FLAT, self.after_close)
        entry = torch.where(changed, self.equity, self.entry_equity)
        steps = self.steps + 1
        terminated = equity <= cfg.ruin_equity
        truncated = ((steps >= self.max_steps) | (t_next >= self.t_hi + 1)) & ~terminated
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
            "pnl": pnl,
            "transaction_cost": tx,
            "carry_cost": carry,
            "borrow_cost": borrow,
            "cost": costs,
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
