"""The exit environment (log 002): per open position, learn when and how to get out.

Each episode is one trade entered at an entry bar's close ``e`` (side +1 long, -1 short, filled at
``close[e]``, paying the transaction cost). Decision ``k`` stands at the close of bar ``t = e + k``
and sees bars ``<= t`` only (:func:`exit_observation`; the P&L of bar ``t + 1`` is never visible at
``k``: log 002's v3 look-ahead). Actions:

=============  =========================================================================
HOLD           keep everything
EXIT           close what is left at ``close[t]``
TIGHTEN_SL     move the stop ``tighten_frac`` of the way from where it is to ``close[t]``
TRAIL_BE       move the stop to the entry price (only while the trade is in profit)
PARTIAL_EXIT   close ``partial_frac`` of the position at ``close[t]`` (once)
=============  =========================================================================

Masks (True = allowed), applied to the policy's logits (-inf) in rollout and update: EXIT and
PARTIAL_EXIT blocked before ``min_exit_bar``; PARTIAL_EXIT once; TRAIL_BE only in profit at ``close[t]``
and while the stop is below breakeven. A blocked action the env still receives is replaced by HOLD and
counted (``blocked_rate``; 0 when the policy respects the masks).

After the action the env steps to bar ``t + 1``: the stop and take-profit are checked against its open,
high and low (:mod:`.stops`, the conservative rule: both touched = the stop); otherwise the position is
marked at ``close[t + 1]``; at ``max_hold`` bars (or the data's end) it is closed at the close. Money:
fractions of the entry notional; every fill pays ``transaction_cost`` per unit of traded notional, the
trading rules' cost (:class:`~himari_pipeline.trading.rules.TradingRules`).

Rewards (log 002's terms): the step's change of the trade's marked value (realized + open P&L, costs
included; the entry fill is not the agent's decision, so an episode's rewards sum to the trade's return
plus the entry cost), minus ``time_coef`` per bar held, and at the trade's end minus ``regret_coef`` times the
regret: the best exit in hindsight within ``min_exit_bar .. max_hold`` less what the trade got. The
regret uses future bars: it is a training signal only, never part of an observation. Rewards are
multiplied by ``reward_scale`` (100: percent of the entry notional), so per-step rewards are O(0.1-1)
for PPO's value fit; :func:`~himari_pipeline.rl.rewards.reward_scale_diagnostic` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from himari_pipeline.exits.configs import ExitConfig
from himari_pipeline.exits.stops import NO_FILL, STOP_FILL, TAKE_FILL, resolve_stops

HOLD, EXIT, TIGHTEN_SL, TRAIL_BE, PARTIAL_EXIT = range(5)
EXIT_ACTIONS = ("hold", "exit", "tighten_sl", "trail_be", "partial_exit")
#: why a trade ended: still open, the agent, the stop-loss, the take-profit, time (max hold or data end)
OPEN, BY_AGENT, BY_STOP, BY_TAKE, BY_TIME = range(5)
EXIT_REASONS = ("open", "agent", "stop_loss", "take_profit", "time")


@dataclass
class ExitMarket:
    """Bars (float64 tensors, one device) and the entries: bar index and side (+1 / -1)."""

    open: Tensor
    high: Tensor
    low: Tensor
    close: Tensor
    entry_bar: Tensor  # (E,) long
    entry_side: Tensor  # (E,) float64, +1 or -1

    @classmethod
    def from_numpy(cls, bars, entry_bar, entry_side, device: str = "cpu") -> ExitMarket:
        """``bars``: a mapping or frame with open, high, low, close; entries must leave one bar after."""
        cols = [
            torch.as_tensor(np.asarray(bars[c], dtype=np.float64), device=device)
            for c in ("open", "high", "low", "close")
        ]
        e = torch.as_tensor(np.asarray(entry_bar, dtype=np.int64), device=device)
        side = torch.as_tensor(np.asarray(entry_side, dtype=np.float64), device=device)
        n = len(cols[3])
        if len(e) == 0 or int(e.min()) < 0 or int(e.max()) >= n - 1:
            raise ValueError(f"entries must lie in 0 .. {n - 2} (a bar must follow each entry)")
        if not bool(((side == 1) | (side == -1)).all()):
            raise ValueError("entry sides must be +1 or -1")
        return cls(*cols, e, side)


STATE_NAMES = ("hold_frac", "remaining", "open_pnl", "stop_distance", "take_distance", "stop_at_breakeven",
               "partial_taken")  # fmt: skip


def observation_names(cfg: ExitConfig) -> list[str]:
    """The columns of :func:`exit_observation`: ``ret_lag0`` (the return into bar t) .., the state and
    the trend scores."""
    return (
        [f"ret_lag{i}" for i in range(cfg.window)]
        + list(STATE_NAMES)
        + [f"trend_{w}" for w in cfg.trend_windows]
    )


def market_features(close: Tensor, cfg: ExitConfig) -> Tensor | None:
    """(n_bars, len(trend_windows)) float64: per window w, the mean of the last w simple returns over
    their standard error (bars <= t only; 0 before w bars); None without trend windows."""
    if not cfg.trend_windows:
        return None
    c = close.double()
    r = torch.zeros_like(c)
    r[1:] = c[1:] / c[:-1] - 1.0
    cols = []
    for w in cfg.trend_windows:
        s = r.unfold(0, w, 1)  # (n - w + 1, w): the window ending at bar w - 1 + i
        z = s.mean(1) / s.std(1) * w**0.5
        cols.append(torch.cat((torch.zeros(w - 1, dtype=c.dtype), torch.nan_to_num(z, 0.0, 0.0, 0.0))))
    return torch.stack(cols, dim=1)


def exit_observation(
    close: Tensor,
    t: Tensor,
    side: Tensor,
    entry_price: Tensor,
    k: Tensor,
    remaining: Tensor,
    stop: Tensor,
    take: Tensor,
    cfg: ExitConfig,
    features: Tensor | None = None,
) -> Tensor:
    """(N, ``cfg.n_obs``) float32 from bars ``<= t`` and the trade's state only: the side-adjusted log
    returns of the last ``window`` bars (0 before the data), then ``k / max_hold``, the remaining
    fraction, the open P&L at ``close[t]``, the stop's and the take-profit's distance from ``close[t]``,
    whether the stop is at or past breakeven, whether the partial exit was taken; then, with
    ``features`` (:func:`market_features` of the same bars), the side-adjusted trend scores at t."""
    lags = torch.arange(cfg.window, device=close.device)
    idx = t[:, None] - lags[None, :]
    cur = close[idx.clamp(min=0)]
    prev = close[(idx - 1).clamp(min=0)]
    rets = torch.where(idx >= 1, torch.log(cur / prev), 0.0) * side[:, None]
    px = close[t]
    state = torch.stack(
        (
            k / cfg.max_hold,
            remaining,
            side * (px / entry_price - 1.0),
            side * (px - stop) / px,
            side * (take - px) / px,
            (side * (stop - entry_price) >= 0).double(),
            (remaining < 1).double(),
        ),
        dim=1,
    )
    parts = (rets, state) if features is None else (rets, state, side[:, None] * features[t])
    return torch.cat(parts, dim=1).float()


class VecExitEnv:
    """``num_envs`` trades at once; each reset draws an entry from the market's entries."""

    def __init__(self, market: ExitMarket, cfg: ExitConfig, num_envs: int, seed: int = 0) -> None:
        self.m, self.cfg, self.n = market, cfg, int(num_envs)
        dev = market.close.device
        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(int(seed))
        self.last_bar = len(market.close) - 1
        z = torch.zeros(self.n, dtype=torch.float64, device=dev)
        self.e = torch.zeros(self.n, dtype=torch.long, device=dev)
        self.k = torch.zeros(self.n, dtype=torch.long, device=dev)
        self.side, self.entry, self.stop, self.take = z.clone(), z.clone(), z.clone(), z.clone()
        self.remaining, self.realized, self.value = z.clone(), z.clone(), z.clone()
        self.blocked_total, self.steps_total = 0, 0
        self._best = self._hindsight_best()
        self.features = market_features(market.close, cfg)
        self.reset()

    def _hindsight_best(self) -> Tensor:
        """(E,) the best exit of each entry in hindsight (min_exit_bar .. max_hold, net of both fills):
        the regret's reference, a training signal only."""
        c = self.m.close
        k = torch.arange(self.cfg.min_exit_bar, self.cfg.max_hold + 1, device=c.device)
        idx = (self.m.entry_bar[:, None] + k[None, :]).clamp(max=self.last_bar)
        gross = self.m.entry_side[:, None] * (c[idx] / c[self.m.entry_bar][:, None] - 1.0)
        return gross.max(dim=1).values - 2 * self.cfg.transaction_cost

    def reset(self, envs: Tensor | None = None, picks: Tensor | None = None) -> Tensor:
        """Start new trades in ``envs`` (a bool mask; None = all), at random entries or at ``picks``
        (N entry numbers); returns the observation of all."""
        mask = torch.ones(self.n, dtype=torch.bool, device=self.e.device) if envs is None else envs
        pick = (
            torch.randint(0, len(self.m.entry_bar), (self.n,), generator=self.gen, device=self.e.device)
            if picks is None
            else torch.as_tensor(picks, device=self.e.device).long()
        )
        e, side = self.m.entry_bar[pick], self.m.entry_side[pick]
        price = self.m.close[e]
        c = self.cfg
        self.pick = torch.where(mask, pick, getattr(self, "pick", pick))
        self.e = torch.where(mask, e, self.e)
        self.side = torch.where(mask, side, self.side)
        self.entry = torch.where(mask, price, self.entry)
        self.stop = torch.where(mask, price * (1 - side * c.stop_loss), self.stop)
        self.take = torch.where(mask, price * (1 + side * c.take_profit), self.take)
        self.k = torch.where(mask, 0, self.k)
        self.remaining = torch.where(mask, 1.0, self.remaining)
        self.realized = torch.where(mask, -c.transaction_cost, self.realized)  # the entry fill
        self.value = torch.where(mask, self.realized, self.value)
        return self.observe()

    def observe(self) -> Tensor:
        t = self.e + self.k
        return exit_observation(self.m.close, t, self.side, self.entry, self.k.double(), self.remaining,
                                self.stop, self.take, self.cfg, self.features)  # fmt: skip

    def action_mask(self) -> Tensor:
        """(N, 5) bool, True = allowed (see the module doc)."""
        c = self.cfg
        px = self.m.close[self.e + self.k]
        can_exit = self.k >= c.min_exit_bar
        in_profit = self.side * (px - self.entry) > 0
        below_be = self.side * (self.stop - self.entry) < 0
        ones = torch.ones_like(can_exit)
        return torch.stack(
            (ones, can_exit, ones, in_profit & below_be, can_exit & (self.remaining >= 1)), dim=1
        )

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        """Apply one action per trade, step one bar; ``(obs, reward, done, info)``, done trades reset."""
        c, m = self.cfg, self.m
        a = torch.as_tensor(actions, device=self.e.device).long()
        allowed = self.action_mask().gather(1, a[:, None])[:, 0]
        blocked = ~allowed
        a = torch.where(blocked, HOLD, a)
        t = self.e + self.k
        px = m.close[t]
        side, q = self.side, self.remaining
        gain = side * (px / self.entry - 1.0)
        sold = torch.where(a == EXIT, q, torch.where(a == PARTIAL_EXIT, c.partial_frac * q, 0.0))
        realized = self.realized + sold * (gain - c.transaction_cost)
        q = q - sold
        stop = torch.where(a == TIGHTEN_SL, self.stop + c.tighten_frac * (px - self.stop), self.stop)
        stop = torch.where(a == TRAIL_BE, self.entry, stop)
        reason = torch.where((a == EXIT), BY_AGENT, OPEN)

        # the next bar: stops first, then the close; the last allowed bar closes the trade
        nxt = (t + 1).clamp(max=self.last_bar)
        fill = resolve_stops(side, stop, self.take, m.open[nxt], m.high[nxt], m.low[nxt], m.close[nxt])
        live = reason == OPEN
        hit = live & (fill.kind != NO_FILL)
        fill_gain = side * (fill.price / self.entry - 1.0)
        realized = torch.where(hit, realized + q * (fill_gain - c.transaction_cost), realized)
        reason = torch.where(hit & (fill.kind == STOP_FILL), BY_STOP, reason)
        reason = torch.where(hit & (fill.kind == TAKE_FILL), BY_TAKE, reason)
        q = torch.where(hit, 0.0, q)
        k = self.k + 1
        timed = (reason == OPEN) & ((k >= c.max_hold) | (nxt >= self.last_bar))
        close_gain = side * (m.close[nxt] / self.entry - 1.0)
        realized = torch.where(timed, realized + q * (close_gain - c.transaction_cost), realized)
        reason = torch.where(timed, BY_TIME, reason)
        q = torch.where(timed, 0.0, q)

        done = reason != OPEN
        value = torch.where(done, realized, realized + q * close_gain)
        reward = value - self.value - c.time_coef
        regret = (self._best[self.pick] - realized).clamp(min=0.0)
        reward = torch.where(done, reward - c.regret_coef * regret, reward) * c.reward_scale

        info = {
            "blocked": blocked,
            "exit_reason": reason,
            "trade_return": torch.where(done, realized, torch.nan),
            "holding_bars": torch.where(done, torch.where(reason == BY_AGENT, self.k, k), 0),
            "action": a,
        }
        self.k, self.remaining, self.realized, self.stop, self.value = k, q, realized, stop, value
        self.blocked_total += int(blocked.sum())
        self.steps_total += self.n
        obs = self.reset(done) if bool(done.any()) else self.observe()
        return obs, reward.float(), done, info

    @property
    def blocked_rate(self) -> float:
        return self.blocked_total / max(self.steps_total, 1)
