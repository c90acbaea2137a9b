"""`pair_evaluations`, `pair_metrics`, `pair_summary`: two datasets of the lake judged as a pair.

A pair is two datasets already in the lake with one timeframe and one calendar; its partition key is
``Y_TF+X_TF`` (dynamic partitions ``pairs``; ``himari pairs --dataset Y_TF --dataset X_TF`` registers
and runs it). The asset reads both legs' ``raw_ohlcv``, aligns them by the missing-leg rule
(:mod:`himari_pipeline.pairs.legs`), judges the z-score rule, or a PPO experiment from
``experiments/pairs/`` when the run config names one, and writes the Markdown report (file),
``pair_metrics`` (log 004's table) and ``pair_summary`` (verdict and evidence) under the lake
partition ``pair-Y_TF.X_TF``. A FAIL verdict is an outcome: the run stays green.
"""

import tempfile
from pathlib import Path

import dagster as dg

from himari_pipeline import sources
from himari_pipeline.config import raw_dir
from himari_pipeline.defs.data_assets import POOL, RAW
from himari_pipeline.defs.jobs import RUN
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.market.bars import parse_dataset_key
from himari_pipeline.pairs import evaluate as evaluate_mod
from himari_pipeline.pairs import legs as legs_mod
from himari_pipeline.pairs import report as report_mod
from himari_pipeline.pairs import spread as spread_mod
from himari_pipeline.pairs.legs import pair_datasets, pair_partition
from himari_pipeline.storage.hashing import code_version

PAIR_EVAL, PAIR_METRICS, PAIR_SUMMARY = "pair_evaluations", "pair_metrics", "pair_summary"
PAIR_CODE = code_version(evaluate_mod, legs_mod, report_mod, spread_mod, "himari_pipeline.pairs.signals")
pairs_partitions = dg.DynamicPartitionsDefinition(name="pairs")


class PairRunConfig(dg.Config):
    """The spread model, costs and (optionally) a PPO experiment; defaults: log 004's costs."""

    hedge: str = "ols"
    window: int = 60
    z_window: int = 60
    transaction_cost: float = 0.0005
    borrow_rate_annual: float = 0.0675
    leverage: float = 1.5
    experiment: str = ""  # a pair experiment (experiments/pairs/NAME.yaml); empty: the z-score rule


_COMMON = {"partitions_def": pairs_partitions, "group_name": "pairs", "owners": ["team:research"],
           "code_version": PAIR_CODE}  # fmt: skip


@dg.multi_asset(
    name="evaluate_pair",
    specs=[
        dg.AssetSpec(
            PAIR_EVAL,
            kinds={"python", "markdown"},
            deps=[RAW],
            description="Two datasets traded as a pair (causal hedge ratio and z-score, the z-score rule "
            "or a PPO policy), log 004's table against both legs' buy-and-hold, the z-score rule and flat, "
            "and the gate (Markdown report; verdict in the metadata).",
            **_COMMON,
        ),
        dg.AssetSpec(
            PAIR_METRICS,
            kinds={"duckdb", "parquet"},
            deps=[PAIR_EVAL],
            description="Log 004's table: one row per segment and strategy.",
            **_COMMON,
        ),
        dg.AssetSpec(
            PAIR_SUMMARY,
            kinds={"duckdb", "parquet"},
            deps=[PAIR_EVAL],
            description="One row per pair: the judged strategy, verdict, reasons and evidence.",
            **_COMMON,
        ),
    ],
    partitions_def=pairs_partitions,
    can_subset=False,
    pool=POOL,
)
def pair_evaluations(
    context: dg.AssetExecutionContext, config: PairRunConfig, lake: LakeResource, settings: PipelineSettings
):
    key = context.partition_key
    legs = pair_datasets(key)
    raw_root = Path(settings.raw_dir or raw_dir())
    calendars = {sources.dataset_calendar(d, raw_root) for d in legs}
    if len(calendars) != 1:
        raise ValueError(f"the legs {legs} are on different calendars: {sorted(calendars)}")
    store = lake.get()
    versions = {d: store.get_version(RAW, d) for d in legs}
    bars = {parse_dataset_key(d)[0]: store.read_table(RAW, d, versions[d].version) for d in legs}
    aligned = legs_mod.legs_from_bars(bars, parse_dataset_key(legs[0])[1], calendars.pop())
    cfg = evaluate_mod.PairConfig(
        spread=spread_mod.SpreadConfig(hedge=config.hedge, window=config.window, z_window=config.z_window),
        transaction_cost=config.transaction_cost,
        borrow_rate_annual=config.borrow_rate_annual,
        leverage=config.leverage,
    )
    part = pair_partition(key)
    inputs = {f"{RAW}:{d}": v.version for d, v in versions.items()}
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        if config.experiment:
            from himari_pipeline.pairs.training import load_pair_experiment, train_pair_policy

            exp = load_pair_experiment(config.experiment)
            ev = train_pair_policy(aligned, exp, cfg, Path(tmp) / "checkpoints").evaluation
        else:
            ev = evaluate_mod.evaluate_pair(aligned, cfg)
        report = Path(tmp) / "report.md"
        report.write_text(report_mod.pair_markdown(ev))
        doc = store.write_file(
            PAIR_EVAL, part, report, inputs=inputs, code_version=PAIR_CODE, run_id=context.run_id
        )
    metrics, summary = report_mod.pair_tables(ev, key, doc.path)
    e = ev.evidence
    yield dg.MaterializeResult(
        asset_key=PAIR_EVAL,
        data_version=dg.DataVersion(doc.version),
        metadata={
            "verdict": "PASS" if ev.verdict.passed else "FAIL",
            "reasons": "; ".join(ev.verdict.reasons) or "none",
            "subject": ev.subject,
            "report": dg.MetadataValue.path(str(store.root / doc.path)),
            "table": dg.MetadataValue.md(ev.table.round(4).to_markdown()),
            "test_sharpe": float(e["test_sharpe"]),
            "live_sharpe": float(e["live_sharpe"]),
            "dsr": float(e["dsr"]),
            "permutation_p": float(e["permutation_p"]),
            "dropped_bars": ev.dropped_bars,
        },
    )
    for table, frame in ((PAIR_METRICS, metrics), (PAIR_SUMMARY, summary)):
        v = store.write_table(table, part, frame, inputs={PAIR_EVAL: doc.version}, code_version=PAIR_CODE,
                              run_id=context.run_id)  # fmt: skip
        yield dg.MaterializeResult(
            asset_key=table, data_version=dg.DataVersion(v.version), metadata={"rows": len(frame)}
        )


pair_job = dg.define_asset_job(
    "pair_job",
    selection=[PAIR_EVAL, PAIR_METRICS, PAIR_SUMMARY],
    partitions_def=pairs_partitions,
    **RUN,
    description="Judge one pair of datasets (`himari pairs --dataset Y --dataset X`).",
)
PAIR_ASSETS = [pair_evaluations]
