"""The exit optimizer (log 002) in the lineage: `exit_entries` -> `exit_checkpoints` ->
`exit_validation_report` (+ `exit_metrics`, `exit_summary`), after `dataset_splits`.

Partitioned by exit experiment (``experiments/exits/NAME.yaml``) x dataset, like training; lake
tables are stored under ``exit-EXPERIMENT.DATASET``. ``exit_entries`` applies the experiment's entry
rule to the dataset's bars and marks each entry's segment (the splits' rows, embargo included);
``exit_checkpoints`` trains PPO on the train entries and validates on the validation entries;
``exit_validation_report`` judges the selected checkpoint on every segment against the baselines
(HTML and Markdown report, per-trade metrics, the verdict). A FAIL verdict is an outcome: the run
stays green. Checks: enough entries in every segment (blocking), masks respected in training.
"""

import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from himari_pipeline import sources
from himari_pipeline.config import raw_dir
from himari_pipeline.datasets.arrays import load_npz
from himari_pipeline.defs.data_assets import POOL, RAW, SPLITS
from himari_pipeline.defs.jobs import RUN
from himari_pipeline.defs.partitions import (
    DATASET_DIM,
    EXPERIMENT_DIM,
    SPLITS_OF_DATASET,
    datasets_partitions,
)
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.exits.experiments import list_exit_experiments, load_exit_experiment
from himari_pipeline.market.bars import validate_name
from himari_pipeline.storage.hashing import code_version

EXIT_ENTRIES, EXIT_CHECKPOINTS, EXIT_REPORT = "exit_entries", "exit_checkpoints", "exit_validation_report"
EXIT_METRICS, EXIT_SUMMARY = "exit_metrics", "exit_summary"
MIN_SEGMENT_ENTRIES = 10
EXIT_CODE = code_version(
    *(f"himari_pipeline.exits.{m}" for m in
      ("data", "entries", "env", "evaluate", "experiments", "policy", "ppo", "report", "stops", "training",
       "verdict")),
    "himari_pipeline.rl.ppo_math",
)  # fmt: skip
exit_experiments_partitions = dg.StaticPartitionsDefinition(list_exit_experiments() or ["exit_default"])
exit_partitions = dg.MultiPartitionsDefinition(
    {EXPERIMENT_DIM: exit_experiments_partitions, DATASET_DIM: datasets_partitions}
)
_COMMON = {"partitions_def": exit_partitions, "group_name": "exits", "owners": ["team:research"],
           "code_version": EXIT_CODE}  # fmt: skip


def exit_partition(experiment: str, dataset: str) -> str:
    """The lake partition of exit ``experiment`` on ``dataset`` (``exit-EXPERIMENT.DATASET``)."""
    return validate_name("partition", f"exit-{validate_name('experiment', experiment)}.{dataset}")


def exit_key(experiment: str, dataset: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({EXPERIMENT_DIM: experiment, DATASET_DIM: dataset})


def _dims(context) -> tuple[str, str]:
    dims = context.partition_key.keys_by_dimension
    return dims[EXPERIMENT_DIM], dims[DATASET_DIM]


def _exit_data(store, dataset: str, raw_root: str | None):
    """The dataset's bars and segments, and the versions read."""
    from himari_pipeline.exits.data import data_from_splits

    split_v = store.get_version(SPLITS, dataset)
    raw_v = split_v.inputs.get(RAW)
    bars = store.read_table(RAW, dataset, raw_v)
    bpy = sources.dataset_bars_per_year(dataset, Path(raw_root or raw_dir()))
    data = data_from_splits(dataset, bars, load_npz(store.root / split_v.path), bpy)
    return data, {SPLITS: split_v.version}


def _stored_entries(store, part: str) -> tuple[pd.DataFrame, str]:
    v = store.get_version(EXIT_ENTRIES, part)
    return store.read_table(EXIT_ENTRIES, part, v.version), v.version


@dg.asset(
    name=EXIT_ENTRIES,
    deps=[dg.AssetDep(SPLITS, partition_mapping=SPLITS_OF_DATASET)],
    kinds={"duckdb", "parquet"},
    pool=POOL,
    description="Entry signals of an exit experiment's rule (a breakout by default) on one dataset, each "
    "with its side, close time and segment (train/val/test/live, the splits' rows; `none` for the "
    "warm-up, embargo and entries whose holding window crosses a segment's end).",
    **_COMMON,
)
def exit_entries(context: dg.AssetExecutionContext, lake: LakeResource, settings: PipelineSettings):
    from himari_pipeline.exits.training import experiment_entries

    name, dataset = _dims(context)
    exp = load_exit_experiment(name)
    store = lake.get()
    data, inputs = _exit_data(store, dataset, settings.raw_dir)
    entries = experiment_entries(data, exp)
    segment = pd.Series("none", index=entries.index)
    for seg, rows in data.segment_entries(entries, exp.exit_config().max_hold).items():
        segment[entries["entry_bar"].isin(rows["entry_bar"])] = seg
    entries["segment"] = segment.to_numpy()
    v = store.write_table(EXIT_ENTRIES, exit_partition(name, dataset), entries, inputs=inputs,
                          code_version=EXIT_CODE, run_id=context.run_id)  # fmt: skip
    counts = entries["segment"].value_counts()
    return dg.MaterializeResult(
        data_version=dg.DataVersion(v.version),
        metadata={
            "entries": len(entries),
            **{f"{s}_entries": int(counts.get(s, 0)) for s in ("train", "val", "test", "live")},
            "long_share": float((entries["side"] > 0).mean()) if len(entries) else np.nan,
            "rule": dg.MetadataValue.json(exp.entry_rule().to_dict()),
        },
    )


@dg.asset_check(asset=EXIT_ENTRIES, name="entries_in_every_segment", blocking=True,
                partitions_def=exit_partitions)  # fmt: skip
def entries_in_every_segment(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    """Each segment holds at least MIN_SEGMENT_ENTRIES entries whose window fits inside it."""
    name, dataset = _dims(context)
    entries, _ = _stored_entries(lake.get(), exit_partition(name, dataset))
    counts = {s: int((entries["segment"] == s).sum()) for s in ("train", "val", "test", "live")}
    short = {s: n for s, n in counts.items() if n < MIN_SEGMENT_ENTRIES}
    return dg.AssetCheckResult(
        passed=not short,
        metadata={**counts, "minimum": MIN_SEGMENT_ENTRIES,
                  "why": f"too few entries in {short}" if short else "every segment has enough"},
    )  # fmt: skip


@dg.asset(
    name=EXIT_CHECKPOINTS,
    deps=[EXIT_ENTRIES],
    kinds={"pytorch", "safetensors"},
    pool=POOL,
    description="PPO exit-policy checkpoints (safetensors + JSON) trained on the train segment's entries "
    "and validated greedily on the validation entries; one row per evaluation, the selected one marked.",
    **_COMMON,
)
def exit_checkpoints(context: dg.AssetExecutionContext, lake: LakeResource, settings: PipelineSettings):
    from himari_pipeline.exits.training import train_exit_policy

    name, dataset = _dims(context)
    exp = load_exit_experiment(name)
    store = lake.get()
    part = exit_partition(name, dataset)
    data, _ = _exit_data(store, dataset, settings.raw_dir)
    entries, entries_v = _stored_entries(store, part)
    out = store.root / "exit_checkpoints" / name / f"{exp.config_hash()[:12]}-{entries_v[:12]}"
    context.log.info(f"{name} on {dataset}: training {exp.ppo_config().total_timesteps:,} steps into {out}")
    training = train_exit_policy(data, exp, out, entries[["entry_bar", "side", "entry_time"]])
    rows = pd.DataFrame(training.eval_history)
    rows["checkpoint"] = [str((out / f"step_{s:09d}").relative_to(store.root)) for s in rows["step"]]
    rows["is_best"] = rows["checkpoint"] == str(training.checkpoint.relative_to(store.root))
    v = store.write_table(
        EXIT_CHECKPOINTS, part, rows, inputs={EXIT_ENTRIES: entries_v}, code_version=EXIT_CODE,
        run_id=context.run_id,
        metadata={"train_blocked_rate": training.blocked_rate, "train_masked_prob": training.masked_prob,
                  "steps": training.steps, "config_hash": exp.config_hash()},
    )  # fmt: skip
    best = rows.loc[rows["is_best"]]
    return dg.MaterializeResult(
        data_version=dg.DataVersion(v.version),
        metadata={
            "steps": training.steps,
            "evaluations": len(rows),
            "selected": str(training.checkpoint.name),
            "best_val_trade_sharpe": float(best["greedy_sharpe"].iloc[0]) if len(best) else np.nan,
            "stop_reason": training.stop_reason or "total_timesteps reached",
            "train_blocked_rate": float(training.blocked_rate),
            "train_masked_prob": float(training.masked_prob),
            "run_dir": dg.MetadataValue.path(str(out)),
            "experiment": dg.MetadataValue.json(exp.to_dict()),
        },
    )


@dg.asset_check(asset=EXIT_CHECKPOINTS, name="masks_respected", partitions_def=exit_partitions)
def masks_respected(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """No action was blocked in training and the updated policy never put mass on a blocked action."""
    name, dataset = _dims(context)
    meta = lake.get().get_version(EXIT_CHECKPOINTS, exit_partition(name, dataset)).metadata or {}
    blocked, masked = (
        float(meta.get("train_blocked_rate", np.nan)),
        float(meta.get("train_masked_prob", np.nan)),
    )
    return dg.AssetCheckResult(
        passed=bool(blocked == 0 and masked == 0),
        metadata={"train_blocked_rate": blocked, "train_masked_prob": masked},
    )


_REPORT_COMMON = {k: v for k, v in _COMMON.items() if k != "partitions_def"}


@dg.multi_asset(
    name="judge_exit_policy",
    specs=[
        dg.AssetSpec(EXIT_REPORT, kinds={"python", "html"}, deps=[EXIT_CHECKPOINTS],
                     description="The selected exit policy judged on every segment against fixed stops, a "
                     "time exit, a trailing stop and random exits, with the permutation test over holding "
                     "lengths, the Deflated Sharpe and the gate (HTML, Markdown; verdict in the metadata).",
                     **_REPORT_COMMON),
        dg.AssetSpec(EXIT_METRICS, kinds={"duckdb", "parquet"}, deps=[EXIT_REPORT],
                     description="Per-trade metrics: one row per segment and strategy.", **_REPORT_COMMON),
        dg.AssetSpec(EXIT_SUMMARY, kinds={"duckdb", "parquet"}, deps=[EXIT_REPORT],
                     description="One row per exit experiment x dataset: verdict, reasons and evidence.",
                     **_REPORT_COMMON),
    ],
    partitions_def=exit_partitions,
    can_subset=False,
    pool=POOL,
)  # fmt: skip
def judge_exit_policy(context: dg.AssetExecutionContext, lake: LakeResource, settings: PipelineSettings):
    import torch

    from himari_pipeline.exits import report as report_mod
    from himari_pipeline.exits.training import judge_exit_checkpoint

    name, dataset = _dims(context)
    if threads := load_exit_experiment(name).torch_threads:
        torch.set_num_threads(int(threads))
    store = lake.get()
    part = exit_partition(name, dataset)
    data, _ = _exit_data(store, dataset, settings.raw_dir)
    entries, _ = _stored_entries(store, part)
    ck_v = store.get_version(EXIT_CHECKPOINTS, part)
    rows = store.read_table(EXIT_CHECKPOINTS, part, ck_v.version)
    best = rows.loc[rows["is_best"], "checkpoint"]
    checkpoint = store.root / (best.iloc[0] if len(best) else rows["checkpoint"].iloc[-1])
    ev = judge_exit_checkpoint(data, entries[["entry_bar", "side", "entry_time"]], checkpoint)
    inputs = {EXIT_CHECKPOINTS: ck_v.version}
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        html, md = Path(tmp) / "report.html", Path(tmp) / "report.md"
        html.write_text(report_mod.exit_html(ev))
        md.write_text(report_mod.exit_markdown(ev))
        doc = store.write_file(EXIT_REPORT, part, html, inputs=inputs, code_version=EXIT_CODE,
                               run_id=context.run_id, metadata={"verdict": ev.verdict.passed})  # fmt: skip
        md_v = store.write_file(f"{EXIT_REPORT}_markdown", part, md, inputs={EXIT_REPORT: doc.version},
                                run_id=context.run_id)  # fmt: skip
    metrics, summary = report_mod.exit_tables(ev, f"{name}.{dataset}", doc.path)
    summary.insert(1, "dataset", dataset)
    e = ev.evidence
    yield dg.MaterializeResult(
        asset_key=EXIT_REPORT,
        data_version=dg.DataVersion(doc.version),
        metadata={
            "verdict": "PASS" if ev.verdict.passed else "FAIL",
            "reasons": "; ".join(ev.verdict.reasons) or "none",
            "warnings": "; ".join(ev.verdict.warnings) or "none",
            "report_html": dg.MetadataValue.path(str(store.root / doc.path)),
            "report_markdown": dg.MetadataValue.path(str(store.root / md_v.path)),
            "table": dg.MetadataValue.md(ev.table.loc["test"].round(4).to_markdown()),
            "test_sharpe": float(e["test_sharpe"]),
            "live_sharpe": float(e["live_sharpe"]),
            "dsr": float(e["dsr"]),
            "permutation_p": float(e["permutation_p"]),
            "test_blocked_rate": float(e["test_blocked_rate"]),
        },
    )
    for table, frame in ((EXIT_METRICS, metrics), (EXIT_SUMMARY, summary)):
        v = store.write_table(table, part, frame, inputs={EXIT_REPORT: doc.version}, code_version=EXIT_CODE,
                              run_id=context.run_id)  # fmt: skip
        yield dg.MaterializeResult(
            asset_key=table, data_version=dg.DataVersion(v.version), metadata={"rows": len(frame)}
        )


exit_job = dg.define_asset_job(
    "exit_job",
    selection=[EXIT_ENTRIES, EXIT_CHECKPOINTS, EXIT_REPORT, EXIT_METRICS, EXIT_SUMMARY],
    partitions_def=exit_partitions,
    **RUN,
    description="Entries, PPO exit policy and its judged report for one exit experiment on one dataset "
    "(`himari run -e exit_default`).",
)
EXIT_ASSETS = [exit_entries, exit_checkpoints, judge_exit_policy]
EXIT_CHECKS = [entries_in_every_segment, masks_respected]
