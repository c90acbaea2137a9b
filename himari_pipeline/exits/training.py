"""Train an exit experiment on a dataset and judge the selected checkpoint.

Entries come from the experiment's entry rule over every bar (causal), split by the dataset's
segments (:meth:`~himari_pipeline.exits.data.ExitData.segment_entries`). PPO trains on the train
segment's entries and validates greedily on the validation entries every ``eval_every`` steps
(:class:`~himari_pipeline.exits.ppo.ExitPPOTrainer`); the best validation ``select_metric`` is
selected (``best.json``), and every evaluated checkpoint is a trial of the Deflated Sharpe. The
selected policy is then judged on every segment (:func:`~himari_pipeline.exits.verdict.evaluate_exits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from himari_pipeline.exits.data import ExitData
from himari_pipeline.exits.evaluate import policy_actions
from himari_pipeline.exits.experiments import ExitExperiment
from himari_pipeline.exits.verdict import ExitEvaluation, ExitSubject, evaluate_exits


@dataclass
class ExitTraining:
    """What one training produced: where the checkpoints are and how training went."""

    run_dir: Path
    checkpoint: Path  # the selected one
    eval_history: list[dict]
    steps: int
    stop_reason: str | None
    reward_diagnostic: dict
    blocked_rate: float  # actions the env had to replace in training (0 under the masked policy)
    masked_prob: float  # the largest probability the updated policy gave a blocked action (0)


def experiment_entries(data: ExitData, exp: ExitExperiment) -> pd.DataFrame:
    """The experiment's entries over every bar (causal rule), with their close times."""
    entries = exp.entry_rule().entries(data.bars, data.timestamps)
    return entries.assign(entry_time=pd.to_datetime(data.timestamps[entries["entry_bar"]], utc=True))


def train_exit_policy(
    data: ExitData, exp: ExitExperiment, out_dir: str | Path, entries: pd.DataFrame | None = None
) -> ExitTraining:
    """Train ``exp`` on the train segment's entries, validating on the validation entries; the best
    checkpoint is ``out_dir/best.json``'s."""
    import torch

    from himari_pipeline.exits.policy import ExitPolicy, ExitPolicyConfig
    from himari_pipeline.exits.ppo import ExitPPOTrainer
    from himari_pipeline.rl.checkpoints import best_checkpoint
    from himari_pipeline.rl.ppo import seed_everything
    from himari_pipeline.rl.runtime import runtime_info

    if exp.torch_threads:
        torch.set_num_threads(int(exp.torch_threads))
    cfg, ppo = exp.exit_config(), exp.ppo_config()
    entries = experiment_entries(data, exp) if entries is None else entries
    per_seg = data.segment_entries(entries, cfg.max_hold)
    for seg in ("train", "val"):
        if len(per_seg[seg]) < 2:
            raise ValueError(f"{data.name}: {len(per_seg[seg])} entries in the {seg} segment; need >= 2")
    seed_everything(ppo.seed, ppo.torch_deterministic)
    policy = ExitPolicy(ExitPolicyConfig(n_obs=cfg.n_obs, **exp.policy))
    out = Path(out_dir)
    trainer = ExitPPOTrainer(
        policy, data.market(per_seg["train"]), cfg, ppo, val_market=data.market(per_seg["val"]),
        checkpoint_dir=out, provenance={"experiment": exp.name, "experiment_config": exp.to_dict(),
                                        "config_hash": exp.config_hash(), "dataset": data.name,
                                        "runtime": runtime_info()},
    )  # fmt: skip
    trainer.train()
    if not trainer.eval_history:  # fewer steps than eval_every: validate the last weights once
        trainer.evaluate_and_checkpoint()
    best = best_checkpoint(out) or out / f"step_{trainer.global_step:09d}"
    return ExitTraining(out, best, trainer.eval_history, trainer.global_step, trainer.stop_reason,
                        trainer.reward_diagnostic or {}, trainer.env.blocked_rate,
                        trainer.max_masked_prob)  # fmt: skip


def judge_exit_checkpoint(
    data: ExitData, entries: pd.DataFrame, checkpoint: str | Path, n_perm: int = 199
) -> ExitEvaluation:
    """The selected checkpoint judged on every segment; every evaluated checkpoint of its run (its
    ``eval_history``) is a trial of the Deflated Sharpe."""
    from himari_pipeline.exits.configs import ExitConfig
    from himari_pipeline.exits.ppo import load_exit_policy
    from himari_pipeline.rl.checkpoints import load_checkpoint

    checkpoint = Path(checkpoint)
    policy, meta = load_exit_policy(checkpoint)
    last = sorted(checkpoint.parent.glob("step_*"))[-1]  # the run's whole history and training stats
    run = load_checkpoint(last).meta
    history = run.get("eval_history") or []
    sharpes = np.array([h["greedy_sharpe"] for h in history], dtype=np.float64)
    finite = sharpes[np.isfinite(sharpes)]
    name = meta.get("experiment", "policy")
    ppo = meta.get("ppo_config", {})
    note = (
        f"PPO exit experiment `{name}`, checkpoint {checkpoint.name} (best validation "
        f"{ppo.get('select_metric', 'greedy_sharpe')} of {len(sharpes)} evaluations"
        + f", {run['step']} steps"
        + (f"; stopped: {run['stop_reason']}" if run.get("stop_reason") else "")
        + ")"
    )
    player = policy_actions(policy)
    subject = ExitSubject(f"ppo_{name}", lambda bars: player, note,
                          finite if len(finite) >= 2 else None, max(1, len(sharpes)))  # fmt: skip
    cfg = ExitConfig(**meta["exit_config"])
    evaluation = evaluate_exits(data, entries, cfg, subject, n_perm=n_perm)
    evaluation.extra.update(
        {"experiment": name, "config_hash": meta.get("config_hash", ""), "checkpoint": checkpoint.name,
         "steps": int(run["step"]), "eval_history": history, "reward_scale": run.get("reward_scale") or {},
         "train_blocked_rate": run.get("train_blocked_rate", float("nan")),
         "train_masked_prob": run.get("train_masked_prob", float("nan"))}
    )  # fmt: skip
    return evaluation


def train_exit_experiment(
    data: ExitData, exp: ExitExperiment, out_dir: str | Path, entries: pd.DataFrame | None = None
) -> tuple[ExitTraining, ExitEvaluation]:
    """Train, select and judge (:func:`train_exit_policy` then :func:`judge_exit_checkpoint`)."""
    entries = experiment_entries(data, exp) if entries is None else entries
    training = train_exit_policy(data, exp, out_dir, entries)
    return training, judge_exit_checkpoint(data, entries, training.checkpoint)


def rule_subject(data: ExitData, window: int = 120, threshold: float = 0.0) -> ExitSubject:
    """The trend-reversal exit rule shipped with the project as a judged subject (one trial)."""
    from himari_pipeline.exits.evaluate import trend_exit

    return ExitSubject(
        "trend_exit",
        lambda bars: trend_exit(bars["close"].to_numpy(), window, threshold),
        f"trend-reversal exit rule: EXIT when the {window}-bar trend score turns against the trade "
        f"(side x score < {threshold:g}); fixed in advance, one trial",
    )
