"""Train a PPO policy to trade a pair's spread, and judge it like the rule.

The experiment is a frozen YAML file under ``experiments/pairs/`` (the same schema as the trading
experiments: policy, env, ppo, selection; its ``dataset`` names the default pair). The pair's costs,
borrow and leverage come from :class:`~himari_pipeline.pairs.evaluate.PairConfig` and its bars per
year from the legs' calendar. Training is the project's trainer (:class:`~himari_pipeline.rl.ppo.PPOTrainer`)
on the train segment's :class:`~himari_pipeline.rl.env.MarketArrays` with legs, validating greedily on
the validation segment every ``eval_every`` steps, the best validation Sharpe selected and, with
``patience``, early stopping (log 004's request). The selected checkpoint's greedy positions over
every bar (:func:`~himari_pipeline.rl.replay.replay_policies`, the env's own accounting) are the
subject of :func:`~himari_pipeline.pairs.evaluate.evaluate_pair`; every evaluated checkpoint is a
trial of its Deflated Sharpe.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from himari_pipeline.evaluation.report.checkpoints import load_policy_checkpoint
from himari_pipeline.pairs.evaluate import PairConfig, PairEvaluation, Subject, evaluate_pair, pair_plan
from himari_pipeline.pairs.features import pair_market
from himari_pipeline.pairs.legs import AlignedLegs
from himari_pipeline.rl.checkpoints import best_checkpoint
from himari_pipeline.rl.experiments import EXPERIMENTS_DIR, Experiment, list_experiments, load_experiment
from himari_pipeline.rl.policy import RegimeConditionedPolicy
from himari_pipeline.rl.ppo import PPOTrainer, seed_everything
from himari_pipeline.rl.replay import replay_policies
from himari_pipeline.rl.training import last_checkpoint

PAIR_EXPERIMENTS_DIR = EXPERIMENTS_DIR / "pairs"


def load_pair_experiment(name: str) -> Experiment:
    """A pair experiment by name (``experiments/pairs/NAME.yaml``), validated like any experiment."""
    known = list_experiments(PAIR_EXPERIMENTS_DIR, include_test=True)
    if name not in known:
        raise ValueError(f"unknown pair experiment {name!r}; known: {', '.join(known)}")
    exp = load_experiment(name, PAIR_EXPERIMENTS_DIR)
    unsupported = [k for k in ("seeds", "mirror") if exp.ppo.get(k)]
    if unsupported:
        raise ValueError(
            f"pair experiment {name!r}: ppo.{unsupported[0]} is not supported for pairs (one seed per "
            "experiment; the mirror image is a single-market option)"
        )
    return exp


@dataclass
class PairTraining:
    """What a pair training produced: the judged evaluation and where the checkpoints are."""

    evaluation: PairEvaluation
    checkpoint: Path
    evaluations: list[dict]
    steps: int
    stop_reason: str | None


def train_pair_policy(
    aligned: AlignedLegs, exp: Experiment, cfg: PairConfig, out_dir: str | Path
) -> PairTraining:
    """Train ``exp`` on the pair's train segment, select on validation, judge on every segment."""
    if exp.torch_threads:
        import torch

        torch.set_num_threads(int(exp.torch_threads))
    k = aligned.bars_per_year
    plan = pair_plan(aligned, cfg, context=exp.policy_config().context)
    pm = pair_market(aligned, cfg.spread, plan.ranges["train"])
    policy_cfg = exp.policy_config(n_features=len(pm.feature_names))
    env_cfg = dataclasses.replace(
        exp.env_config(),
        transaction_cost=cfg.transaction_cost,
        borrow_rate_annual=cfg.borrow_rate_annual,
        leverage=cfg.leverage,
        bars_per_year=k,
    )
    ppo_cfg = dataclasses.replace(exp.ppo_config(), bars_per_year=k)
    train_lo, train_hi = plan.ranges["train"]
    val_lo, val_hi = plan.ranges["val"]
    seed_everything(ppo_cfg.seed, ppo_cfg.torch_deterministic)
    trainer = PPOTrainer(
        RegimeConditionedPolicy(policy_cfg),
        pm.market(max(train_lo, pm.first_row), train_hi),
        env_cfg,
        ppo_cfg,
        val_market=pm.market(val_lo, val_hi),
        checkpoint_dir=Path(out_dir),
        provenance={"experiment": exp.name, "experiment_config": exp.to_dict(), "pair": list(aligned.names)},
    )
    trainer.train()
    best = best_checkpoint(out_dir)
    if best is None:  # no validation had a finite Sharpe (e.g. always flat): judge the last checkpoint
        best = last_checkpoint(out_dir)
    if best is None:
        raise RuntimeError(f"training wrote no checkpoint in {out_dir}")
    ck = load_policy_checkpoint(best)
    whole = pm.market(pm.first_row, len(aligned.timestamps))
    decisions = replay_policies([ck.policy], [whole.replay_series], ck.env_cfg)[0]
    positions = np.zeros(len(aligned.timestamps))
    positions[pm.first_row + decisions.t] = decisions.position / cfg.leverage
    sharpes = [h["greedy_sharpe_per_bar"] for h in trainer.eval_history]
    trials = np.array([v for v in sharpes if math.isfinite(v)])
    note = (
        f"PPO experiment `{exp.name}`, checkpoint {best.name} (best validation Sharpe of "
        f"{len(trainer.eval_history)} evaluations, {trainer.global_step} steps"
        + (f"; stopped: {trainer.stop_reason}" if trainer.stop_reason else "")
        + ")"
    )
    subject = Subject(f"ppo_{exp.name}", positions, trials, note, n_trials=max(1, len(sharpes)))
    evaluation = evaluate_pair(aligned, cfg, subject=subject, plan=plan)
    return PairTraining(evaluation, best, trainer.eval_history, trainer.global_step, trainer.stop_reason)
