"""PPO for the exit policy: one readable loop in the style of CleanRL's ``ppo.py``.

The formulas are the project's (:mod:`himari_pipeline.rl.ppo_math`: learning-rate and entropy
annealing, GAE, the clipped policy and value losses, KL early stop) and every hyperparameter is a
:class:`~himari_pipeline.rl.configs.PPOConfig` field, as for the trading policy; selection, patience
and checkpoints are the trading trainer's (:class:`~himari_pipeline.rl.checkpoints.BestTracker`,
safetensors checkpoints, ``best.json``). What differs is the env
(:class:`~himari_pipeline.exits.env.VecExitEnv`, one open trade per env) and the policy (a
flat-observation MLP), so the rollout stores observations instead of bar indices and the update
minibatches samples, as CleanRL does.

Masks: the rollout samples from the masked logits and stores each step's mask; the update recomputes
the log-probabilities under the same masks, so a blocked action has probability exactly 0 in both.
The log records the env's blocked rate (actions the env had to replace by HOLD: 0 under a masked
policy) and the probability the updated policy puts on blocked actions (0).

A trade's end is a true terminal (the holding time is in the observation), so there is no time-limit
bootstrap. Validation plays every validation entry once with the greedy policy
(:func:`~himari_pipeline.exits.evaluate.play_trades`) and reports per-trade metrics; ``greedy_sharpe`` is
the per-trade Sharpe (mean over std of the trades' net returns), the default selection metric.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from himari_pipeline.exits.env import EXIT_ACTIONS, ExitConfig, ExitMarket, VecExitEnv
from himari_pipeline.exits.evaluate import play_trades, policy_actions, trade_metrics
from himari_pipeline.exits.policy import ExitPolicy, ExitPolicyConfig
from himari_pipeline.rl.checkpoints import BestTracker, load_checkpoint, record_evaluation, save_checkpoint
from himari_pipeline.rl.configs import PPOConfig
from himari_pipeline.rl.ppo_math import (
    clipped_losses,
    ent_coef_at,
    explained_variance,
    gae,
    logprob_and_entropy,
    lr_at,
)
from himari_pipeline.rl.rewards import reward_scale_diagnostic

LogFn = Callable[[int, dict[str, float]], None]
CHECKPOINT_FORMAT = "himari-exit-checkpoint/1"


@dataclass
class ExitRollout:
    """One rollout, indexed (step, env); ``dones[k]``: obs k starts a new trade (CleanRL)."""

    obs: Tensor  # (S, N, n_obs)
    masks: Tensor  # (S, N, 5) bool
    actions: Tensor
    logprobs: Tensor
    values: Tensor
    rewards: Tensor
    dones: Tensor
    next_value: Tensor
    next_done: Tensor
    trade_returns: list[float] = field(default_factory=list)
    blocked: int = 0
    advantages: Tensor | None = None
    returns: Tensor | None = None


def validation_metrics(trades, info: dict, cfg: ExitConfig) -> dict[str, float]:
    """``greedy_*`` metrics of played trades: per-trade statistics, Sharpe, blocked rate, action shares."""
    m = trade_metrics(trades, cfg.min_exit_bar)
    m["blocked_rate"] = info["blocked_rate"]
    m.update({f"share_{a}": v for a, v in info["action_shares"].items()})
    return {f"greedy_{k}": float(v) for k, v in m.items()}


class ExitPPOTrainer:
    """Trains an :class:`ExitPolicy` on ``train_market``'s entries; validates on ``val_market``'s.

    Seed with :func:`~himari_pipeline.rl.ppo.seed_everything` before building the policy; actions and
    minibatch orders come from the trainer's own generator (``ppo_cfg.seed``).
    """

    def __init__(
        self,
        policy: ExitPolicy,
        train_market: ExitMarket,
        cfg: ExitConfig,
        ppo_cfg: PPOConfig,
        val_market: ExitMarket | None = None,
        checkpoint_dir: str | Path | None = None,
        provenance: dict | None = None,
        log_fn: LogFn | None = None,
    ) -> None:
        self.policy, self.cfg, self.ppo = policy, cfg, ppo_cfg
        self.val_market = val_market
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.provenance = dict(provenance or {})
        self.log_fn = log_fn
        self.env = VecExitEnv(train_market, cfg, ppo_cfg.num_envs, seed=ppo_cfg.seed)
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=ppo_cfg.learning_rate, eps=ppo_cfg.adam_eps)
        self.gen = torch.Generator()
        self.gen.manual_seed(ppo_cfg.seed)
        self.global_step = self.iteration = 0
        self.next_eval = ppo_cfg.first_eval
        self.best = BestTracker(ppo_cfg.select_metric, ppo_cfg.select_mode, ppo_cfg.patience)
        self.stop_reason: str | None = None
        self.eval_history: list[dict] = []
        self.reward_diagnostic: dict | None = None
        self.max_masked_prob = 0.0  # the largest probability an update gave a blocked action
        self._obs = self.env.observe()
        self._done = torch.zeros(ppo_cfg.num_envs, dtype=torch.bool)

    def train(self) -> dict:
        """Run PPO until ``total_timesteps`` or an early stop; validate every ``eval_every`` steps."""
        cfg = self.ppo
        start, start_step = time.time(), self.global_step
        while self.iteration < cfg.num_iterations and self.stop_reason is None:
            self.iteration += 1
            lr, ent_coef = lr_at(cfg, self.iteration), ent_coef_at(cfg, self.iteration)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            r = self.collect_rollout()
            if self.reward_diagnostic is None:  # raises on an absurd reward scale before any update
                self.reward_diagnostic = reward_scale_diagnostic(r.rewards)
            r.advantages, r.returns = gae(r.rewards, r.values, r.dones, r.next_value, r.next_done,
                                          cfg.gamma, cfg.gae_lambda)  # fmt: skip
            stats = self.update(r, ent_coef)
            log = {
                "charts/learning_rate": lr,
                "charts/ent_coef": ent_coef,
                "charts/SPS": (self.global_step - start_step) / max(time.time() - start, 1e-9),
                "charts/trade_return": float(np.mean(r.trade_returns)) if r.trade_returns else math.nan,
                "charts/trades": float(len(r.trade_returns)),
                "rollout/reward_mean": float(r.rewards.mean()),
                "rollout/reward_std": float(r.rewards.std()),
                "rollout/blocked_rate": r.blocked / r.actions.numel(),
                "losses/explained_variance": explained_variance(r.values.reshape(-1), r.returns.reshape(-1)),
                **{f"losses/{k}": v for k, v in stats.items()},
                **{
                    f"actions/share_{a}": float((r.actions == i).float().mean())
                    for i, a in enumerate(EXIT_ACTIONS)
                },
            }
            self.last_log = log
            if self.log_fn is not None:
                self.log_fn(self.global_step, log)
            if self.val_market is not None and self.global_step >= self.next_eval:
                while self.next_eval <= self.global_step:
                    self.next_eval += cfg.eval_every
                self.evaluate_and_checkpoint()
        return {"global_step": self.global_step, "best_step": self.best.best_step,
                "best_value": self.best.best_value, "stop_reason": self.stop_reason}  # fmt: skip

    @torch.no_grad()
    def collect_rollout(self) -> ExitRollout:
        """``num_steps`` steps of every env, sampling from the masked policy."""
        S, N = self.ppo.num_steps, self.ppo.num_envs
        env, pol = self.env, self.policy
        obs_buf = torch.zeros(S, N, self.cfg.n_obs)
        masks = torch.zeros(S, N, len(EXIT_ACTIONS), dtype=torch.bool)
        actions = torch.zeros(S, N, dtype=torch.long)
        logprobs, values, rewards = (torch.zeros(S, N) for _ in range(3))
        dones = torch.zeros(S, N, dtype=torch.bool)
        trade_returns: list[float] = []
        blocked_before = env.blocked_total
        obs, done = self._obs, self._done
        pol.eval()
        for k in range(S):
            mask = env.action_mask()
            logits, value = pol(obs, mask)
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen).squeeze(-1)
            obs_buf[k], masks[k], dones[k], actions[k], values[k] = obs, mask, done, action, value
            logprobs[k] = torch.log_softmax(logits, -1).gather(-1, action[:, None]).squeeze(-1)
            obs, reward, done, info = env.step(action)
            rewards[k] = reward
            if bool(done.any()):
                trade_returns += info["trade_return"][done].tolist()
            self.global_step += N
        _, next_value = pol(obs)
        self._obs, self._done = obs, done
        blocked = env.blocked_total - blocked_before
        return ExitRollout(obs_buf, masks, actions, logprobs, values, rewards, dones, next_value,
                           done.clone(), trade_returns, blocked)  # fmt: skip

    def minibatch_loss(
        self, r: ExitRollout, idx: Tensor, ent_coef: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The clipped PPO loss over flat samples ``idx`` under their rollout masks."""
        flat = lambda x: x.reshape(-1, *x.shape[2:])[idx]  # noqa: E731
        masks = flat(r.masks)
        logits, newvalue = self.policy(flat(r.obs), masks)
        newlogprob, entropy = logprob_and_entropy(logits, flat(r.actions))
        loss, stats = clipped_losses(self.ppo, newlogprob, flat(r.logprobs), flat(r.advantages), newvalue,
                                     flat(r.values), flat(r.returns), entropy, ent_coef)  # fmt: skip
        with torch.no_grad():
            stats["entropy"] = entropy.mean()
            stats["masked_prob"] = (torch.softmax(logits, -1) * (~masks)).sum(-1).max()
        return loss, stats

    def update(self, r: ExitRollout, ent_coef: float) -> dict[str, float]:
        """``update_epochs`` passes over shuffled minibatches; stop early when approx KL > ``target_kl``."""
        cfg = self.ppo
        n = r.actions.numel()
        size = max(1, n // cfg.num_minibatches)
        self.policy.train()
        history: list[dict[str, Tensor]] = []
        for _ in range(cfg.update_epochs):
            perm = torch.randperm(n, generator=self.gen)
            for start in range(0, n, size):
                loss, stats = self.minibatch_loss(r, perm[start : start + size], ent_coef)
                self.optimizer.zero_grad()
                loss.backward()
                stats["grad_norm"] = nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                history.append(stats)
            if cfg.target_kl is not None and float(history[-1]["approx_kl"]) > cfg.target_kl:
                break
        self.policy.eval()
        last = history[-1]
        out = {k: float(last[k]) for k in ("policy_loss", "value_loss", "entropy", "approx_kl")}
        out["clipfrac"] = float(torch.stack([h["clipfrac"] for h in history]).mean())
        out["masked_prob"] = float(torch.stack([h["masked_prob"] for h in history]).max())
        self.max_masked_prob = max(self.max_masked_prob, out["masked_prob"])
        out["epochs"] = float(len(history) / max(1, math.ceil(n / size)))
        return out

    def play(self, market: ExitMarket):
        """Every entry of ``market`` once with the greedy policy: ``(trades, info)``."""
        return play_trades(market, self.cfg, policy_actions(self.policy))

    def evaluate_and_checkpoint(self) -> dict[str, float]:
        """Validate, update the best / patience, save a checkpoint (and ``best.json`` when best)."""
        trades, info = self.play(self.val_market)
        metrics = validation_metrics(trades, info, self.cfg)
        record_evaluation(self.best, self.global_step, metrics, self.eval_history, self.log_fn,
                          self.checkpoint_dir, self.save, self._stop)  # fmt: skip
        return metrics

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        """The weights and what is needed to rebuild and judge the policy (no optimizer state)."""
        meta = {
            "format": CHECKPOINT_FORMAT,
            "step": self.global_step,
            "policy_config": self.policy.cfg.to_dict(),
            "exit_config": self.cfg,
            "ppo_config": self.ppo,
            "metrics": metrics or {},
            "eval_history": self.eval_history,
            "stop_reason": self.stop_reason,
            "reward_scale": self.reward_diagnostic,
            "train_blocked_rate": self.env.blocked_rate,
            "train_masked_prob": self.max_masked_prob,
            **self.provenance,
        }
        return save_checkpoint(path, model=self.policy.state_dict(), meta=meta)


def load_exit_policy(path: str | Path) -> tuple[ExitPolicy, dict]:
    """The policy of an exit checkpoint (eval mode) and the checkpoint's metadata."""
    ck = load_checkpoint(path)
    if ck.meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an exit-policy checkpoint (format {ck.meta.get('format')!r})")
    policy = ExitPolicy(ExitPolicyConfig.from_dict(ck.meta["policy_config"]))
    policy.load_state_dict(ck.model, strict=True)
    return policy.eval(), ck.meta
