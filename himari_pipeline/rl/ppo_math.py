"""The PPO formulas both trainers use: schedules, GAE, the clipped losses, the per-iteration log.

:class:`~himari_pipeline.rl.ppo.PPOTrainer` (one seed) and
:class:`~himari_pipeline.rl.stacked_ppo.StackedPPOTrainer` (a seed population on a leading axis)
call these. Tensors are indexed (step, ..., env); the loss reduces over every element (``dim=None``,
one seed) or over ``dim`` (one value per seed). CleanRL's ``ppo.py`` is the reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from himari_pipeline.vocabulary import ACTIONS, N_REGIMES
from himari_pipeline.vocabulary import action_shares as _shares

if TYPE_CHECKING:
    from himari_pipeline.rl.ppo import PPOConfig

__all__ = [
    "action_shares",
    "clipped_losses",
    "ent_coef_at",
    "explained_variance",
    "gae",
    "iteration_log",
    "logprob_and_entropy",
    "lr_at",
]


def lr_at(cfg: PPOConfig, iteration: int) -> float:
    """Learning rate of update ``iteration`` (1-based): linear decay to 0 when ``anneal_lr``."""
    if not cfg.anneal_lr:
        return cfg.learning_rate
    return (1.0 - (iteration - 1.0) / cfg.num_iterations) * cfg.learning_rate


def ent_coef_at(cfg: PPOConfig, iteration: int) -> float:
    """Entropy coefficient of update ``iteration``: linear from ``ent_coef_start`` to ``ent_coef_end``."""
    n = cfg.num_iterations
    frac = 0.0 if n <= 1 else (iteration - 1) / (n - 1)
    return cfg.ent_coef_start + frac * (cfg.ent_coef_end - cfg.ent_coef_start)


def gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    next_value: Tensor,
    next_done: Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (CleanRL's recursion) -> ``(advantages, returns)``.

    ``dones[k]`` marks that obs ``k`` starts a new episode; ``next_value`` / ``next_done`` belong to
    the obs after the last step.
    """
    num_steps = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(next_value)
    for k in reversed(range(num_steps)):
        if k == num_steps - 1:
            nextnonterminal, nextvalues = 1.0 - next_done.float(), next_value
        else:
            nextnonterminal, nextvalues = 1.0 - dones[k + 1].float(), values[k + 1]
        delta = rewards[k] + gamma * nextvalues * nextnonterminal - values[k]
        adv[k] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
    return adv, adv + values


def logprob_and_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """Log-probability of ``actions`` under ``logits`` (..., actions) and each distribution's entropy."""
    logp_all = torch.log_softmax(logits, -1)
    return logp_all.gather(-1, actions[..., None]).squeeze(-1), -(logp_all.exp() * logp_all).sum(-1)


def _mean(x: Tensor, dim: int | None) -> Tensor:
    return x.mean() if dim is None else x.mean(dim)


def clipped_losses(
    cfg: PPOConfig,
    newlogprob: Tensor,
    oldlogprob: Tensor,
    advantages: Tensor,
    newvalue: Tensor,
    oldvalue: Tensor,
    returns: Tensor,
    entropy: Tensor,
    ent_coef: float,
    dim: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped policy loss, (clipped) value loss and entropy bonus -> ``(loss, stats)``.

    Reduces over every element (``dim=None``) or over ``dim``; advantages are normalised over the
    same elements when ``cfg.norm_adv``. ``stats``: ``policy_loss``, ``value_loss``,
    ``old_approx_kl``, ``approx_kl``, ``clipfrac``, ``loss`` (detached).
    """
    logratio = newlogprob - oldlogprob
    ratio = logratio.exp()
    with torch.no_grad():
        old_approx_kl = _mean(-logratio, dim)
        approx_kl = _mean((ratio - 1) - logratio, dim)
        clipfrac = _mean(((ratio - 1.0).abs() > cfg.clip_coef).float(), dim)

    adv = advantages
    if cfg.norm_adv and (adv.numel() if dim is None else adv.shape[dim]) > 1:
        if dim is None:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        else:
            adv = (adv - adv.mean(dim, keepdim=True)) / (adv.std(dim, keepdim=True) + 1e-8)
    pg_loss = _mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)), dim)

    if cfg.clip_vloss:
        v_clipped = oldvalue + (newvalue - oldvalue).clamp(-cfg.clip_coef, cfg.clip_coef)
        v_loss = 0.5 * _mean(torch.max((newvalue - returns) ** 2, (v_clipped - returns) ** 2), dim)
    else:
        v_loss = 0.5 * _mean((newvalue - returns) ** 2, dim)
    loss = pg_loss - ent_coef * _mean(entropy, dim) + cfg.vf_coef * v_loss
    stats = {
        "policy_loss": pg_loss.detach(),
        "value_loss": v_loss.detach(),
        "old_approx_kl": old_approx_kl,
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
        "loss": loss.detach(),
    }
    return loss, stats


def explained_variance(y_pred: Tensor, y_true: Tensor) -> float:
    """1 - Var(y_true - y_pred) / Var(y_true) (NaN when y_true is constant)."""
    var_y = torch.var(y_true)
    return float("nan") if var_y == 0 else float(1 - torch.var(y_true - y_pred) / var_y)


def action_shares(actions: Tensor, regimes: Tensor | None = None) -> dict[str, float]:
    """Share of each action overall and (if ``regimes`` given) per regime (NaN for an absent regime)."""
    a = actions.reshape(-1).cpu().numpy()
    out = {f"share_{name}": v for name, v in _shares(a).items()}
    if regimes is not None:
        r = regimes.reshape(-1).cpu().numpy()
        for reg in range(N_REGIMES):
            sel = a[r == reg]
            shares = _shares(sel) if sel.size else dict.fromkeys(ACTIONS, float("nan"))
            out.update({f"regime{reg}_share_{name}": v for name, v in shares.items()})
    return out


def iteration_log(
    values: Tensor,
    returns: Tensor,
    rewards: Tensor,
    episode_returns: list[float],
    stats: dict[str, float],
    actions: Tensor,
    regimes: Tensor | None = None,
) -> dict[str, float]:
    """One seed's training log of an update: episodes, rewards, value fit, losses, action shares."""
    return {
        "charts/episodic_return": float(np.mean(episode_returns)) if episode_returns else float("nan"),
        "charts/episodes": float(len(episode_returns)),
        "rollout/reward_mean": float(rewards.mean()),
        "rollout/reward_std": float(rewards.std()),
        "losses/explained_variance": explained_variance(values.reshape(-1), returns.reshape(-1)),
        **{f"losses/{k}": v for k, v in stats.items()},
        **{f"actions/{k}": v for k, v in action_shares(actions, regimes).items()},
    }
