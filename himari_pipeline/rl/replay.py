"""Replay trained policies over whole series: greedy or sampled decisions, stepped together in numpy.

Stepping the vector env with the policy costs about 0.5 ms per bar, which made validation half of a
training run. Here each series is encoded once (``encode_stretch``), the actor's first layer is folded
into a per-bar term plus a (hidden x 3) term for the position state, and all rows step together in
float64 numpy under the env's trading rules (:mod:`himari_pipeline.trading.rules`) and its position
state (direction, log bars held, unrealised P&L). A row decides greedily (argmax) or samples at a
temperature from its own seeded generator; min hold and cooldown allow only the current action, as the
env's action mask does. One episode per row, from row ``env_cfg.context - 1`` to the last row with a
next return, or to the ruin step.

Used by the trainer's validation (greedy and tempered), by the population trainer and by the report's
greedy replays. :func:`replay_in_env` is the reference it is tested and benchmarked against: the vector
env stepped bar by bar with the policy's own heads in float32 torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from himari_pipeline.rl.env import BARS_HELD_SCALE, EnvConfig, MarketArrays, VecTradingEnv
from himari_pipeline.rl.policy import RegimeConditionedPolicy, masked_logits
from himari_pipeline.trading.rules import advance_hold, hold_restricted, legs_step, trade_step
from himari_pipeline.vocabulary import FLAT, LONG, NUM_ACTIONS, SHORT

__all__ = ["Decisions", "actor_terms", "replay_in_env", "replay_policies"]

#: one series: (features (T, F), regime ids (T,), returns (T,)[, gap_before (T,) or None[, leg returns
#: (T, K), leg weights (T, K)]]); with legs every leg pays the rules (the env's pair accounting)
Series = tuple


@dataclass
class Decisions:
    """One row's replay: decisions at rows ``t`` (``context - 1`` .. last), as the env would make them."""

    t: np.ndarray
    action: np.ndarray  # 0 flat, 1 long, 2 short
    position: np.ndarray  # leverage * direction
    net_return: np.ndarray  # position * returns[t+1] - costs
    ruined: bool
    entropy: np.ndarray | None = None  # of the masked, untempered action distribution (when asked)


@torch.no_grad()
def actor_terms(policy: RegimeConditionedPolicy, features, regimes) -> tuple[np.ndarray, ...]:
    """Per-bar actor pre-activation ``P`` (T, H), the state term ``M`` (H, 3), ``W2`` (3, H), ``b2``."""
    actor = policy.actor
    if not (
        len(actor) == 3
        and isinstance(actor[0], torch.nn.Linear)
        and isinstance(actor[1], torch.nn.Tanh)
        and isinstance(actor[2], torch.nn.Linear)
    ):
        raise TypeError("replay needs an actor Linear -> Tanh -> Linear")
    dev = policy.actor[0].weight.device
    if isinstance(features, np.ndarray):
        features = np.ascontiguousarray(features, dtype=np.float32)
    feats = torch.as_tensor(features).to(dev, torch.float32)
    reg = torch.as_tensor(regimes).to(dev, torch.long)
    enc = policy.encode_stretch(feats, reg).double()
    d = policy.cfg.d_model
    w1, b1 = actor[0].weight.double(), actor[0].bias.double()
    w1e, w1c = w1[:, :d], w1[:, d:]
    cond0 = policy.regime_emb.weight.double()[reg] + policy.state_proj.bias.double()
    p = enc @ w1e.T + cond0 @ w1c.T + b1
    m = w1c @ policy.state_proj.weight.double()
    return tuple(x.cpu().numpy() for x in (p, m, actor[2].weight.double(), actor[2].bias.double()))


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def replay_policies(
    policies: Sequence[RegimeConditionedPolicy],
    series: Sequence[Series],
    env_cfg: EnvConfig,
    temperatures: Sequence[float | None] | None = None,
    seeds: Sequence[int | None] | None = None,
    with_entropy: bool = False,
) -> list[Decisions]:
    """Decisions of ``policies[i]`` over ``series[i]``, all rows stepped together.

    ``temperatures[i]`` None (the default) decides greedily; a float samples from the masked softmax of
    ``logits / temperature`` with uniforms from ``numpy.random.default_rng(seeds[i])``, one per bar, so
    a row's draws do not depend on the other rows. ``with_entropy`` also records each decision's
    entropy (validation logs it; greedy replays for the report skip the softmax).
    """
    n_rows = len(series)
    if len(policies) != n_rows or not series:
        raise ValueError("need one policy per series and at least one series")
    temps = list(temperatures) if temperatures is not None else [None] * n_rows
    seeds = list(seeds) if seeds is not None else [None] * n_rows
    if len(temps) != n_rows or len(seeds) != n_rows:
        raise ValueError("need one temperature and one seed per series")
    rules = env_cfg.rules
    t0 = env_cfg.context - 1
    lengths = np.array([len(s[2]) for s in series])
    if (lengths - 2 < t0).any():
        raise ValueError(f"a series is too short for context {env_cfg.context}")
    t_hi = lengths - 2
    tmax = int(t_hi.max())
    cache: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}  # (policy, series) -> actor terms
    terms = []
    for pol, s in zip(policies, series, strict=True):
        key = (id(pol), id(s))
        if key not in cache:
            cache[key] = actor_terms(pol, s[0], s[1])
        terms.append(cache[key])
    hidden = terms[0][0].shape[1]
    p_all = np.zeros((tmax + 1, n_rows, hidden))
    r_next = np.zeros((tmax + 1, n_rows))
    span = np.ones((tmax + 1, n_rows))
    for i, ((p, _, _, _), s) in enumerate(zip(terms, series, strict=True)):
        p_all[: len(p), i] = p[: tmax + 1]
        rr = _as_numpy(s[2]).astype(np.float64)[1:]
        r_next[: len(rr), i] = rr[: tmax + 1]
        if len(s) > 3 and s[3] is not None:
            gaps = _as_numpy(s[3]).astype(np.int64)[1:]
            span[: len(gaps), i] = 1.0 + gaps[: tmax + 1]
    gapped = bool((span != 1.0).any())
    with_legs = {len(s) > 5 and s[5] is not None for s in series}
    if len(with_legs) != 1:
        raise ValueError("every series has legs or none does")
    legs = with_legs == {True}
    if legs:
        k_legs = _as_numpy(series[0][5]).shape[1]
        leg_r = np.zeros((tmax + 1, n_rows, k_legs))  # leg returns of step t (bar t + 1)
        w_now = np.zeros((tmax + 1, n_rows, k_legs))  # weights decided at t
        w_before = np.zeros((tmax + 1, n_rows, k_legs))  # weights of the position held into t
        for i, s in enumerate(series):
            lr, lw = _as_numpy(s[4]).astype(np.float64), _as_numpy(s[5]).astype(np.float64)
            n = min(len(lw), tmax + 1)
            leg_r[: len(lr) - 1, i] = lr[1 : tmax + 2]
            w_now[:n, i] = lw[:n]
            w_before[1:n, i] = lw[: n - 1]
    m = np.stack([x[1] for x in terms])  # (R, H, 3)
    w2 = np.stack([x[2] for x in terms])  # (R, 3, H)
    b2 = np.stack([x[3] for x in terms])  # (R, 3)
    same = all(
        np.array_equal(m[0], m[i]) and np.array_equal(w2[0], w2[i]) and np.array_equal(b2[0], b2[i])
        for i in range(1, n_rows)
    )
    sampled = np.array([tp is not None for tp in temps])
    inv_temp = np.array([1.0 / tp if tp is not None else 1.0 for tp in temps])[:, None]
    uniforms = np.zeros((tmax + 1, n_rows))
    for i in np.flatnonzero(sampled):
        uniforms[:, i] = np.random.default_rng(seeds[i]).random(tmax + 1)
    any_sampled = bool(sampled.any())

    lev = float(rules.leverage)
    pos_of = np.array([0.0, lev, -lev])
    action = np.zeros(n_rows, dtype=np.int64)
    position = np.zeros(n_rows)
    held = np.zeros(n_rows, dtype=np.int64)
    after_close = np.zeros(n_rows, dtype=bool)
    equity = np.ones(n_rows)
    entry = np.ones(n_rows)
    alive = np.ones(n_rows, dtype=bool)
    last = t_hi.copy()
    rec_a = np.zeros((tmax + 1, n_rows), dtype=np.int8)
    rec_net = np.zeros((tmax + 1, n_rows))
    rec_ent = np.zeros((tmax + 1, n_rows))
    ps = np.zeros((n_rows, 3))
    codes = np.arange(NUM_ACTIONS)[None, :]
    for t in range(t0, tmax + 1):
        ps[:, 0] = (action == LONG).astype(np.float64) - (action == SHORT)
        ps[:, 1] = np.log1p(held.astype(np.float32)).astype(np.float64) / BARS_HELD_SCALE
        ps[:, 2] = np.where(action != FLAT, equity / entry - 1.0, 0.0).astype(np.float32)
        if same:
            h = np.tanh(p_all[t] + ps @ m[0].T)
            logits = h @ w2[0].T + b2[0]
        else:
            h = np.tanh(p_all[t] + np.einsum("rhk,rk->rh", m, ps))
            logits = np.einsum("rah,rh->ra", w2, h) + b2
        if rules.holds_on:
            restricted = hold_restricted(rules, action, held, after_close)
            allowed = ~restricted[:, None] | (codes == action[:, None])
            logits = np.where(allowed, logits, -np.inf)
        a = logits.argmax(axis=1)
        if with_entropy or any_sampled:
            top = logits.max(axis=1, keepdims=True)
        if with_entropy:
            z = np.exp(logits - top)
            total = z.sum(axis=1, keepdims=True)
            logp = np.where(z > 0, logits - top, 0.0) - np.log(total)  # masked actions: weight z = 0
            rec_ent[t] = -(z / total * logp).sum(axis=1)
        if any_sampled:
            zt = np.exp((logits - top) * inv_temp)
            cum = np.cumsum(zt, axis=1)
            draw = (cum[:, :-1] <= (uniforms[t] * cum[:, -1])[:, None]).sum(axis=1)
            a = np.where(sampled, draw, a)
        new_pos = pos_of[a]
        if legs:
            out = legs_step(
                rules,
                position[:, None] * w_before[t],
                new_pos[:, None] * w_now[t],
                leg_r[t],
                equity,
                span[t] if gapped else None,
            )
        else:
            out = trade_step(rules, position, new_pos, r_next[t], equity, span[t] if gapped else None)
        rec_a[t], rec_net[t] = a, out.net
        held, after_close = advance_hold(position, new_pos, held, after_close)
        entry = np.where(a != action, equity, entry)
        equity, action, position = out.equity, a, new_pos
        dead = alive & out.ruined & (t <= t_hi)
        last = np.where(dead, t, last)
        alive &= ~dead
    out_rows = []
    for i in range(n_rows):
        sl = slice(t0, int(last[i]) + 1)
        a = rec_a[sl, i].astype(np.int64)
        t = np.arange(t0, int(last[i]) + 1)
        entropy = rec_ent[sl, i] if with_entropy else None
        out_rows.append(Decisions(t, a, pos_of[a], rec_net[sl, i], not alive[i], entropy))
    return out_rows


@torch.no_grad()
def replay_in_env(
    policy: RegimeConditionedPolicy,
    market: MarketArrays,
    env_cfg: EnvConfig,
    temperature: float | None = None,
    seed: int | None = None,
) -> Decisions:
    """Reference for :func:`replay_policies`, one row: the env (one episode from the first full window,
    min hold and cooldown by its action mask) stepped bar by bar with ``policy.heads``; a temperature
    samples with the same uniforms. About 0.5 ms per bar."""
    env = VecTradingEnv(market, dataclasses.replace(env_cfg, episode_length=None), 1, market.device, 0)
    obs = env.reset(start=env_cfg.context - 1)
    enc = policy.encode_stretch(market.features, market.regime_ids)
    uniforms = np.random.default_rng(seed).random(market.num_bars)
    rec: dict[str, list] = {"t": [], "action": [], "position": [], "net": [], "entropy": []}
    while True:
        t = int(obs.t[0])
        raw, _ = policy.heads(enc[obs.t], market.regime_ids[obs.t], obs.position_state)
        logits = masked_logits(raw, env.action_mask())
        logp = torch.log_softmax(logits.double(), -1)
        if temperature is None:
            action = logits.argmax(-1)
        else:
            cum = torch.softmax(logits / temperature, -1).double().cumsum(-1)[0]
            action = (cum[:-1] <= float(uniforms[t]) * cum[-1]).sum().reshape(1)
        obs, _, done, info = env.step(action)
        rec["t"].append(t)
        rec["action"].append(int(action[0]))
        rec["position"].append(float(info["position"][0]))
        rec["net"].append(float(info["pnl"][0] - info["cost"][0]))
        rec["entropy"].append(float(-(logp.exp() * logp).nan_to_num().sum()))
        if bool(done[0]):
            return Decisions(
                np.array(rec["t"]),
                np.array(rec["action"]),
                np.array(rec["position"]),
                np.array(rec["net"]),
                bool(info["terminated"][0]),
                np.array(rec["entropy"]),
            )
