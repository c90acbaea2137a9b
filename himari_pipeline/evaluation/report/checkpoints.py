"""The checkpoints a report judges: which one the run selected, which ones it evaluated, loading one."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from himari_pipeline.datasets.splits import DatasetSplits
from himari_pipeline.rl.checkpoints import BEST_FILE, META_FILE, best_checkpoint, load_checkpoint
from himari_pipeline.rl.env import EnvConfig
from himari_pipeline.rl.policy import PolicyConfig, RegimeConditionedPolicy
from himari_pipeline.rl.runtime import describe_runtime

__all__ = ["LoadedCheckpoint", "load_policy_checkpoint", "resolve_checkpoints"]


@dataclass
class LoadedCheckpoint:
    """A checkpoint's recorded metadata and its policy, in eval mode."""

    path: Path
    meta: dict
    policy: RegimeConditionedPolicy

    @property
    def step(self) -> int:
        return int(self.meta["step"])

    @property
    def env_cfg(self) -> EnvConfig:
        return EnvConfig(**self.meta["env_config"])

    @property
    def features_key(self) -> str:
        return self.meta.get("features_key", "features_denoised")

    def inputs(self, splits: DatasetSplits) -> DatasetSplits:
        """``splits`` cut to the feature columns the policy was trained on (all when it recorded none)."""
        return splits.select_features(self.meta.get("feature_names"))

    def training(self) -> str:
        """The sentences saying how it was trained: drift-neutral options and the recorded runtime."""
        options = _describe_drift_neutral(self.meta.get("drift_neutral", {}))
        text = f"Drift-neutral training options: {options}."
        if "runtime" in self.meta:  # checkpoints written before the runtime was recorded lack it
            text += (
                f" Trained on {describe_runtime(self.meta['runtime'])}; training is deterministic for "
                "one runtime, another CPU or library version gives another draw."
            )
        return text


def _describe_drift_neutral(options: dict) -> str:
    """The drift-neutral options a run recorded (``drift_neutral`` in its checkpoints), in words."""
    parts = []
    if options.get("mirror"):
        parts.append("mirror augmentation (half the training envs on the mirror image)")
    if options.get("demeaned_reward"):
        parts.append(f"demeaned-return reward (drift {options.get('drift_per_bar', 0.0):.3g} per bar)")
    return ", ".join(parts) or "none"


def load_policy_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load a checkpoint directory's policy (strict weights) and metadata."""
    ck = load_checkpoint(path)
    policy = RegimeConditionedPolicy(PolicyConfig.from_dict(ck.meta["policy_config"]))
    policy.load_state_dict(ck.model, strict=True)
    policy.eval()
    return LoadedCheckpoint(Path(path), ck.meta, policy)


def _meta(path: Path) -> dict:
    return json.loads((Path(path) / META_FILE).read_text())


def _selection(meta: dict) -> tuple[str, str]:
    ppo = meta.get("ppo_config", {})
    return ppo.get("select_metric", "greedy_sharpe"), ppo.get("select_mode", "max")


def resolve_checkpoints(
    run_dir_or_checkpoints: str | Path | Sequence[str | Path],
) -> tuple[Path, list[Path], int]:
    """(selected, evaluated checkpoints, number of trials) of a run directory or a list of checkpoints.

    A run directory's selection is its best pointer (``best.json``: best by validation). A list is
    judged by each checkpoint's recorded validation selection metric, never by anything else.
    Evaluated = checkpoints whose JSON holds validation metrics; the number of trials is at least the
    length of the run's evaluation history (checkpoints deleted since still count).
    """
    if (
        isinstance(run_dir_or_checkpoints, str | Path)
        and not (Path(run_dir_or_checkpoints) / META_FILE).is_file()
    ):
        run = Path(run_dir_or_checkpoints)
        if not (run / BEST_FILE).is_file():
            raise FileNotFoundError(f"{run}: no {BEST_FILE} (no validated checkpoint to judge)")
        selected = best_checkpoint(run)
        candidates = sorted(p for p in run.glob("step_*") if (p / META_FILE).is_file())
    else:
        items = (
            [run_dir_or_checkpoints]
            if isinstance(run_dir_or_checkpoints, str | Path)
            else list(run_dir_or_checkpoints)
        )
        candidates = sorted(Path(p) for p in items)
        selected = None
    metas = {p: _meta(p) for p in candidates}
    evaluated = [p for p in candidates if metas[p].get("metrics")]
    if selected is None:
        if not evaluated:
            raise ValueError("none of the checkpoints carries validation metrics to select by")
        metric, mode = _selection(metas[evaluated[0]])
        sign = 1.0 if mode == "max" else -1.0

        def score(p: Path) -> float:
            v = metas[p]["metrics"].get(metric)
            return sign * float(v) if v is not None and math.isfinite(float(v)) else -math.inf

        selected = max(evaluated, key=score)
    if selected not in evaluated:
        evaluated.append(selected)
    history = max((len(m.get("eval_history", [])) for m in metas.values()), default=0)
    return Path(selected), sorted(evaluated), max(len(evaluated), history)
