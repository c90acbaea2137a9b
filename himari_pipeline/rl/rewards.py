"""Batched reward functions for :class:`~himari_pipeline.rl.env.VecTradingEnv`, selectable by name.

Kept whole: one registry of small, independent reward classes on one :class:`StepContext`; each is
read alone and the registry lists them all.

Every reward sees one :class:`StepContext` per env step: tensors of shape ``(num_envs,)`` describing
the decision taken at bar ``t``'s close and its outcome over bar ``t+1``. All money quantities are
fractions of equity (``0.001`` = 0.1 %). Unless stated otherwise a reward is multiplied by
``scale`` (default 100, i.e. rewards in percent of equity) so a PPO value head sees O(1) numbers.

Stateful rewards (trailing windows) keep per-env ring buffers; the env calls ``reset(done)`` after
each step so a finished episode's history never leaks into the next one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from himari_pipeline.rl.configs import REWARD_NAMES
from himari_pipeline.vocabulary import CRISIS, HIGH_VOL, REWARD_MAX_ABS, REWARD_MAX_VALUE_LOSS, TRENDING

__all__ = [
    "REWARDS",
    "REWARD_MAX_ABS_MEAN",
    "REWARD_MAX_STD",
    "AdaptiveRegimeReward",
    "AntiOvertradingReward",
    "BalanceReward",
    "CarryReward",
    "DemeanedPnLReward",
    "PnLReward",
    "RewardFn",
    "RewardScaleError",
    "SortinoReward",
    "StepContext",
    "make_reward",
    "reward_scale_diagnostic",
    "training_log_scale_problems",
]


@dataclass
class StepContext:
    """What a reward may look at for one step (all tensors ``(num_envs,)`` on the env's device).

    ``position`` is held during bar ``t`` (before the decision), ``new_position`` during bar ``t+1``
    (after it, masks applied). ``r_next = returns[t+1]``; ``pnl = new_position * r_next``;
    ``costs = transaction_cost + carry_cost + borrow_cost`` as charged to equity at ``t``.
    ``regime`` is the label of bar ``t`` (known at the decision). ``bars_held`` is how many bars the
    pre-decision state (position or flatness) had lasted; ``after_close`` is True while flat after
    having closed a position in this episode (the cooldown clock is ``bars_held``).
    """

    position: Tensor
    new_position: Tensor
    r_next: Tensor
    pnl: Tensor
    costs: Tensor
    transaction_cost: Tensor
    carry_cost: Tensor
    borrow_cost: Tensor
    regime: Tensor
    bars_held: Tensor
    after_close: Tensor
    leverage: float = 1.0


class RewardFn:
    """Base class: ``__call__(ctx) -> (num_envs,) float32`` and ``reset(done)`` for stateful ones."""

    name = "base"

    def __init__(self, num_envs: int, device: torch.device | str = "cpu", scale: float = 100.0) -> None:
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.scale = float(scale)

    def reset(self, done: Tensor | None = None) -> None:  # noqa: B027 - stateless by default
        """Forget per-env history where ``done`` (all envs when None)."""

    def __call__(self, ctx: StepContext) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Per-env history as tensors and ints (empty for stateless rewards)."""
        return {f"{k}.{n}": v for k, w in self._windows().items() for n, v in w.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        for k, w in self._windows().items():
            w.load_state_dict({n.split(".", 1)[1]: v for n, v in state.items() if n.split(".", 1)[0] == k})

    def _windows(self) -> dict[str, _Window]:
        return {k: v for k, v in vars(self).items() if isinstance(v, _Window)}


class _Window:
    """Per-env trailing window of the last ``size`` values of the current episode, with a running sum.

    One global ring index serves all envs; an env's ``count`` says how many of its ring slots belong
    to its current episode, so a reset only clears ``total`` and ``count`` (no buffer rewrite): the
    value leaving the ring is subtracted only when the window is full of this episode's values.
    """

    def __init__(self, num_envs: int, size: int, device: torch.device) -> None:
        if size < 1:
            raise ValueError(f"window must be >= 1, got {size}")
        self.size = size
        self.buf = torch.zeros(num_envs, size, dtype=torch.float64, device=device)
        self.total = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.count = torch.zeros(num_envs, dtype=torch.long, device=device)
        self.idx = 0

    def push(self, x: Tensor) -> None:
        x = x.to(torch.float64)
        leaving = torch.where(self.count >= self.size, self.buf[:, self.idx], 0.0)
        self.total += x - leaving
        self.buf[:, self.idx] = x
        self.idx = (self.idx + 1) % self.size
        self.count = (self.count + 1).clamp_(max=self.size)

    def state_dict(self) -> dict:
        return {
            "buf": self.buf.clone(),
            "total": self.total.clone(),
            "count": self.count.clone(),
            "idx": self.idx,
        }

    def load_state_dict(self, state: dict) -> None:
        dev = self.buf.device
        self.buf = state["buf"].to(dev, torch.float64).clone()
        self.total = state["total"].to(dev, torch.float64).clone()
        self.count = state["count"].to(dev, torch.long).clone()
        self.idx = int(state["idx"])

    def reset(self, done: Tensor | None) -> None:
        if done is None:
            self.total.zero_()
            self.count.zero_()
            return
        self.total = torch.where(done, 0.0, self.total)
        self.count = torch.where(done, 0, self.count)


class PnLReward(RewardFn):
    """``reward = scale * (new_position * r[t+1] - costs)``: the net one-bar return of the decision."""

    name = "pnl"

    def __call__(self, ctx: StepContext) -> Tensor:
        return (self.scale * (ctx.pnl - ctx.costs)).float()


class DemeanedPnLReward(RewardFn):
    """``reward = scale * (new_position * (r[t+1] - drift) - costs)``: net PnL with the drift taken out.

    ``drift`` is a per-bar return fixed before training: training sets it to the mean per-bar return
    of the training segment (known before the first decision, so nothing later leaks in) unless the
    experiment gives a number. Holding a position through a market that only drifts then earns
    nothing on average, so the policy is paid for timing, not for the training years' net exposure.
    This is a training reward only: validation, the report and the gate score plain net returns.
    """

    name = "demeaned_pnl"

    def __init__(
        self, num_envs: int, device: torch.device | str = "cpu", scale: float = 100.0, drift: float = 0.0
    ) -> None:
        super().__init__(num_envs, device, scale)
        if not math.isfinite(float(drift)):
            raise ValueError(f"drift must be finite, got {drift}")
        self.drift = float(drift)

    def __call__(self, ctx: StepContext) -> Tensor:
        return (self.scale * (ctx.new_position * (ctx.r_next - self.drift) - ctx.costs)).float()


class SortinoReward(RewardFn):
    """Net PnL penalised by the trailing downside deviation of net PnL.

    With ``x_t = pnl_t - costs_t`` and the window holding the last ``window`` values of ``x`` in the
    episode (current one included, missing ones counted as 0):
    ``DD_t = sqrt(sum_k min(x_{t-k}, 0)^2 / window)`` and
    ``reward = scale * (x_t - downside_coef * DD_t)``.
    """

    name = "sortino"

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str = "cpu",
        scale: float = 100.0,
        window: int = 50,
        downside_coef: float = 0.5,
    ) -> None:
        super().__init__(num_envs, device, scale)
        self.downside_coef = float(downside_coef)
        self.sq = _Window(num_envs, int(window), self.device)

    def reset(self, done: Tensor | None = None) -> None:
        self.sq.reset(done)

    def __call__(self, ctx: StepContext) -> Tensor:
        x = ctx.pnl - ctx.costs
        self.sq.push(x.clamp(max=0.0).square())
        dd = (self.sq.total.clamp(min=0.0) / self.sq.size).sqrt()
        return (self.scale * (x - self.downside_coef * dd)).float()


class CarryReward(RewardFn):
    """Net PnL minus a reward-only carry on exposure (typically 0.00002-0.0001 per bar).

    ``reward = scale * (pnl - costs - carry_coef * |new_position|)``. This shapes the reward only;
    a carry that really costs money is ``EnvConfig.carry_cost`` and is already inside ``costs``.
    """

    name = "carry"

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str = "cpu",
        scale: float = 100.0,
        carry_coef: float = 5e-5,
    ) -> None:
        super().__init__(num_envs, device, scale)
        self.carry_coef = float(carry_coef)

    def __call__(self, ctx: StepContext) -> Tensor:
        return (self.scale * (ctx.pnl - ctx.costs - self.carry_coef * ctx.new_position.abs())).float()


class AntiOvertradingReward(RewardFn):
    """Net PnL with cooldown / min-hold penalties and a persistence bonus.

    ``reward = scale * (pnl - costs - cooldown_penalty * reopen - min_hold_penalty * early_exit
    + persistence_bonus * persist)`` where
    ``reopen = after_close & position == 0 & new_position != 0 & bars_held < cooldown_bars``,
    ``early_exit = position != 0 & new_position != position & bars_held < min_hold_bars``,
    ``persist = new_position == position & new_position != 0`` (only for holding an exposure: a
    guaranteed bonus for sitting flat collapses a policy to FLAT).
    Defaults: 4 bars / 0.0002, 2 bars / 0.0001, 0.00005 per bar.
    """

    name = "anti_overtrading"

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str = "cpu",
        scale: float = 100.0,
        cooldown_bars: int = 4,
        cooldown_penalty: float = 2e-4,
        min_hold_bars: int = 2,
        min_hold_penalty: float = 1e-4,
        persistence_bonus: float = 5e-5,
    ) -> None:
        super().__init__(num_envs, device, scale)
        self.cooldown_bars = int(cooldown_bars)
        self.cooldown_penalty = float(cooldown_penalty)
        self.min_hold_bars = int(min_hold_bars)
        self.min_hold_penalty = float(min_hold_penalty)
        self.persistence_bonus = float(persistence_bonus)

    def __call__(self, ctx: StepContext) -> Tensor:
        flat_before = ctx.position == 0
        reopen = (
            ctx.after_close & flat_before & (ctx.new_position != 0) & (ctx.bars_held < self.cooldown_bars)
        )
        changed = ctx.new_position != ctx.position
        early_exit = ~flat_before & changed & (ctx.bars_held < self.min_hold_bars)
        persist = ~changed & (ctx.new_position != 0)
        r = (
            ctx.pnl
            - ctx.costs
            - self.cooldown_penalty * reopen.double()
            - self.min_hold_penalty * early_exit.double()
            + self.persistence_bonus * persist.double()
        )
        return (self.scale * r).float()


class BalanceReward(RewardFn):
    """Net PnL minus a penalty for deviating from a target share of SHORT bars.

    ``share_t`` = fraction of the last ``min(n, window)`` decisions of the episode (current one
    included) with ``new_position < 0``;
    ``reward = scale * (pnl - costs - balance_penalty * |share_t - target_short|)``.
    Defaults: target 0.20, penalty 0.0003, window 100.
    """

    name = "balance"

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str = "cpu",
        scale: float = 100.0,
        target_short: float = 0.20,
        balance_penalty: float = 3e-4,
        window: int = 100,
    ) -> None:
        super().__init__(num_envs, device, scale)
        if not 0.0 <= target_short <= 1.0:
            raise ValueError(f"target_short must be in [0, 1], got {target_short}")
        self.target_short = float(target_short)
        self.balance_penalty = float(balance_penalty)
        self.shorts = _Window(num_envs, int(window), self.device)

    def reset(self, done: Tensor | None = None) -> None:
        self.shorts.reset(done)

    def __call__(self, ctx: StepContext) -> Tensor:
        self.shorts.push((ctx.new_position < 0).double())
        share = self.shorts.total / self.shorts.count.clamp(min=1)
        r = ctx.pnl - ctx.costs - self.balance_penalty * (share - self.target_short).abs()
        return (self.scale * r).float()


class AdaptiveRegimeReward(RewardFn):
    """Variance-normalised, regime-dependent reward, batch statistics over envs.

    With ``d = sign(new_position)`` (the direction), over the batch of envs:
    ``vol = sqrt(mean(r_next^2)) + eps`` (root mean square: a plain std is 0 when every env sits on
    the same bar), ``z = r_next / vol``, ``E = mean(|z|)``.
    ``trade = d != 0``, ``hold = d == 0``, ``wrong = d * r_next < 0``, and
    ``reward = d*z - E * (trade * (base + highvol*[HIGH_VOL] + crisis*[CRISIS] - trending_bonus*[TRENDING])
    + hold_trending*hold*[TRENDING] + wrong_coef*wrong) - env_cost_coef * costs / vol``
    with session 18's fractions base 0.40, highvol 0.40, crisis 0.60, trending_bonus 0.40,
    hold_trending 1.00, wrong_coef 0.50. The last term (not in session 18) keeps the env's real
    transaction/carry/borrow costs in the reward, in the same volatility units. ``scale`` (default
    1: already O(1)) multiplies the whole. Needs many envs: with one env ``|z| = 1`` always.
    """

    name = "adaptive_regime"

    def __init__(
        self,
        num_envs: int,
        device: torch.device | str = "cpu",
        scale: float = 1.0,
        base: float = 0.40,
        highvol: float = 0.40,
        crisis: float = 0.60,
        trending_bonus: float = 0.40,
        hold_trending: float = 1.00,
        wrong_coef: float = 0.50,
        env_cost_coef: float = 1.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(num_envs, device, scale)
        self.base, self.highvol, self.crisis = float(base), float(highvol), float(crisis)
        self.trending_bonus, self.hold_trending = float(trending_bonus), float(hold_trending)
        self.wrong_coef, self.env_cost_coef, self.eps = float(wrong_coef), float(env_cost_coef), float(eps)

    def __call__(self, ctx: StepContext) -> Tensor:
        r = ctx.r_next.double()
        vol = r.square().mean().sqrt() + self.eps
        z = r / vol
        e_abs = z.abs().mean()
        d = torch.sign(ctx.new_position).double()
        trade = (d != 0).double()
        reg = ctx.regime
        trade_frac = (
            self.base
            + self.highvol * (reg == HIGH_VOL).double()
            + self.crisis * (reg == CRISIS).double()
            - self.trending_bonus * (reg == TRENDING).double()
        )
        hold_frac = self.hold_trending * (reg == TRENDING).double()
        wrong = ((d * r) < 0).double()
        penalty = e_abs * (trade * trade_frac + (1.0 - trade) * hold_frac + self.wrong_coef * wrong)
        out = d * z - penalty - self.env_cost_coef * ctx.costs / vol
        return (self.scale * out).float()


REWARDS: dict[str, type[RewardFn]] = {
    cls.name: cls
    for cls in (
        PnLReward,
        DemeanedPnLReward,
        SortinoReward,
        CarryReward,
        AntiOvertradingReward,
        BalanceReward,
        AdaptiveRegimeReward,
    )
}
if tuple(REWARDS) != REWARD_NAMES:  # configs validate names without importing torch
    raise RuntimeError(f"rl.configs.REWARD_NAMES {REWARD_NAMES} != registered rewards {tuple(REWARDS)}")


def make_reward(name: str, num_envs: int, device: torch.device | str = "cpu", **kwargs: float) -> RewardFn:
    """Instantiate the reward registered as ``name`` (see :data:`REWARDS`)."""
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; choose one of {sorted(REWARDS)}")
    return REWARDS[name](num_envs, device, **kwargs)


REWARD_MAX_ABS_MEAN = 10.0
"""Largest sane |mean| of per-step rewards (rewards are in percent of equity)."""
REWARD_MAX_STD = 100.0
"""Largest sane standard deviation of per-step rewards."""


class RewardScaleError(ValueError):
    """Rewards (or the value loss they cause) are on an absurd scale (rewards of ~1e7 have been seen)."""


def reward_scale_diagnostic(
    rewards: Tensor | object,
    value_loss: float | None = None,
    *,
    max_abs_mean: float = REWARD_MAX_ABS_MEAN,
    max_std: float = REWARD_MAX_STD,
    max_abs: float = REWARD_MAX_ABS,
    max_value_loss: float = REWARD_MAX_VALUE_LOSS,
    min_std: float = 1e-6,
) -> dict:
    """Mean/std/abs-max of a batch of rewards; raise :class:`RewardScaleError` when absurd.

    Raises when any reward is non-finite, ``|mean| > max_abs_mean`` (10), ``std > max_std`` (100),
    ``max|r| > max_abs`` (1e4) or ``value_loss > max_value_loss`` (1e6). A mis-scaled reward has
    produced mean episode rewards of -1.2e7 and value losses of 1.9e13; sane per-step rewards are
    O(0.01-1). A std below ``min_std`` does not raise (a flat policy earns exactly 0) but is flagged
    ``tiny=True``.
    """
    r = torch.as_tensor(rewards).detach().double().flatten().cpu()
    if r.numel() == 0:
        raise RewardScaleError("no rewards to diagnose")
    finite = bool(torch.isfinite(r).all())
    mean = float(r.mean()) if finite else math.nan
    std = float(r.std(unbiased=False)) if finite else math.nan
    abs_max = float(r.abs().max()) if finite else math.inf
    out = {
        "mean": mean,
        "std": std,
        "abs_max": abs_max,
        "n": int(r.numel()),
        "value_loss": None if value_loss is None else float(value_loss),
        "tiny": finite and std < min_std,
    }
    problems = []
    if not finite:
        problems.append(f"{int((~torch.isfinite(r)).sum())} non-finite rewards")
    else:
        if abs(mean) > max_abs_mean:
            problems.append(f"|mean| = {abs(mean):.3g} > {max_abs_mean:g}")
        if std > max_std:
            problems.append(f"std = {std:.3g} > {max_std:g}")
        if abs_max > max_abs:
            problems.append(f"max |reward| = {abs_max:.3g} > {max_abs:g}")
    if value_loss is not None and not (
        math.isfinite(float(value_loss)) and float(value_loss) <= max_value_loss
    ):
        problems.append(f"value loss = {float(value_loss):.3g} > {max_value_loss:g}")
    if problems:
        raise RewardScaleError(
            "reward scale is absurd (" + "; ".join(problems) + "): rescale the reward so per-step values "
            "are O(0.01-1) (rewards of ~1e7 and a value loss of ~1e13 make PPO learn nothing)"
        )
    out["ok"] = True
    return out


def training_log_scale_problems(log: Mapping[str, Sequence[float]]) -> list[str]:
    """What is absurd in a training log's per-iteration scales (empty when sane).

    Reads ``rollout/reward_mean``, ``rollout/reward_std`` and ``losses/value_loss`` when present and
    compares their worst values with :data:`REWARD_MAX_ABS_MEAN`, :data:`REWARD_MAX_STD` and
    ``REWARD_MAX_VALUE_LOSS``; a NaN-only column is a problem too (no comparison holds for NaN).
    """
    problems = []
    if "rollout/reward_mean" in log:
        worst_mean = float(np.nanmax(np.abs(np.asarray(log["rollout/reward_mean"], dtype=float))))
        worst_std = float(np.nanmax(np.asarray(log["rollout/reward_std"], dtype=float)))
        if not worst_mean <= REWARD_MAX_ABS_MEAN:
            problems.append(f"|reward mean| reached {worst_mean:.3g} (> {REWARD_MAX_ABS_MEAN:g})")
        if not worst_std <= REWARD_MAX_STD:
            problems.append(f"reward std reached {worst_std:.3g} (> {REWARD_MAX_STD:g})")
    if "losses/value_loss" in log:
        worst_vl = float(np.nanmax(np.asarray(log["losses/value_loss"], dtype=float)))
        if not worst_vl <= REWARD_MAX_VALUE_LOSS:
            problems.append(f"value loss reached {worst_vl:.3g} (> {REWARD_MAX_VALUE_LOSS:g})")
    return problems
