"""PPO for a population of seeds in one process: S policies stacked on a leading seed axis.

Kept whole: one trainer loop (rollout, update, evaluation, checkpoints) that mirrors
:class:`~himari_pipeline.rl.ppo.PPOTrainer` step by step, so the two read side by side.

Each seed keeps everything a single-seed run has of its own: initial weights (built after seeding
with that seed), its vector env and env RNG, its action / minibatch generator, its Adam moments and
step count, its KL early stop, its validation selection and its checkpoint folder. What is shared is
the work: every per-step action choice, the rollouts' value bootstraps and every validation step
run the S policies' heads as one batched call (batched matrix products over the stacked
parameters), and the optimizer updates all seeds with one set of tensor operations. The encoder
runs once per seed on the same stacked parameters (``torch.func.functional_call`` on a seed's
slice): its matrix products already fill the CPU, so batching them would only add work.

The update is the one of :class:`~himari_pipeline.rl.ppo.PPOTrainer` per seed: the summed loss has
each seed's gradients on its own slice of the stacked parameters; gradient clipping uses each seed's
own norm and :class:`~himari_pipeline.rl.stacked_policies.StackedAdam` is Adam per slice. The numbers
are not bit-identical to single-seed runs (batched kernels round differently), the algorithm is the
same. The formulas are :mod:`himari_pipeline.rl.ppo_math`'s, the stacked policies and optimizer
:mod:`himari_pipeline.rl.stacked_policies`'.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from himari_pipeline.rl.checkpoints import (
    BestTracker,
    CollapseDetector,
    env_state,
    load_checkpoint,
    load_env_state,
    save_checkpoint,
    write_best_pointer,
)
from himari_pipeline.rl.env import EnvConfig, MarketArrays
from himari_pipeline.rl.policy import PolicyConfig, RegimeConditionedPolicy, masked_logits
from himari_pipeline.rl.ppo import (
    EvalResult,
    LogFn,
    PPOConfig,
    evaluate_policies,
    make_train_env,
    seed_everything,
)
from himari_pipeline.rl.ppo_math import (
    clipped_losses,
    ent_coef_at,
    gae,
    iteration_log,
    logprob_and_entropy,
    lr_at,
)
from himari_pipeline.rl.stacked_policies import StackedAdam, StackedPolicies
from himari_pipeline.vocabulary import ACTIONS, NUM_ACTIONS

__all__ = ["StackedPPOTrainer", "evaluate_stack", "seed_run_dir"]

FORMAT = "himari-ppo-population-checkpoint/1"


def seed_run_dir(out_dir: str | Path, seed: int) -> Path:
    """The checkpoint folder of one seed of a population."""
    return Path(out_dir) / f"seed_{int(seed)}"


@dataclasses.dataclass
class _StackedRollout:
    """One rollout of every seed, indexed (step, seed, env)."""

    obs_t: Tensor
    position_state: Tensor
    masks: Tensor
    actions: Tensor
    logprobs: Tensor
    values: Tensor
    rewards: Tensor
    dones: Tensor
    next_value: Tensor  # (S, N)
    next_done: Tensor
    episode_returns: list[list[float]]
    advantages: Tensor | None = None
    returns: Tensor | None = None


def _take(x: Tensor, env_idx: Tensor) -> Tensor:
    """(steps, S, N, ...) at envs ``env_idx`` (S, E) of each seed -> (S, steps * E, ...)."""
    xt = x.transpose(0, 1)
    s, k = xt.shape[:2]
    dev = x.device
    out = xt[
        torch.arange(s, device=dev)[:, None, None],
        torch.arange(k, device=dev)[None, :, None],
        env_idx[:, None, :],
    ]
    return out.reshape(s, k * env_idx.shape[1], *x.shape[3:])


def _ragged(items: list[Tensor]) -> tuple[Tensor, list[int]]:
    """Stack per-seed 1-D index tensors of different lengths, padding by repetition (never empty)."""
    counts = [int(i.numel()) for i in items]
    m = max(max(counts), 1)
    padded = []
    for i in items:
        base = i if i.numel() else torch.zeros(1, dtype=i.dtype, device=i.device)
        padded.append(torch.cat([base, base[-1:].expand(m - base.numel())]))
    return torch.stack(padded), counts


@torch.no_grad()
def evaluate_stack(
    stack: StackedPolicies, market: MarketArrays, env_cfg: EnvConfig, cfg: PPOConfig, seeds: Sequence[int]
) -> list[EvalResult]:
    """Every stacked policy over the whole ``market``, one result per seed, replayed together exactly as
    :meth:`PPOTrainer.evaluate <himari_pipeline.rl.ppo.PPOTrainer.evaluate>` replays one policy."""
    stack.train(False)
    return evaluate_policies([stack.policy(s) for s in range(stack.n)], market, env_cfg, cfg, seeds)


class StackedPPOTrainer:
    """PPO over ``ppo_cfg.seeds`` at once; checkpoints of seed ``s`` under ``checkpoint_dir/seed_<s>``."""

    def __init__(
        self,
        train_market: MarketArrays | Sequence[MarketArrays],
        env_cfg: EnvConfig,
        ppo_cfg: PPOConfig,
        policy_cfg: PolicyConfig,
        val_market: MarketArrays | None = None,
        log_fn: LogFn | None = None,
        checkpoint_dir: str | Path | None = None,
        provenance: dict | None = None,
    ) -> None:
        if not ppo_cfg.seeds:
            raise ValueError("a population needs ppo_cfg.seeds")
        self.cfg = ppo_cfg
        self.seeds = list(ppo_cfg.seeds)
        self.device = torch.device(ppo_cfg.device)
        if env_cfg.context < policy_cfg.context:
            env_cfg = dataclasses.replace(env_cfg, context=policy_cfg.context)
        self.env_cfg = env_cfg
        policies = []
        for seed in self.seeds:  # each seed's initial weights as a single-seed run builds them
            seed_everything(seed, ppo_cfg.torch_deterministic)
            policies.append(RegimeConditionedPolicy(policy_cfg).to(self.device))
        self.stack = StackedPolicies(policies)
        self.envs = []
        for seed in self.seeds:
            self.train_market, env = make_train_env(
                train_market, env_cfg, ppo_cfg.num_envs, self.device, seed
            )
            self.envs.append(env)
        self.val_market = val_market
        self.log_fn = log_fn
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.provenance = dict(provenance or {})
        self.optimizer = StackedAdam(self.stack.params, eps=ppo_cfg.adam_eps)
        self.gens = [torch.Generator(device=self.device).manual_seed(s) for s in self.seeds]
        self.global_step = 0  # env steps of each seed
        self.iteration = 0
        self.next_eval = ppo_cfg.first_eval
        self.best = [
            BestTracker(ppo_cfg.select_metric, ppo_cfg.select_mode, ppo_cfg.patience) for _ in self.seeds
        ]
        self.collapse_detector = CollapseDetector(ppo_cfg.collapse_max_share, ppo_cfg.collapse_entropy_floor)
        self.collapsed = [False] * len(self.seeds)
        self.collapse_reasons: list[list[str]] = [[] for _ in self.seeds]
        self.eval_history: list[list[dict]] = [[] for _ in self.seeds]
        self.stop_reason: list[str | None] = [None] * len(self.seeds)
        self.last_entropy = [float("nan")] * len(self.seeds)
        self._next_t: Tensor | None = None  # (S, N)
        self._next_pos: Tensor | None = None  # (S, N, 3)
        self._next_done: Tensor | None = None

    @property
    def n(self) -> int:
        return len(self.seeds)

    def seed_config(self, s: int) -> PPOConfig:
        """Seed ``s``'s run as a single-seed config (what its checkpoints record)."""
        return dataclasses.replace(self.cfg, seed=self.seeds[s], seeds=None)

    # ------------------------------------------------------------------ the loop
    def _reset(self) -> None:
        obs = [env.reset() for env in self.envs]
        self._next_t = torch.stack([o.t for o in obs])
        self._next_pos = torch.stack([o.position_state for o in obs])
        self._next_done = torch.zeros(self.n, self.cfg.num_envs, dtype=torch.bool, device=self.device)

    def train(self, max_iterations: int | None = None) -> dict:
        """Run to ``total_timesteps`` per seed (or ``max_iterations`` more updates, or all seeds stopped)."""
        cfg = self.cfg
        if self._next_t is None:
            self._reset()
        start_time, start_step, done_here = time.time(), self.global_step, 0
        while self.iteration < cfg.num_iterations and not all(r is not None for r in self.stop_reason):
            if max_iterations is not None and done_here >= max_iterations:
                break
            self.iteration += 1
            done_here += 1
            lr, ent_coef = lr_at(cfg, self.iteration), ent_coef_at(cfg, self.iteration)
            rollout = self.collect_rollout()
            self.compute_gae(rollout)
            stats = self.update(rollout, ent_coef, lr)
            sps = (self.global_step - start_step) * self.n / max(time.time() - start_time, 1e-9)
            self._log_iteration(rollout, stats, lr, ent_coef, sps)
            if self.val_market is not None and self.global_step >= self.next_eval:
                while self.next_eval <= self.global_step:
                    self.next_eval += cfg.eval_every
                self.evaluate_and_checkpoint()
        return {"global_step": self.global_step, "iteration": self.iteration}

    def _log_iteration(
        self, r: _StackedRollout, stats: list[dict], lr: float, ent: float, sps: float
    ) -> None:
        per_seed = []
        for s in range(self.n):
            log = iteration_log(
                r.values[:, s], r.returns[:, s], r.rewards[:, s], r.episode_returns[s], stats[s],
                r.actions[:, s],
            )  # fmt: skip
            self.last_entropy[s] = stats[s]["entropy"]
            per_seed.append(log)
        if self.log_fn is None:
            return
        merged = {"charts/learning_rate": lr, "charts/ent_coef": ent, "charts/SPS": sps}
        for key in per_seed[0]:
            values = np.array([p[key] for p in per_seed], dtype=float)
            # the population line: the worst seed for the scale checks, the mean otherwise
            worst = key in ("rollout/reward_mean", "rollout/reward_std", "losses/value_loss")
            merged[key] = (
                float(values[np.nanargmax(np.abs(values))])
                if worst and np.isfinite(values).any()
                else float(np.nanmean(values))
                if np.isfinite(values).any()
                else float("nan")
            )
            merged.update(
                {f"seed_{seed}/{key}": float(v) for seed, v in zip(self.seeds, values, strict=True)}
            )
        self.log_fn(self.global_step, merged)

    # ------------------------------------------------------------------ rollout
    def _heads(self, enc: Tensor, t: Tensor, pos: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        logits, value = self.stack.heads(enc, self.train_market.regime_ids[t], pos)
        return masked_logits(logits, mask), value

    @torch.no_grad()
    def collect_rollout(self) -> _StackedRollout:
        cfg, m, dev = self.cfg, self.train_market, self.device
        K, S, N = cfg.num_steps, self.n, cfg.num_envs
        last_bar = m.features.shape[0] - 1
        self.stack.train(False)
        t, pos, done = self._next_t, self._next_pos, self._next_done
        obs_t = torch.zeros(K, S, N, dtype=torch.long, device=dev)
        poss = torch.zeros(K, S, N, pos.shape[-1], device=dev)
        masks = torch.zeros(K, S, N, NUM_ACTIONS, dtype=torch.bool, device=dev)
        actions = torch.zeros(K, S, N, dtype=torch.long, device=dev)
        logprobs, values, rewards = (torch.zeros(K, S, N, device=dev) for _ in range(3))
        dones = torch.zeros(K, S, N, dtype=torch.bool, device=dev)
        enc = torch.zeros(S, N, K + 1, self.stack.cfg.d_model, device=dev)
        bar_of = torch.full((S, N, K + 1), -1, dtype=torch.long, device=dev)
        episode_returns: list[list[float]] = [[] for _ in range(S)]

        def refresh(k: int, t: Tensor) -> None:
            stale = bar_of[:, :, k] != t
            if not bool(stale.any()):
                return
            idx, counts = _ragged([row.nonzero().squeeze(-1) for row in stale])
            start = torch.gather(t, 1, idx)
            rows = (start[..., None] + torch.arange(K + 1 - k, device=dev)).clamp(max=last_bar)
            e = self.stack.encode(m.features, m.regime_ids, list(rows))
            for s, c in enumerate(counts):
                if c:
                    enc[s, idx[s, :c], k:] = e[s, :c]
                    bar_of[s, idx[s, :c], k:] = rows[s, :c]

        for k in range(K):
            refresh(k, t)
            mask = torch.stack([env.action_mask() for env in self.envs])
            logits, value = self._heads(enc[:, :, k], t, pos.float(), mask)
            probs = torch.softmax(logits, -1)
            action = torch.stack(
                [torch.multinomial(probs[s], 1, generator=self.gens[s]).squeeze(-1) for s in range(S)]
            )
            obs_t[k], poss[k], masks[k], dones[k] = t, pos, mask, done
            actions[k], values[k] = action, value
            logprobs[k] = torch.log_softmax(logits, -1).gather(-1, action[..., None]).squeeze(-1)
            steps = [env.step(action[s]) for s, env in enumerate(self.envs)]
            reward = torch.stack([st[1] for st in steps]).to(dev, torch.float32)
            done = torch.stack([st[2] for st in steps]).bool()
            infos = [st[3] for st in steps]
            trunc = torch.stack([i["truncated"] for i in infos])
            if cfg.bootstrap_truncated and bool(trunc.any()):
                idx, counts = _ragged([row.nonzero().squeeze(-1) for row in trunc])
                final_t = torch.stack([i["final_obs"].t for i in infos])
                final_pos = torch.stack([i["final_obs"].position_state for i in infos])
                ft = torch.gather(final_t, 1, idx)
                fp = final_pos[torch.arange(S, device=dev)[:, None], idx]
                f_enc = self.stack.encode(m.features, m.regime_ids, list(ft))
                _, f_val = self._heads(f_enc, ft, fp.float(), None)
                for s, c in enumerate(counts):
                    if c:
                        reward[s, idx[s, :c]] += cfg.gamma * f_val[s, :c]
            rewards[k] = reward
            for s, info in enumerate(infos):
                if bool(done[s].any()):
                    episode_returns[s] += info["episode_return"][done[s]].double().tolist()
            t = torch.stack([st[0].t for st in steps]).clone()
            pos = torch.stack([st[0].position_state for st in steps]).clone()
            self.global_step += N

        refresh(K, t)
        _, next_value = self._heads(enc[:, :, K], t, pos.float(), None)
        self._next_t, self._next_pos, self._next_done = t, pos, done
        return _StackedRollout(
            obs_t,
            poss,
            masks,
            actions,
            logprobs,
            values,
            rewards,
            dones,
            next_value,
            done.clone(),
            episode_returns,
        )

    def compute_gae(self, r: _StackedRollout) -> None:
        r.advantages, r.returns = gae(
            r.rewards, r.values, r.dones, r.next_value, r.next_done, self.cfg.gamma, self.cfg.gae_lambda
        )

    # ------------------------------------------------------------------ update
    def minibatch_loss(
        self, r: _StackedRollout, env_idx: Tensor, ent_coef: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-seed clipped PPO losses (S,) over the envs ``env_idx[s]`` of each seed ``s``."""
        cfg, m = self.cfg, self.train_market
        t = _take(r.obs_t, env_idx)  # (S, B)
        enc = self.stack.encode(m.features, m.regime_ids, list(t))
        logits, newvalue = self.stack.heads(enc, m.regime_ids[t], _take(r.position_state, env_idx).float())
        mask = _take(r.masks, env_idx)
        logits = masked_logits(logits, mask)
        newlogprob, entropy = logprob_and_entropy(logits, _take(r.actions, env_idx))
        loss, stats = clipped_losses(
            cfg, newlogprob, _take(r.logprobs, env_idx), _take(r.advantages, env_idx), newvalue,
            _take(r.values, env_idx), _take(r.returns, env_idx), entropy, ent_coef, dim=1,
        )  # fmt: skip
        free = (mask.sum(-1) > 1).float()
        stats["entropy"] = ((entropy * free).sum(1) / free.sum(1)).detach()  # NaN: every decision forced
        return loss, stats

    def update(self, r: _StackedRollout, ent_coef: float, lr: float) -> list[dict[str, float]]:
        """``update_epochs`` passes per seed; a seed stops early when its approx KL > ``target_kl``.

        A seed whose run has stopped (patience, collapse) keeps its weights while the others train on.
        """
        cfg, S, dev = self.cfg, self.n, self.device
        self.stack.train(True)
        per_mb = cfg.num_envs // cfg.num_minibatches
        params = list(self.stack.params.values())
        names = list(self.stack.params)
        active = torch.tensor([r is None for r in self.stop_reason], dtype=torch.bool, device=dev)
        history: list[dict[str, Tensor]] = []
        epochs = torch.zeros(S, device=dev)
        last = [None] * S
        for _ in range(cfg.update_epochs):
            perms = torch.stack([torch.randperm(cfg.num_envs, generator=g, device=dev) for g in self.gens])
            for start in range(0, cfg.num_envs, per_mb):
                loss, stats = self.minibatch_loss(r, perms[:, start : start + per_mb], ent_coef)
                grads = torch.autograd.grad(loss.sum(), params)
                norms = torch.sqrt(sum(g.reshape(S, -1).pow(2).sum(1) for g in grads))
                coef = (cfg.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
                scaled = {
                    n: g * coef.view(-1, *([1] * (g.ndim - 1))) for n, g in zip(names, grads, strict=True)
                }
                self.optimizer.step(scaled, lr, active)
                stats["grad_norm"] = norms
                for s in range(S):
                    if bool(active[s]) or last[s] is None:
                        last[s] = {k: v[s] for k, v in stats.items()}
                history.append({**stats, "active": active.clone()})
            epochs += active.float()
            if cfg.target_kl is not None:
                active = active & ~(torch.stack([last[s]["approx_kl"] for s in range(S)]) > cfg.target_kl)
            if not bool(active.any()):
                break
        self.stack.train(False)
        out = []
        for s in range(S):
            rows = [h for h in history if bool(h["active"][s])] or history
            d = {
                k: float(last[s][k])
                for k in ("policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl")
            }
            d["clipfrac"] = float(torch.stack([h["clipfrac"][s] for h in rows]).mean())
            d["grad_norm"] = float(torch.stack([h["grad_norm"][s] for h in rows]).mean())
            d["epochs"] = float(epochs[s])
            out.append(d)
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, market: MarketArrays | None = None) -> list[EvalResult]:
        """Every seed over the whole series, greedy and tempered, as ``PPOTrainer.evaluate`` does."""
        market = market if market is not None else self.val_market
        if market is None:
            raise ValueError("no validation market")
        return evaluate_stack(self.stack, market, self.env_cfg, self.cfg, self.seeds)

    def evaluate_and_checkpoint(self) -> list:
        """Validate every seed; per seed update best / patience / collapse, log, save a checkpoint."""
        results = self.evaluate()
        mode = "greedy" if self.cfg.eval_greedy else "temp"
        logged: dict[str, float] = {}
        for s, result in enumerate(results):
            if self.stop_reason[s] is not None:
                continue
            metrics = dict(result.metrics)
            shares = [metrics[f"{mode}_share_{a}"] for a in ACTIONS]
            status = self.collapse_detector.check(shares, self.last_entropy[s])
            if status.collapsed:
                self.collapsed[s], self.collapse_reasons[s] = True, status.reasons
                if self.cfg.stop_on_collapse:
                    self.stop_reason[s] = "collapse: " + "; ".join(status.reasons)
            metrics["collapsed"] = float(status.collapsed)
            best = self.best[s]
            is_best = best.update(self.global_step, metrics)
            if best.should_stop and self.stop_reason[s] is None:
                self.stop_reason[s] = (
                    f"no improvement in {best.metric} for {best.evals_since_best} evaluations"
                )
            self.eval_history[s].append({"step": self.global_step, **metrics})
            logged.update({f"eval/seed_{self.seeds[s]}/{k}": v for k, v in metrics.items()})
            if self.checkpoint_dir is not None:
                run = seed_run_dir(self.checkpoint_dir, self.seeds[s])
                path = self.save_seed(s, run / f"step_{self.global_step:09d}", metrics)
                if is_best:
                    write_best_pointer(run, path, self.global_step, best.metric, best.best_value)
        if self.log_fn is not None and logged:
            key = f"{mode}_sharpe"
            vals = [v for k, v in logged.items() if k.endswith(f"/{key}")]
            logged[f"eval/{key}"] = float(np.nanmedian(vals)) if vals else float("nan")
            self.log_fn(self.global_step, logged)
        return results

    # ------------------------------------------------------------------ checkpoints
    def save_seed(self, s: int, path: str | Path, metrics: dict | None = None) -> Path:
        """Seed ``s``'s checkpoint: its policy (loadable like a single-seed one), optimizer, RNGs, env."""
        opt_tensors, opt_meta = self.optimizer.state(s)
        state = {"rng.trainer": self.gens[s].get_state(), "rng.torch": torch.get_rng_state()}
        if self._next_t is not None:
            state["next_obs.t"] = self._next_t[s]
            state["next_obs.position_state"] = self._next_pos[s]
            state["next_done"] = self._next_done[s]
        env_tensors, env_meta = env_state(self.envs[s])
        state.update({f"env.{k}": v for k, v in env_tensors.items()})
        meta = {
            "format": FORMAT,
            "step": self.global_step,
            "iteration": self.iteration,
            "next_eval": self.next_eval,
            "policy_config": self.stack.cfg.to_dict(),
            "ppo_config": self.seed_config(s),
            "env_config": self.env_cfg,
            "metrics": metrics or {},
            "best": self.best[s].to_dict(),
            "collapsed": self.collapsed[s],
            "collapse_reasons": self.collapse_reasons[s],
            "stop_reason": self.stop_reason[s],
            "eval_history": self.eval_history[s],
            "optimizer": opt_meta,
            "env_state": env_meta,
            "population": {"seeds": self.seeds, "seed": self.seeds[s]},
            **self.provenance,
        }
        return save_checkpoint(
            path, model=self.stack.state_dict(s), optimizer=opt_tensors, state=state, meta=meta
        )

    def save_all(self, out_dir: str | Path) -> list[Path]:
        """An end-of-call checkpoint of every seed (no metrics) under ``out_dir/seed_<s>``."""
        return [
            self.save_seed(s, seed_run_dir(out_dir, seed) / f"step_{self.global_step:09d}")
            for s, seed in enumerate(self.seeds)
        ]

    def load(self, paths: Sequence[str | Path]) -> None:
        """Resume from one checkpoint per seed (in ``seeds`` order), all written at the same step."""
        cks = [load_checkpoint(p, device=self.device) for p in paths]
        if len(cks) != self.n or len({ck.meta["step"] for ck in cks}) != 1:
            raise ValueError("resuming a population needs one checkpoint per seed, all at the same step")
        for s, ck in enumerate(cks):
            meta = ck.meta
            if meta.get("format") != FORMAT or meta["population"]["seed"] != self.seeds[s]:
                raise ValueError(f"{paths[s]}: not seed {self.seeds[s]} of a population checkpoint")
            if PolicyConfig.from_dict(meta["policy_config"]) != self.stack.cfg:
                raise ValueError(f"{paths[s]}: policy config differs")
            self.stack.load_state_dict(s, ck.model)
            self.optimizer.load(s, ck.optimizer, meta["optimizer"])
            self.gens[s].set_state(ck.state["rng.trainer"])
            load_env_state(
                self.envs[s],
                {k[4:]: v for k, v in ck.state.items() if k.startswith("env.")},
                meta["env_state"],
            )
            self.best[s] = BestTracker.from_dict(meta["best"])
            self.collapsed[s], self.collapse_reasons[s] = meta["collapsed"], meta["collapse_reasons"]
            self.stop_reason[s] = meta["stop_reason"]
            self.eval_history[s] = meta["eval_history"]
        torch.set_rng_state(cks[-1].state["rng.torch"])
        if "next_obs.t" in cks[0].state:
            self._next_t = torch.stack([ck.state["next_obs.t"] for ck in cks]).to(self.device)
            self._next_pos = torch.stack([ck.state["next_obs.position_state"] for ck in cks]).to(self.device)
            self._next_done = torch.stack([ck.state["next_done"] for ck in cks]).to(self.device)
        meta = cks[0].meta
        self.global_step, self.iteration, self.next_eval = meta["step"], meta["iteration"], meta["next_eval"]
