"""PPO for the regime-conditioned Transformer policy, in the style of CleanRL's ``ppo.py``.

Kept whole: one readable loop, like CleanRL's ``ppo.py`` (its formulas live in
:mod:`himari_pipeline.rl.ppo_math`).

One readable loop (:meth:`PPOTrainer.train`): rollout -> GAE -> clipped-objective epochs -> logs ->
periodic validation + checkpoint.  Every hyperparameter lives in :class:`PPOConfig` (CleanRL names).

Market observations do not depend on actions, so the encoder output at bar ``t`` is a function of
``t`` alone.  The rollout encodes each env's upcoming stretch of bars in one pass
(:meth:`RegimeConditionedPolicy.encode_indices`), and the update minibatches *environments*
(as CleanRL's recurrent PPO does), re-encoding each env's rollout stretch in one pass with gradients.

Training steps a :class:`~himari_pipeline.rl.env.VecTradingEnv` (auto-reset; ``info`` gives
``truncated``/``final_obs`` for time-limit bootstrapping and ``episode_return``). Several train
markets (a market and its mirror image) are stacked as independent segments of one market
(:func:`make_train_env`). The formulas live in :mod:`himari_pipeline.rl.ppo_math`; a population of
seeds trains batched in :mod:`himari_pipeline.rl.stacked_ppo`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from himari_pipeline.rl.checkpoints import (
    BestTracker,
    CollapseDetector,
    env_state,
    load_checkpoint,
    load_env_state,
    optimizer_from_flat,
    optimizer_to_flat,
    record_evaluation,
    save_checkpoint,
)
from himari_pipeline.rl.configs import PPOConfig
from himari_pipeline.rl.env import EnvConfig, MarketArrays, VecTradingEnv
from himari_pipeline.rl.policy import PolicyConfig, RegimeConditionedPolicy, masked_logits
from himari_pipeline.rl.ppo_math import (
    action_shares,
    clipped_losses,
    ent_coef_at,
    explained_variance,
    gae,
    iteration_log,
    logprob_and_entropy,
    lr_at,
)
from himari_pipeline.rl.replay import Decisions, replay_policies
from himari_pipeline.vocabulary import ACTIONS, NUM_ACTIONS

LogFn = Callable[[int, dict[str, float]], None]


def seed_everything(seed: int, torch_deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CleanRL's preamble)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - global seeding is the point here
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic


class TensorBoardLogger:
    """``log_fn`` that writes every finite scalar to TensorBoard under ``logdir``."""

    def __init__(self, logdir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(logdir))

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@dataclass
class Rollout:
    """One rollout, indexed (step, env). ``dones[k]``: obs k starts a new episode (CleanRL)."""

    obs_t: Tensor  # (S, N) long
    regimes: Tensor  # (S, N) long
    position_state: Tensor  # (S, N, 3)
    masks: Tensor  # (S, N, 3) bool
    actions: Tensor  # (S, N) long
    logprobs: Tensor
    values: Tensor
    rewards: Tensor
    dones: Tensor
    next_value: Tensor  # (N,)
    next_done: Tensor  # (N,)
    episode_returns: list[float] = field(default_factory=list)
    advantages: Tensor | None = None
    returns: Tensor | None = None


@dataclass
class EvalResult:
    """Validation run: scalar metrics plus the raw per-bar series of each mode (greedy, temperature)."""

    metrics: dict[str, float]
    series: dict[str, dict[str, Tensor]]  # mode -> t, action, position, net_return, regime


@dataclass
class _ObsView:
    t: Tensor
    position_state: Tensor


def make_train_env(
    market: MarketArrays | Sequence[MarketArrays],
    cfg: EnvConfig,
    num_envs: int,
    device: torch.device,
    seed: int,
) -> tuple[MarketArrays, VecTradingEnv]:
    """The market the policy encodes and the env that steps it.

    Several markets (e.g. a market and its mirror image) become independent segments of one market
    (:meth:`MarketArrays.concat`): every episode starts at a decision row drawn uniformly from all
    segments' start rows and ends inside its segment, so with a mirror of equal length each episode
    plays the market or its mirror image with probability 1/2.
    """
    joined = market if isinstance(market, MarketArrays) else MarketArrays.concat(market)
    return joined, VecTradingEnv(joined, cfg, num_envs, device, seed)


def return_metrics(net: Tensor, bars_per_year: float | None) -> dict[str, float]:
    """Mean, std, per-bar and annualised Sharpe, compounded total return of per-bar net returns."""
    net = net.double()
    mean = float(net.mean()) if net.numel() else float("nan")
    std = float(net.std()) if net.numel() > 1 else float("nan")
    sharpe = mean / std if std and math.isfinite(std) and std > 0 else float("nan")
    ann = sharpe * math.sqrt(bars_per_year) if bars_per_year else float("nan")
    total = float(torch.prod(1.0 + net) - 1.0) if net.numel() else float("nan")
    return {"mean": mean, "std": std, "sharpe_per_bar": sharpe, "sharpe": ann, "total_return": total}


def eval_result(
    modes: list[str], rows: list[Decisions], market: MarketArrays, bars_per_year: float
) -> EvalResult:
    """Per-mode series (as tensors on the market's device) and metrics of one policy's replays."""
    metrics: dict[str, float] = {}
    series: dict[str, dict[str, Tensor]] = {}
    dev = market.device
    for mode, d in zip(modes, rows, strict=True):
        s = {
            "t": torch.from_numpy(d.t).to(dev),
            "action": torch.from_numpy(d.action).to(dev),
            "position": torch.from_numpy(d.position).to(dev, torch.float32),
            "net_return": torch.from_numpy(d.net_return).to(dev),
            "entropy": torch.from_numpy(d.entropy).to(dev, torch.float32),
        }
        s["regime"] = market.regime_ids[s["t"]]
        series[mode] = s
        stats = return_metrics(s["net_return"], bars_per_year)
        stats.update(action_shares(s["action"], s["regime"]))
        stats["trades"] = float((s["position"].diff() != 0).sum() + (s["position"][0] != 0))
        stats["entropy"] = float(s["entropy"].mean())
        stats["n_bars"] = float(s["t"].numel())
        metrics.update({f"{mode}_{k}": v for k, v in stats.items()})
    return EvalResult(metrics, series)


def evaluate_policies(
    policies: Sequence[RegimeConditionedPolicy],
    market: MarketArrays,
    env_cfg: EnvConfig,
    cfg: PPOConfig,
    seeds: Sequence[int],
) -> list[EvalResult]:
    """Validation of each policy over the whole ``market`` (first full window to the last bar with a
    next return), one result per policy, all replayed together (:mod:`himari_pipeline.rl.replay`).

    Modes: ``greedy`` (argmax, when ``cfg.eval_greedy``) and ``temp`` (sampling at
    ``cfg.eval_temperature`` with uniforms seeded by the policy's seed, or ``cfg.eval_seed``: the same
    noise at every evaluation). Net return per bar = pnl - costs.
    """
    if market.segment_starts is not None and len(market.segment_starts) > 1:
        raise ValueError("validation runs over one segment; got a market of several")
    modes = (["greedy"] if cfg.eval_greedy else []) + ["temp"]
    series = market.replay_series
    temps = [None if mode == "greedy" else cfg.eval_temperature for mode in modes]
    pols, rows_t, rows_s = [], [], []
    for pol, seed in zip(policies, seeds, strict=True):
        pol.eval()
        pols += [pol] * len(modes)
        rows_t += temps
        rows_s += [seed if cfg.eval_seed is None else cfg.eval_seed] * len(modes)
    rows = replay_policies(pols, [series] * len(pols), env_cfg, rows_t, rows_s, with_entropy=True)
    bpy = cfg.bars_per_year or env_cfg.bars_per_year
    k = len(modes)
    return [eval_result(modes, rows[i * k : (i + 1) * k], market, bpy) for i in range(len(policies))]


class PPOTrainer:
    """Trains a :class:`RegimeConditionedPolicy` with PPO on ``train_market``; validates on ``val_market``.

    Build the policy right after :func:`seed_everything` so its initial weights are seeded too. The
    trainer samples actions and minibatch orders from its own generator (seeded by ``ppo_cfg.seed``),
    and validation sampling from a fresh one, so evaluating never shifts training randomness.
    """

    def __init__(
        self,
        policy: RegimeConditionedPolicy,
        train_market: MarketArrays | Sequence[MarketArrays],
        env_cfg: EnvConfig,
        ppo_cfg: PPOConfig,
        val_market: MarketArrays | None = None,
        log_fn: LogFn | None = None,
        checkpoint_dir: str | Path | None = None,
        provenance: dict | None = None,
    ) -> None:
        self.cfg = ppo_cfg
        self.device = torch.device(ppo_cfg.device)
        torch.backends.cudnn.deterministic = ppo_cfg.torch_deterministic
        self.policy = policy.to(self.device)
        self.val_market = val_market
        context = policy.cfg.context
        if env_cfg.context < context:  # decisions need a full feature window
            env_cfg = dataclasses.replace(env_cfg, context=context)
        self.env_cfg = env_cfg
        self.log_fn = log_fn
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.provenance = dict(provenance or {})  # written into every checkpoint's JSON
        self.train_market, self.env = make_train_env(
            train_market, env_cfg, ppo_cfg.num_envs, self.device, ppo_cfg.seed
        )
        self.optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=ppo_cfg.learning_rate, eps=ppo_cfg.adam_eps
        )
        self.gen = torch.Generator(device=self.device)  # actions and minibatch order; never the global RNG
        self.gen.manual_seed(ppo_cfg.seed)
        self.global_step = 0
        self.iteration = 0
        self.next_eval = ppo_cfg.first_eval
        self.best = BestTracker(ppo_cfg.select_metric, ppo_cfg.select_mode, ppo_cfg.patience)
        self.collapse_detector = CollapseDetector(ppo_cfg.collapse_max_share, ppo_cfg.collapse_entropy_floor)
        self.collapsed = False
        self.collapse_reasons: list[str] = []
        self.stop_reason: str | None = None
        self.eval_history: list[dict] = []
        self.last_train_stats: dict[str, float] = {}
        self._next_obs: _ObsView | None = None
        self._next_done: Tensor | None = None

    # ------------------------------------------------------------------ schedules
    def lr_at(self, iteration: int) -> float:
        return lr_at(self.cfg, iteration)

    def ent_coef_at(self, iteration: int) -> float:
        return ent_coef_at(self.cfg, iteration)

    # ------------------------------------------------------------------ the loop
    def train(self, max_iterations: int | None = None) -> dict:
        """Run PPO until ``total_timesteps`` (or ``max_iterations`` more updates, or an early stop)."""
        cfg = self.cfg
        if self._next_obs is None:
            obs = self.env.reset()
            self._next_obs = _ObsView(obs.t, obs.position_state)
            self._next_done = torch.zeros(cfg.num_envs, dtype=torch.bool, device=self.device)
        start_time, start_step, done_here = time.time(), self.global_step, 0
        while self.iteration < cfg.num_iterations and self.stop_reason is None:
            if max_iterations is not None and done_here >= max_iterations:
                break
            self.iteration += 1
            done_here += 1
            lr, ent_coef = self.lr_at(self.iteration), self.ent_coef_at(self.iteration)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

            rollout = self.collect_rollout()
            self.compute_gae(rollout)
            stats = self.update(rollout, ent_coef)

            sps = (self.global_step - start_step) / max(time.time() - start_time, 1e-9)
            log = {
                "charts/learning_rate": lr,
                "charts/ent_coef": ent_coef,
                "charts/SPS": sps,
                **iteration_log(
                    rollout.values, rollout.returns, rollout.rewards, rollout.episode_returns, stats,
                    rollout.actions, rollout.regimes,
                ),
            }  # fmt: skip
            self.last_train_stats = log
            if self.log_fn is not None:
                self.log_fn(self.global_step, log)

            if self.val_market is not None and self.global_step >= self.next_eval:
                while self.next_eval <= self.global_step:
                    self.next_eval += cfg.eval_every
                self.evaluate_and_checkpoint()
        return {
            "global_step": self.global_step,
            "iteration": self.iteration,
            "best_step": self.best.best_step,
            "best_value": self.best.best_value,
            "collapsed": self.collapsed,
            "stop_reason": self.stop_reason,
        }

    # ------------------------------------------------------------------ rollout
    def _policy_step(self, enc: Tensor, t: Tensor, position_state: Tensor, mask: Tensor | None):
        logits, value = self.policy.heads(enc, self.train_market.regime_ids[t], position_state)
        return masked_logits(logits, mask), value

    @torch.no_grad()
    def collect_rollout(self) -> Rollout:
        """``num_steps`` steps of every env; encodings come from one-pass stretches per env."""
        cfg, env, m = self.cfg, self.env, self.train_market
        S, N, dev = cfg.num_steps, cfg.num_envs, self.device
        last_bar = m.features.shape[0] - 1
        self.policy.eval()
        obs, done = self._next_obs, self._next_done
        obs_t = torch.zeros(S, N, dtype=torch.long, device=dev)
        pos = torch.zeros(S, N, obs.position_state.shape[-1], device=dev)
        masks = torch.zeros(S, N, NUM_ACTIONS, dtype=torch.bool, device=dev)
        actions = torch.zeros(S, N, dtype=torch.long, device=dev)
        logprobs, values, rewards = (torch.zeros(S, N, device=dev) for _ in range(3))
        dones = torch.zeros(S, N, dtype=torch.bool, device=dev)
        enc = torch.zeros(N, S + 1, self.policy.cfg.d_model, device=dev)
        bar_of = torch.full((N, S + 1), -1, dtype=torch.long, device=dev)
        episode_returns: list[float] = []

        def refresh(k: int, t: Tensor) -> None:
            """(Re)encode, for envs whose bar at step k is not cached, bars t .. t + S - k at once."""
            stale = (bar_of[:, k] != t).nonzero().squeeze(-1)
            if stale.numel():
                rows = (t[stale, None] + torch.arange(S + 1 - k, device=dev)[None]).clamp(max=last_bar)
                enc[stale, k:] = self.policy.encode_indices(m.features, m.regime_ids, rows)
                bar_of[stale, k:] = rows

        for k in range(S):
            refresh(k, obs.t)
            mask = env.action_mask()
            logits, value = self._policy_step(enc[:, k], obs.t, obs.position_state.float(), mask)
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen).squeeze(-1)
            obs_t[k], pos[k], masks[k], dones[k] = obs.t, obs.position_state, mask, done
            actions[k], values[k] = action, value
            logprobs[k] = torch.log_softmax(logits, -1).gather(-1, action[:, None]).squeeze(-1)

            next_obs, reward, done, info = env.step(action)
            reward = reward.to(dev, torch.float32).clone()
            truncated = info["truncated"]
            if cfg.bootstrap_truncated and bool(truncated.any()):
                idx = truncated.nonzero().squeeze(-1)
                final = info["final_obs"]
                f_enc = self.policy.encode_indices(m.features, m.regime_ids, final.t[idx])
                _, f_val = self._policy_step(f_enc, final.t[idx], final.position_state[idx].float(), None)
                reward[idx] += cfg.gamma * f_val
            rewards[k] = reward
            if bool(done.any()):
                episode_returns += info["episode_return"][done].double().tolist()
            obs, done = _ObsView(next_obs.t.clone(), next_obs.position_state.clone()), done.bool()
            self.global_step += N

        refresh(S, obs.t)
        _, next_value = self._policy_step(enc[:, S], obs.t, obs.position_state.float(), None)
        self._next_obs, self._next_done = obs, done
        return Rollout(
            obs_t, m.regime_ids[obs_t], pos, masks, actions, logprobs, values, rewards, dones,
            next_value, done.clone(), episode_returns,
        )  # fmt: skip

    def compute_gae(self, r: Rollout) -> None:
        """Generalised advantage estimation (CleanRL's recursion); fills ``advantages`` and ``returns``."""
        r.advantages, r.returns = gae(
            r.rewards, r.values, r.dones, r.next_value, r.next_done, self.cfg.gamma, self.cfg.gae_lambda
        )

    # ------------------------------------------------------------------ update
    def minibatch_loss(
        self, r: Rollout, env_idx: Tensor, ent_coef: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Clipped PPO loss over all steps of the envs ``env_idx`` (one encoder pass per env stretch)."""
        cfg, m = self.cfg, self.train_market
        t = r.obs_t[:, env_idx]
        enc = self.policy.encode_indices(m.features, m.regime_ids, t).reshape(-1, self.policy.cfg.d_model)
        sel = (slice(None), env_idx)
        logits, newvalue = self.policy.heads(
            enc, r.regimes[sel].reshape(-1), r.position_state[sel].reshape(enc.shape[0], -1).float()
        )
        logits = masked_logits(logits, r.masks[sel].reshape(-1, NUM_ACTIONS))
        newlogprob, entropy = logprob_and_entropy(logits, r.actions[sel].reshape(-1))
        loss, stats = clipped_losses(
            cfg, newlogprob, r.logprobs[sel].reshape(-1), r.advantages[sel].reshape(-1), newvalue,
            r.values[sel].reshape(-1), r.returns[sel].reshape(-1), entropy, ent_coef,
        )  # fmt: skip
        # reported entropy: over decisions with a choice (min-hold/cooldown masks force the rest, whose
        # entropy is 0 by construction and would read as a collapse); NaN when every decision was forced
        free = r.masks[sel].reshape(-1, NUM_ACTIONS).sum(-1) > 1
        free_entropy = entropy[free].mean() if bool(free.any()) else entropy.new_tensor(float("nan"))
        stats["entropy"] = free_entropy.detach()
        return loss, stats

    @torch.no_grad()
    def loss_on(self, r: Rollout, ent_coef: float) -> dict[str, float]:
        """The PPO loss over the whole rollout with the current weights (diagnostics and tests)."""
        env_idx = torch.arange(self.cfg.num_envs, device=self.device)
        return {k: float(v) for k, v in self.minibatch_loss(r, env_idx, ent_coef)[1].items()}

    def update(self, r: Rollout, ent_coef: float) -> dict[str, float]:
        """``update_epochs`` passes over env minibatches; stops early when approx KL > ``target_kl``."""
        cfg = self.cfg
        self.policy.train()
        envs_per_mb = cfg.num_envs // cfg.num_minibatches
        history: list[dict[str, Tensor]] = []
        epochs_done = 0
        for _ in range(cfg.update_epochs):
            perm = torch.randperm(cfg.num_envs, generator=self.gen, device=self.device)
            for start in range(0, cfg.num_envs, envs_per_mb):
                loss, stats = self.minibatch_loss(r, perm[start : start + envs_per_mb], ent_coef)
                self.optimizer.zero_grad()
                loss.backward()
                stats["grad_norm"] = nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                history.append(stats)
            epochs_done += 1
            if cfg.target_kl is not None and float(history[-1]["approx_kl"]) > cfg.target_kl:
                break
        self.policy.eval()
        last = history[-1]
        out = {
            k: float(last[k]) for k in ("policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl")
        }
        out["clipfrac"] = float(torch.stack([h["clipfrac"] for h in history]).mean())
        out["grad_norm"] = float(torch.stack([h["grad_norm"] for h in history]).mean())
        out["epochs"] = float(epochs_done)
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, market: MarketArrays | None = None) -> EvalResult:
        """Greedy and tempered replays of the policy over the whole series (:func:`evaluate_policies`)."""
        market = market if market is not None else self.val_market
        if market is None:
            raise ValueError("no validation market")
        return evaluate_policies([self.policy], market, self.env_cfg, self.cfg, [self.cfg.seed])[0]

    def evaluate_and_checkpoint(self) -> EvalResult:
        """Validate, update best / patience / collapse flags, log, and save a checkpoint."""
        result = self.evaluate()
        metrics = dict(result.metrics)
        mode = "greedy" if self.cfg.eval_greedy else "temp"
        shares = [metrics[f"{mode}_share_{a}"] for a in ACTIONS]
        status = self.collapse_detector.check(shares, self.last_train_stats.get("losses/entropy"))
        if status.collapsed:
            self.collapsed = True
            self.collapse_reasons = status.reasons
            if self.cfg.stop_on_collapse:
                self.stop_reason = "collapse: " + "; ".join(status.reasons)
        metrics["collapsed"] = float(status.collapsed)
        record_evaluation(
            self.best, self.global_step, metrics, self.eval_history, self.log_fn, self.checkpoint_dir,
            lambda path, m: self.save(path, metrics=m), self._stop,
        )  # fmt: skip
        return result

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:  # a collapse stop found first stays the reason
            self.stop_reason = reason

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        """Everything needed to resume exactly: weights, optimizer, RNGs, env state, counters."""
        opt_tensors, opt_meta = optimizer_to_flat(self.optimizer)
        state = {"rng.trainer": self.gen.get_state(), "rng.torch": torch.get_rng_state()}
        if self._next_obs is not None:
            state["next_obs.t"] = self._next_obs.t
            state["next_obs.position_state"] = self._next_obs.position_state
            state["next_done"] = self._next_done
        env_tensors, env_meta = env_state(self.env)
        state.update({f"env.{k}": v for k, v in env_tensors.items()})
        meta = {
            "format": "himari-ppo-checkpoint/1",
            "step": self.global_step,
            "iteration": self.iteration,
            "next_eval": self.next_eval,
            "policy_config": self.policy.cfg.to_dict(),
            "ppo_config": self.cfg,
            "env_config": self.env_cfg,
            "metrics": metrics or {},
            "best": self.best.to_dict(),
            "collapsed": self.collapsed,
            "collapse_reasons": self.collapse_reasons,
            "stop_reason": self.stop_reason,
            "eval_history": self.eval_history,
            "optimizer": opt_meta,
            "env_state": env_meta,
            **self.provenance,
        }
        return save_checkpoint(
            path, model=self.policy.state_dict(), optimizer=opt_tensors, state=state, meta=meta
        )

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save` into this (freshly built) trainer."""
        ck = load_checkpoint(path, device=self.device)
        meta = ck.meta
        saved_cfg = PolicyConfig.from_dict(meta["policy_config"])
        if saved_cfg != self.policy.cfg:
            raise ValueError(f"checkpoint policy config {saved_cfg} differs from {self.policy.cfg}")
        self.policy.load_state_dict(ck.model, strict=True)
        optimizer_from_flat(self.optimizer, ck.optimizer, meta["optimizer"])
        self.gen.set_state(ck.state["rng.trainer"])
        torch.set_rng_state(ck.state["rng.torch"])
        env_tensors = {k[4:]: v for k, v in ck.state.items() if k.startswith("env.")}
        load_env_state(self.env, env_tensors, meta["env_state"])
        if "next_obs.t" in ck.state:
            self._next_obs = _ObsView(
                ck.state["next_obs.t"].to(self.device), ck.state["next_obs.position_state"].to(self.device)
            )
            self._next_done = ck.state["next_done"].to(self.device)
        self.global_step, self.iteration, self.next_eval = meta["step"], meta["iteration"], meta["next_eval"]
        self.best = BestTracker.from_dict(meta["best"])
        self.collapsed, self.collapse_reasons = meta["collapsed"], meta["collapse_reasons"]
        self.stop_reason = meta["stop_reason"]
        self.eval_history = meta["eval_history"]


__all__ = [
    "EvalResult",
    "PPOConfig",
    "PPOTrainer",
    "Rollout",
    "TensorBoardLogger",
    "action_shares",
    "evaluate_policies",
    "explained_variance",
    "return_metrics",
    "seed_everything",
]
