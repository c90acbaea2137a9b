"""Fast greedy replay of trained policies over a dataset segment.

The env-stepping evaluator costs ~1.4 ms per bar; the report needs the selected checkpoint on every
split and on shuffled copies and every checkpoint on validation. So :func:`replay_greedy` encodes
each series once (``encode_stretch``), folds the actor's first layer into a per-bar term plus a
(hidden x 3) term for the position state, and steps all series of one call together in numpy
(float64) with the env's trading rules (the same kernel, :mod:`himari_pipeline.trading.rules`) and
its position state. The tests check it against ``evaluate_checkpoint`` and the env.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from himari_pipeline.rl.env import BARS_HELD_SCALE, EnvConfig
from himari_pipeline.rl.experiments import Experiment
from himari_pipeline.rl.policy import RegimeConditionedPolicy
from himari_pipeline.trading.rules import TradingRules, advance_hold, hold_blocked, trade_step
from himari_pipeline.vocabulary import FLAT, LONG, SHORT

__all__ = ["Replay", "costs_from_experiment", "replay_greedy"]


@dataclass
class Replay:
    """One greedy replay: decisions at rows ``t`` (``t0 .. last``), as ``evaluate_checkpoint`` gives."""

    t: np.ndarray
    action: np.ndarray  # 0 flat, 1 long, 2 short
    position: np.ndarray  # leverage * direction
    net_return: np.ndarray  # position * returns[t+1] - costs
    ruined: bool
    direction: np.ndarray | None = None  # position / leverage per row from t0 (a strategy's); else sign


@torch.no_grad()
def _actor_terms(policy: RegimeConditionedPolicy, features: np.ndarray, regimes: np.ndarray):
    """Per-bar actor pre-activation ``P`` (T, H) and the state term ``M`` (H, 3), ``W2`` (3, H), ``b2``."""
    actor = policy.actor
    if not (
        len(actor) == 3
        and isinstance(actor[0], torch.nn.Linear)
        and isinstance(actor[1], torch.nn.Tanh)
        and isinstance(actor[2], torch.nn.Linear)
    ):
        raise TypeError("replay_greedy needs an actor Linear -> Tanh -> Linear")
    feats = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    reg = torch.from_numpy(np.asarray(regimes).astype(np.int64))
    enc = policy.encode_stretch(feats, reg).double()
    d = policy.cfg.d_model
    w1, b1 = actor[0].weight.double(), actor[0].bias.double()
    w1e, w1c = w1[:, :d], w1[:, d:]
    cond0 = policy.regime_emb.weight.double()[reg] + policy.state_proj.bias.double()
    p = enc @ w1e.T + cond0 @ w1c.T + b1
    m = w1c @ policy.state_proj.weight.double()
    return p.numpy(), m.numpy(), actor[2].weight.double().numpy(), actor[2].bias.double().numpy()


def replay_greedy(
    policies: Sequence[RegimeConditionedPolicy],
    series: Sequence[tuple[np.ndarray, ...]],
    env_cfg: EnvConfig,
) -> list[Replay]:
    """Greedy decisions of ``policies[i]`` over ``series[i] = (features, regime_ids, returns[,
    gap_before])``, all stepped together; the trading rules of the env (:mod:`himari_pipeline.trading`)
    with one episode from row ``env_cfg.context - 1`` to the last row with a next return (or the ruin
    step)."""
    if len(policies) != len(series) or not series:
        raise ValueError("need one policy per series and at least one series")
    rules = env_cfg.rules
    t0 = env_cfg.context - 1
    terms = [_actor_terms(pol, s[0], s[1]) for pol, s in zip(policies, series, strict=True)]
    n_rows = len(series)
    lengths = np.array([len(s[2]) for s in series])
    if (lengths - 2 < t0).any():
        raise ValueError(f"a series is too short for context {env_cfg.context}")
    t_hi = lengths - 2
    tmax = int(t_hi.max())
    hidden = terms[0][0].shape[1]
    p_all = np.zeros((tmax + 1, n_rows, hidden))
    r_next = np.zeros((tmax + 1, n_rows))
    span = np.ones((tmax + 1, n_rows))
    for i, ((p, _, _, _), s) in enumerate(zip(terms, series, strict=True)):
        p_all[: len(p), i] = p[: tmax + 1]
        rr = np.asarray(s[2], dtype=np.float64)[1:]
        r_next[: len(rr), i] = rr[: tmax + 1]
        if len(s) > 3 and s[3] is not None:
            gaps = np.asarray(s[3], dtype=np.int64)[1:]
            span[: len(gaps), i] = 1.0 + gaps[: tmax + 1]
    gapped = bool((span != 1.0).any())
    m = np.stack([x[1] for x in terms])  # (R, H, 3)
    w2 = np.stack([x[2] for x in terms])  # (R, 3, H)
    b2 = np.stack([x[3] for x in terms])  # (R, 3)
    same = all(
        np.array_equal(m[0], m[i]) and np.array_equal(w2[0], w2[i]) and np.array_equal(b2[0], b2[i])
        for i in range(1, n_rows)
    )
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
    ps = np.zeros((n_rows, 3))
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
        a = logits.argmax(axis=1)
        new_pos = pos_of[a]
        if rules.holds_on:
            blocked = hold_blocked(rules, position, new_pos, held, after_close)
            a = np.where(blocked, action, a)
            new_pos = np.where(blocked, position, new_pos)
        out = trade_step(rules, position, new_pos, r_next[t], equity, span[t] if gapped else None)
        rec_a[t], rec_net[t] = a, out.net
        held, after_close = advance_hold(position, new_pos, held, after_close)
        entry = np.where(a != action, equity, entry)
        equity, action, position = out.equity, a, new_pos
        dead = alive & out.ruined & (t <= t_hi)
        last = np.where(dead, t, last)
        alive &= ~dead
    out_replays = []
    for i in range(n_rows):
        sl = slice(t0, int(last[i]) + 1)
        a = rec_a[sl, i].astype(np.int64)
        out_replays.append(
            Replay(np.arange(t0, int(last[i]) + 1), a, pos_of[a], rec_net[sl, i], not alive[i])
        )
    return out_replays


def costs_from_experiment(exp: Experiment | None, env_cfg: EnvConfig | None = None) -> TradingRules:
    """The trading rules of an experiment's env config (or of a checkpoint's; defaults without both)."""
    if exp is not None:
        return TradingRules.from_mapping(exp.env)
    return env_cfg.rules if env_cfg is not None else TradingRules()
