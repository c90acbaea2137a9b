"""Validation and promotion per experiment x dataset: `validation_report`, the gate, `promoted_policy`.

A FAIL verdict is an outcome, not a broken pipeline: the report, its tables and the `promotion_gate`
check (severity WARN, shown on the asset and in the graph) are recorded, the run stays green, and
`promoted_policy` is skipped (not materialized, not failed). A collapsed policy gets its report too,
with the collapse first among the verdict's reasons.
"""

import shutil
import tempfile
from pathlib import Path

import dagster as dg

from himari_pipeline.datasets.arrays import load_npz
from himari_pipeline.defs.data_assets import DENOISED, FEATURES_T, REGIMES, SPLITS
from himari_pipeline.defs.data_checks import CHECK_RESULTS
from himari_pipeline.defs.metadata import md_table, plot_metadata, result, rounded_metadata
from himari_pipeline.defs.partitions import (
    SPLITS_OF_DATASET,
    lake_partition,
    split_training_key,
    training_partitions,
)
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.defs.training_assets import CHECKPOINTS, experiment_on_dataset, run_dir
from himari_pipeline.evaluation.code_modules import REPORT_CODE_MODULES
from himari_pipeline.storage.hashing import code_version
from himari_pipeline.storage.lake import Lake, LakeError, lake_relative

REPORT_HTML, METRICS, SUMMARY, PROMOTED = (
    "validation_report",
    "validation_metrics",
    "validation_summary",
    "promoted",
)
REPORT_CODE = code_version(  # named, not imported: the asset bodies import torch when they run
    *REPORT_CODE_MODULES,
    "himari_pipeline.evaluation.population",
    "himari_pipeline.rl.stacked_policies",
    "himari_pipeline.rl.stacked_ppo",
)
TRUNCATION_CHECKS = {a: f"{a}_truncation_invariance" for a in (FEATURES_T, DENOISED, REGIMES)}


def truncation_results(store: Lake, dataset: str, split_inputs: dict[str, str]) -> dict[str, bool]:
    """Upstream truncation-invariance outcomes for exactly the versions the splits were built from.

    A check that never ran on that version counts as failed: no proof, no promotion.
    """
    out = {}
    for asset, check in TRUNCATION_CHECKS.items():
        try:
            row = store.read_table(CHECK_RESULTS, f"{dataset}.{check}").iloc[-1]
            out[check] = bool(row["passed"]) and row["checked_version"] == split_inputs.get(asset)
        except LakeError:
            out[check] = False
    return out


_COMMON = {
    "partitions_def": training_partitions,
    "group_name": "validation",
    "owners": ["team:research"],
    "code_version": REPORT_CODE,
}


@dg.multi_asset(
    name="validate_experiment",
    specs=[
        dg.AssetSpec(
            REPORT_HTML,
            kinds={"python", "html"},
            deps=["policy_checkpoints", dg.AssetDep(SPLITS, partition_mapping=SPLITS_OF_DATASET)],
            description="The report that cannot be fooled: test next to validation, leakage, zero/noise/ones "
            "inputs, shuffle and block-permutation tests, the held-out live year against buy-and-hold, "
            "PSR/DSR/PBO over every checkpoint evaluated, and a verdict with reasons (self-contained HTML).",
            **_COMMON,
        ),
        dg.AssetSpec(
            METRICS,
            kinds={"duckdb", "parquet"},
            deps=[REPORT_HTML],
            **_COMMON,
            description="Every number of the report in long format (section, subject, regime, metric).",
        ),
        dg.AssetSpec(
            SUMMARY,
            kinds={"duckdb", "parquet"},
            deps=[REPORT_HTML],
            **_COMMON,
            description="One row per experiment and dataset: verdict, reasons, Sharpe by split, "
            "PSR/DSR/PBO, p-value, bars per year.",
        ),
    ],
    partitions_def=training_partitions,
    can_subset=False,
)
def validate_experiment(context: dg.AssetExecutionContext, lake: LakeResource, settings: PipelineSettings):
    from himari_pipeline.evaluation import population as population_mod
    from himari_pipeline.evaluation import report as report_mod
    from himari_pipeline.rl.checkpoints import WeightsCatalog

    exp = experiment_on_dataset(context.partition_key, settings.raw_dir)
    part = lake_partition(exp.name, exp.dataset)
    bpy = exp.env["bars_per_year"]
    store = lake.get()
    ck = store.get_version(CHECKPOINTS, part)
    split_v = store.get_version(SPLITS, exp.dataset, ck.inputs[SPLITS])
    splits = load_npz(store.root / split_v.path)
    truncation = truncation_results(store, exp.dataset, split_v.inputs)
    report, population = population_mod.build_run_report(  # a seed population is judged as a whole
        run_dir(store.root, exp.name, exp.config_hash(), split_v.version),
        splits,
        exp,
        bars_per_year=bpy,
        truncation_results=truncation,
        split_version=split_v.version,
        weights=WeightsCatalog.from_table(store.root, store.read_table(CHECKPOINTS, part, ck.version)),
    )
    collapse_first(report.verdict.reasons)
    report.checkpoint_path = lake_relative(
        store.root, report.checkpoint_path
    )  # as the checkpoints table has it
    stored = report_mod.store_report(
        store,
        report,
        asset=REPORT_HTML,
        partition=part,
        inputs={CHECKPOINTS: ck.version, SPLITS: split_v.version},
        tables={METRICS: "validation_metrics", SUMMARY: "validation_summary"},
        code_version=REPORT_CODE,
        run_id=context.run_id,
    )
    v, html_path = stored.html, stored.html_path(store)
    verdict = "PASS" if report.verdict.passed else "FAIL"
    n_reasons = len(report.verdict.reasons)
    context.log.info(
        f"{exp.name} on {exp.dataset}: verdict {verdict}"
        + (f" ({n_reasons} reason{'s' if n_reasons > 1 else ''})" if n_reasons else "")
        + f"; report at {html_path}"
    )
    plots = plot_metadata(report.plots)  # every plot, under its name (plot_action_mix, ...)
    yield result(
        v,
        asset_key=REPORT_HTML,
        verdict=dg.MetadataValue.text(verdict),
        dataset=dg.MetadataValue.text(exp.dataset),
        split_version=dg.MetadataValue.text(split_v.short),
        bars_per_year=dg.MetadataValue.float(float(bpy)),
        reasons=dg.MetadataValue.md("\n".join(f"- {r}" for r in report.verdict.reasons) or "none"),
        warnings=dg.MetadataValue.md("\n".join(f"- {w}" for w in report.verdict.warnings) or "none"),
        report=dg.MetadataValue.md(_strip_images(report.to_markdown())),
        html_report=dg.MetadataValue.path(str(html_path)),
        html_report_url=dg.MetadataValue.url(html_path.as_uri()),
        truncation_invariance=dg.MetadataValue.json(truncation),
        **({} if population is None else {"population_seeds": md_table(population.table())}),
        **plots,
    )
    yield result(stored.tables[METRICS], asset_key=METRICS)
    yield result(
        stored.tables[SUMMARY],
        asset_key=SUMMARY,
        verdict=dg.MetadataValue.text(verdict),
        summary=md_table(stored.frames["validation_summary"].T.set_axis(["value"], axis=1)),
    )


def collapse_first(reasons: list[str]) -> None:
    """Put collapse reasons at the top of a verdict's reasons (in place; the order is otherwise kept)."""
    reasons.sort(key=lambda r: "collapse" not in r)


def _strip_images(md: str) -> str:
    """The report's Markdown without inline images (they are shown as separate plot entries)."""
    return "\n".join(line for line in md.splitlines() if not line.lstrip().startswith("![")).strip()


@dg.asset_check(
    asset=SUMMARY,
    name="promotion_gate",
    blocking=False,
    partitions_def=training_partitions,
    description="The report's verdict: PASS only with no truncation-invariance failure or leak, no "
    "collapse, significant DSR and permutation p-value, a live year that is not ruined and holds up "
    "against buy-and-hold, limited action drift (README: promotion gates). A FAIL is a WARN (the model "
    "is rejected, the pipeline is not broken); `promoted_policy` is then skipped.",
)
def promotion_gate(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    summary = (
        lake.get().read_table(SUMMARY, lake_partition(*split_training_key(context.partition_key))).iloc[-1]
    )
    passed = summary["verdict"] == "PASS"
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=("PASS" if passed else "FAIL: " + str(summary["reasons"]))[:2000],
        metadata=rounded_metadata(
            {
                "verdict": str(summary["verdict"]),
                "dsr": float(summary["dsr"]),
                "perm_pvalue": float(summary["perm_pvalue"]),
                "live_sharpe": float(summary["live_sharpe"]),
                "live_bh_sharpe": float(summary["live_bh_sharpe"]),
            }
        ),
    )


@dg.asset(
    name="promoted_policy",
    partitions_def=training_partitions,
    deps=[SUMMARY],
    group_name="validation",
    kinds={"safetensors"},
    owners=["team:research"],
    output_required=False,
    description="The checkpoint whose verdict is PASS, archived in the lake's promoted registry; "
    "skipped (not failed) when the verdict is FAIL.",
)
def promoted_policy(context: dg.AssetExecutionContext, lake: LakeResource):
    from himari_pipeline.rl.checkpoints import verified_checkpoint

    store = lake.get()
    exp = lake_partition(*split_training_key(context.partition_key))
    summary = store.read_table(SUMMARY, exp).iloc[-1]
    if summary["verdict"] != "PASS":
        context.log.info(
            f"{exp}: not promoted: the verdict is {summary['verdict']} (reasons: validation_summary)"
        )
        return
    table = store.read_table(CHECKPOINTS, exp)
    # the report's own checkpoint: in a seed population every seed has a checkpoint at each step
    path = summary.get("checkpoint_path")
    if isinstance(path, str) and path:
        best = table.loc[table["checkpoint_path"] == path].iloc[0]
    else:  # summaries written before the column existed: single-seed runs
        best = table.loc[table["step"] == int(summary["checkpoint_step"])].iloc[0]
    src = verified_checkpoint(store.root, best["checkpoint_path"], best["weights_sha256"])
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        archive = shutil.make_archive(str(Path(tmp) / f"{exp}-step{int(best['step'])}"), "tar", src)
        report_v = store.get_version(REPORT_HTML, exp)
        v = store.write_file(
            PROMOTED,
            exp,
            archive,
            inputs={REPORT_HTML: report_v.version},
            run_id=context.run_id,
            metadata={"checkpoint_path": best["checkpoint_path"]},
        )
    yield result(
        v,
        checkpoint=dg.MetadataValue.path(str(src)),
        step=dg.MetadataValue.int(int(best["step"])),
        dsr=dg.MetadataValue.float(float(summary["dsr"])),
    )


VALIDATION_ASSETS = [validate_experiment, promoted_policy]
VALIDATION_CHECKS = [promotion_gate]
