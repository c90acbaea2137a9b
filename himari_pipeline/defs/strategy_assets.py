"""`strategy_evaluations`: any strategy's positions judged like a trained policy, per strategy x dataset.

`himari evaluate` stores the checked positions in the lake (`strategy_positions`, content-addressed)
and runs `strategy_job` for the partition ``DATASET|STRATEGY`` with the positions' version, the trial
count and the costs as run config. The asset writes the report (HTML), `strategy_metrics` and
`strategy_summary` (the columns of `validation_metrics` / `validation_summary`, ``experiment`` =
``strategy:NAME``) under the lake partition ``strategy-NAME.DATASET``. A FAIL verdict is an outcome:
the run stays green and the verdict is in the metadata.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from himari_pipeline import sources
from himari_pipeline.config import raw_dir
from himari_pipeline.datasets.arrays import load_npz
from himari_pipeline.defs.data_assets import POOL, RAW, SPLITS
from himari_pipeline.defs.jobs import RUN
from himari_pipeline.defs.partitions import DATASET_DIM, SPLITS_OF_DATASET, datasets_partitions
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.defs.validation_assets import truncation_results
from himari_pipeline.evaluation.code_modules import REPORT_CODE_MODULES
from himari_pipeline.market.bars import validate_name
from himari_pipeline.storage.hashing import code_version
from himari_pipeline.trading.rules import TradingRules

STRATEGY_DIM = "strategy"
STRATEGY_EVAL, POSITIONS, STRATEGY_METRICS, STRATEGY_SUMMARY = (
    "strategy_evaluations",
    "strategy_positions",
    "strategy_metrics",
    "strategy_summary",
)
STRATEGY_CODE = code_version(
    "himari_pipeline.evaluation.strategy", "himari_pipeline.evaluation.timestamped", *REPORT_CODE_MODULES
)
strategies_partitions = dg.DynamicPartitionsDefinition(name="strategies")
strategy_partitions = dg.MultiPartitionsDefinition(
    {STRATEGY_DIM: strategies_partitions, DATASET_DIM: datasets_partitions}
)


def strategy_partition(name: str, dataset: str) -> str:
    """The lake partition of strategy ``name`` on ``dataset`` (``strategy-NAME.DATASET``)."""
    return validate_name("partition", f"strategy-{validate_name('strategy', name)}.{dataset}")


class StrategyConfig(dg.Config):
    """What `himari evaluate` passes: the stored positions' version, trials and costs."""

    positions_version: str
    source: str = ""  # the user's file name, for the report
    trials: int = 1
    transaction_cost: float = 0.0015
    carry_cost: float = 0.0
    borrow_rate_annual: float = 0.0
    leverage: float = 1.0


@dg.asset(
    name=STRATEGY_EVAL,
    partitions_def=strategy_partitions,
    deps=[dg.AssetDep(SPLITS, partition_mapping=SPLITS_OF_DATASET)],
    group_name="strategies",
    kinds={"python", "html"},
    owners=["team:research"],
    code_version=STRATEGY_CODE,
    pool=POOL,
    description="A strategy's positions through the validation report and promotion gate of a trained "
    "policy (model-only sections not applicable), with return attribution; verdict in the metadata.",
)
def strategy_evaluations(
    context: dg.AssetExecutionContext, config: StrategyConfig, lake: LakeResource, settings: PipelineSettings
) -> dg.MaterializeResult:
    from himari_pipeline.evaluation import report as report_mod
    from himari_pipeline.evaluation import strategy as strategy_mod

    dims = context.partition_key.keys_by_dimension
    name, dataset = dims[STRATEGY_DIM], dims[DATASET_DIM]
    part = strategy_partition(name, dataset)
    store = lake.get()
    pos_v = store.get_version(POSITIONS, part, config.positions_version)
    frame = strategy_mod.read_positions(store.root / pos_v.path)
    split_v = store.get_version(SPLITS, dataset)
    splits = load_npz(store.root / split_v.path)
    bars = store.read_table(RAW, dataset)
    report = strategy_mod.evaluate_positions(
        frame,
        splits,
        name=name,
        dataset=dataset,
        costs=TradingRules(
            transaction_cost=config.transaction_cost,
            carry_cost=config.carry_cost,
            borrow_rate_annual=config.borrow_rate_annual,
            leverage=config.leverage,
            max_leverage=max(5.0, config.leverage),
        ),
        bars_per_year=sources.dataset_bars_per_year(dataset, Path(settings.raw_dir or raw_dir())),
        n_trials=config.trials,
        truncation_results=truncation_results(store, dataset, split_v.inputs),
        bar_timestamps=pd.DatetimeIndex(pd.to_datetime(bars["timestamp"], utc=True)).asi8,
        source=config.source or f"{name}.parquet",
    )
    stored = report_mod.store_report(
        store,
        report,
        asset=STRATEGY_EVAL,
        partition=part,
        inputs={POSITIONS: pos_v.version, SPLITS: split_v.version},
        tables={STRATEGY_METRICS: "validation_metrics", STRATEGY_SUMMARY: "validation_summary"},
        code_version=STRATEGY_CODE,
        run_id=context.run_id,
        markdown=True,
    )
    ev = report.evidence
    attr = ev.attribution["test"]
    return dg.MaterializeResult(
        data_version=dg.DataVersion(stored.html.version),
        metadata={
            "verdict": "PASS" if report.verdict.passed else "FAIL",
            "reasons": "; ".join(report.verdict.reasons) or "none",
            "warnings": "; ".join(report.verdict.warnings) or "none",
            "report_html": dg.MetadataValue.path(str(stored.html_path(store))),
            "report_markdown": dg.MetadataValue.path(str(store.root / stored.markdown.path)),
            "test_sharpe": float(ev.test_sharpe),
            "live_sharpe": float(ev.live_sharpe),
            "dsr": float(ev.dsr),
            "permutation_p": float(ev.permutation_p),
            "test_timing_share": float(attr["timing_share"]),
            "test_timing_p": float(attr["timing_p"]),
            "trials": config.trials,
        },
    )


strategy_job = dg.define_asset_job(
    "strategy_job",
    selection=[STRATEGY_EVAL],
    partitions_def=strategy_partitions,
    **RUN,
    description="Judge one strategy's positions on one dataset (`himari evaluate`).",
)
STRATEGY_ASSETS = [strategy_evaluations]
