"""Training as an asset: `policy_checkpoints`, partitioned by experiment x dataset.

An experiment (one frozen YAML) trains on the dataset of its partition with that dataset's bars per
year (:func:`himari_pipeline.sources.dataset_bars_per_year`); lake tables are stored under
``EXPERIMENT.DATASET`` (:func:`~himari_pipeline.defs.partitions.lake_partition`).
"""

import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from himari_pipeline import sources
from himari_pipeline.config import raw_dir
from himari_pipeline.datasets.arrays import load_npz
from himari_pipeline.datasets.mirror import mirrored_splits
from himari_pipeline.defs.data_assets import RAW, SPLITS
from himari_pipeline.defs.metadata import png, result
from himari_pipeline.defs.partitions import (
    SPLITS_OF_DATASET,
    lake_partition,
    split_training_key,
    training_partitions,
)
from himari_pipeline.defs.partitions import (
    experiments_partitions as experiments_partitions,  # re-exported for older imports
)
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.market.bars import parse_dataset_key
from himari_pipeline.rl.experiments import Experiment, load_experiment
from himari_pipeline.storage.hashing import code_version
from himari_pipeline.vocabulary import ACTIONS, COLLAPSE_MAX_SHARE, top_action

CHECKPOINTS, TRAINING_LOG = "checkpoints", "training_log"
#: the training code, named (not imported): loading the definitions does not import torch; the
#: asset bodies import it when they run
_TRAINED_BY = "configs experiments ppo ppo_math training stacked_ppo stacked_policies runtime".split()
TRAINING_CODE = code_version(*(f"himari_pipeline.rl.{m}" for m in _TRAINED_BY))


def experiment_on_dataset(partition_key: str, raw_root: str | Path | None = None) -> Experiment:
    """The experiment of a training partition, set to train on its dataset with its bars per year."""
    name, dataset = split_training_key(partition_key)
    bpy = sources.dataset_bars_per_year(dataset, Path(raw_root or raw_dir()))
    return load_experiment(name).on_dataset(dataset, bpy)


def run_dir(lake_root: Path, experiment: str, config_hash: str, split_version: str) -> Path:
    """One folder per (config, split): a rerun resumes, new data or a new config starts afresh."""
    return lake_root / "checkpoints" / experiment / f"{config_hash[:12]}-{split_version[:12]}"


@dg.asset(
    name="policy_checkpoints",
    partitions_def=training_partitions,
    deps=[dg.AssetDep(SPLITS, partition_mapping=SPLITS_OF_DATASET)],
    group_name="training",
    kinds={"pytorch", "safetensors"},
    owners=["team:research"],
    code_version=TRAINING_CODE,
    description="Transformer-PPO checkpoints of one experiment (experiments/<name>.yaml) trained on one "
    "dataset's train split and evaluated on its validation split; safetensors + JSON, registered in "
    "the catalog with the split version they were trained on.",
)
def policy_checkpoints(context: dg.AssetExecutionContext, lake: LakeResource, settings: PipelineSettings):
    from himari_pipeline.rl import ppo as ppo_mod
    from himari_pipeline.rl import training as training_mod
    from himari_pipeline.rl.checkpoints import WeightsCatalog
    from himari_pipeline.rl.training_tables import checkpoints_table, training_curves_plot

    exp = experiment_on_dataset(context.partition_key, settings.raw_dir)
    part = lake_partition(exp.name, exp.dataset)
    store = lake.get()
    split_v = store.get_version(SPLITS, exp.dataset)
    splits = load_npz(store.root / split_v.path)
    out = run_dir(store.root, exp.name, exp.config_hash(), split_v.version)
    bpy = exp.env["bars_per_year"]
    context.log.info(
        f"{exp.name} on {exp.dataset} (splits {split_v.short}, {bpy:,.0f} bars a year): training "
        f"{exp.ppo['total_timesteps']:,} steps"
    )
    training_mod.reward_scale_preflight(exp, splits)
    if (prev := store.latest(CHECKPOINTS, part)) is not None:  # resume only from unchanged checkpoints
        registered = store.read_table(CHECKPOINTS, part, prev.version)
        WeightsCatalog.from_table(store.root, registered).verify_all(under=out)

    mirror = None
    if exp.ppo.get("mirror"):  # the mirror image's splits, recomputed from the bars the splits used
        bars = store.read_table(RAW, exp.dataset, split_v.inputs.get(RAW))
        mirror = mirrored_splits(bars, parse_dataset_key(exp.dataset)[1], splits)
        context.log.info(f"{exp.name}: half the training envs play the mirror image of {exp.dataset}")
    history: list[dict] = []
    last_line = [time.time()]
    tensorboard = ppo_mod.TensorBoardLogger(out / "tensorboard")

    def log_fn(step: int, metrics: dict) -> None:
        tensorboard(step, metrics)
        history.append({"step": int(step), **{k: float(v) for k, v in metrics.items() if _is_num(v)}})
        now = time.time()
        if "eval/greedy_sharpe" in metrics or now - last_line[0] > 30:
            last_line[0] = now
            context.log.info(f"{exp.name} on {exp.dataset}: step {step:,}{_eval_line(metrics)}")

    try:
        summary = training_mod.train_experiment(  # one log line per evaluation instead of a progress bar
            exp, splits, out, log_fn=log_fn, split_version=split_v.version, progress=False, mirror=mirror
        )
    finally:
        tensorboard.close()
    table = checkpoints_table(summary, store.root, exp.dataset)
    table["bars_per_year"] = float(bpy)
    inputs = {SPLITS: split_v.version}
    if history:
        log_frame = pd.DataFrame(history)
        store.write_table(
            TRAINING_LOG, part, log_frame, inputs=inputs, code_version=TRAINING_CODE, run_id=context.run_id
        )
    else:  # resumed after the last step: nothing new was logged, the stored log stays current
        log_frame = store.read_table(TRAINING_LOG, part)
    v = store.write_table(
        CHECKPOINTS,
        part,
        table,
        inputs=inputs,
        code_version=TRAINING_CODE,
        run_id=context.run_id,
        metadata={
            "summary": summary.to_dict(),
            "config_hash": exp.config_hash(),
            "dataset": exp.dataset,
            "bars_per_year": float(bpy),
        },
    )
    best = table.loc[table["is_best"]]
    return result(
        v,
        experiment=dg.MetadataValue.json(exp.to_dict()),
        dataset=dg.MetadataValue.text(exp.dataset),
        split_version=dg.MetadataValue.text(split_v.short),
        trained_on=dg.MetadataValue.md(
            f"`{exp.dataset}` splits version `{split_v.short}` (train {splits['train'].n_samples:,} rows, "
            f"validation {splits['val'].n_samples:,} rows), {bpy:,.1f} bars a year"
        ),
        bars_per_year=dg.MetadataValue.float(float(bpy)),
        config_hash=dg.MetadataValue.text(exp.config_hash()[:12]),
        checkpoints=dg.MetadataValue.int(len(table)),
        best_step=dg.MetadataValue.int(int(best["step"].iloc[0]) if len(best) else -1),
        best_val_sharpe=dg.MetadataValue.float(
            float(best["val_greedy_sharpe"].iloc[0]) if len(best) else np.nan
        ),
        collapsed=dg.MetadataValue.bool(bool(table["collapsed"].any())),
        drift_neutral=dg.MetadataValue.json(
            training_mod.drift_neutral_options(exp, training_mod.training_env_config(exp, splits["train"]))
        ),
        runtime=dg.MetadataValue.json(_recorded_runtime(store.root, best)),
        steps_per_second=dg.MetadataValue.float(float(summary.steps_per_s)),
        wall_time_s=dg.MetadataValue.float(float(summary.wall_time_s)),
        run_dir=dg.MetadataValue.path(str(out)),
        tensorboard=dg.MetadataValue.path(str(out / "tensorboard")),
        leaderboard=dg.MetadataValue.md(_leaderboard_md(table)),
        training_curves=png(training_curves_plot(log_frame, table, exp.name)),
    )


def _recorded_runtime(root: Path, best: pd.DataFrame) -> dict:
    """The runtime the (first) selected checkpoint recorded; empty for checkpoints older than the record."""
    from himari_pipeline.rl.training import load_checkpoint_meta

    if not len(best):
        return {}
    return load_checkpoint_meta(Path(root) / best["checkpoint_path"].iloc[0]).get("runtime", {})


def _eval_line(metrics: dict) -> str:
    """One short line per evaluation: validation Sharpe, return, action mix, entropy."""
    if "eval/greedy_sharpe" not in metrics:
        return ""
    parts = [f"validation Sharpe {float(metrics['eval/greedy_sharpe']):.2f}"]
    if "eval/greedy_total_return" in metrics:
        parts.append(f"return {float(metrics['eval/greedy_total_return']):+.1%}")
    shares = [metrics.get(f"eval/greedy_share_{a}") for a in ACTIONS]
    if all(_is_num(x) for x in shares):
        parts.append("flat/long/short " + "/".join(f"{float(x):.0%}" for x in shares))
    if "eval/greedy_entropy" in metrics:
        parts.append(f"entropy {float(metrics['eval/greedy_entropy']):.2f}")
    return ": " + ", ".join(parts)


def _is_num(v) -> bool:
    return isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool)


def _leaderboard_md(table: pd.DataFrame) -> str:
    from himari_pipeline.rl.training_tables import CHECKPOINT_COLUMNS

    cols = ["step", *[c for c in CHECKPOINT_COLUMNS if c.startswith("val_")], "is_best", "collapsed"]
    return table[cols].to_markdown(index=False, floatfmt=".3f")


@dg.asset_check(
    asset="policy_checkpoints",
    name="reward_scale",
    blocking=True,
    partitions_def=training_partitions,
    description="Per-step rewards and value loss stay in a sane range during training "
    "(rewards of ~1e7 make PPO learn nothing).",
)
def reward_scale_check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    from himari_pipeline.rl.rewards import training_log_scale_problems

    log = lake.get().read_table(TRAINING_LOG, lake_partition(*split_training_key(context.partition_key)))
    problems = training_log_scale_problems(log)
    return dg.AssetCheckResult(
        passed=not problems, description="; ".join(problems) or "sane", metadata={"iterations": len(log)}
    )


@dg.asset_check(
    asset="policy_checkpoints",
    name="no_action_collapse",
    blocking=False,
    partitions_def=training_partitions,
    description="The selected checkpoint does not put >95% of validation decisions on one action "
    "and its entropy stays above the floor (a collapsed policy). The validation report judges it too.",
)
def collapse_check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    table = lake.get().read_table(CHECKPOINTS, lake_partition(*split_training_key(context.partition_key)))
    best = table.loc[table["is_best"]]
    if best.empty:
        return dg.AssetCheckResult(passed=False, description="no best checkpoint")
    lines, any_collapsed = [], False  # a seed population has one best checkpoint per seed
    for _, row in best.iterrows():
        shares = {a: float(row[f"val_share_{a}"]) for a in ACTIONS}
        top, top_share = top_action(shares)
        any_collapsed |= bool(row["collapsed"]) or top_share > COLLAPSE_MAX_SHARE
        seed = f"seed {int(row['seed'])} " if "seed" in row else ""
        lines.append(f"{seed}best step {int(row['step'])}: {top} {top_share:.1%} of validation decisions")
    return dg.AssetCheckResult(
        passed=not any_collapsed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(lines),
        metadata={k: float(v) for k, v in shares.items()},
    )


TRAINING_ASSETS = [policy_checkpoints]
TRAINING_CHECKS = [reward_scale_check, collapse_check]
