"""``himari evaluate``: judge any strategy's positions with the same report and gate as a policy."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from himari_pipeline.cli.common import check_experiments, fail, quiet_python_warnings
from himari_pipeline.config import lake_root
from himari_pipeline.market.bars import parse_dataset_key


def evaluate(
    dataset: Annotated[str, typer.Argument(help="dataset key SYMBOL_TF (its splits must be in the lake)")],
    positions: Annotated[Path, typer.Option(help="CSV or Parquet: timestamp (bar close, UTC), position")],
    name: Annotated[str | None, typer.Option(help="strategy name (default: the file's stem)")] = None,
    trials: Annotated[
        int | None, typer.Option(help="variants tried before this one (Deflated Sharpe); default 1")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="take costs and leverage from this experiment")
    ] = None,
    transaction_cost: Annotated[float | None, typer.Option(help="per unit of position change")] = None,
    carry_cost: Annotated[float | None, typer.Option(help="per bar, per unit of position")] = None,
    borrow_rate: Annotated[float | None, typer.Option(help="per year, per unit of short position")] = None,
    leverage: Annotated[
        float | None, typer.Option(help="positions must lie in [-leverage, +leverage]")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Dagster's own logs")] = False,
) -> None:
    """Judge any strategy's positions like a trained policy: report, attribution and verdict.

    Exit 0 on PASS, 3 on FAIL, 2 on a bad file or option, 1 when the run itself fails.
    """
    import dataclasses

    import pandas as pd

    from himari_pipeline.datasets.arrays import load_npz
    from himari_pipeline.defs.data_assets import RAW, SPLITS
    from himari_pipeline.defs.strategy_assets import (
        POSITIONS,
        STRATEGY_DIM,
        STRATEGY_EVAL,
        STRATEGY_SUMMARY,
        strategies_partitions,
        strategy_partition,
    )
    from himari_pipeline.evaluation.report import costs_from_experiment
    from himari_pipeline.evaluation.strategy import PositionsError, read_positions, segment_positions
    from himari_pipeline.market.bars import validate_name
    from himari_pipeline.storage.lake import Lake, LakeError
    from himari_pipeline.trading.rules import TradingRules

    name = name or positions.stem
    try:
        parse_dataset_key(dataset)
        validate_name("strategy", name)
        strategy_partition(name, dataset)
    except ValueError as exc:
        fail(str(exc), 2)
    if trials is None:
        typer.secho(
            "warning: --trials not given, assuming this is the only variant tried; if you tried N "
            "variants (parameters, rules), pass --trials N or the Deflated Sharpe is too kind",
            fg=typer.colors.YELLOW,
            err=True,
        )
        trials = 1
    if trials < 1:
        fail(f"--trials must be >= 1, got {trials}", 2)
    costs = TradingRules()
    if experiment:
        from himari_pipeline.rl.experiments import load_experiment

        (exp_name,) = check_experiments([experiment])
        costs = costs_from_experiment(load_experiment(exp_name))
    flags = {
        "transaction_cost": transaction_cost,
        "carry_cost": carry_cost,
        "borrow_rate_annual": borrow_rate,
    }
    flags["leverage"] = leverage
    try:
        overrides = {k: float(v) for k, v in flags.items() if v is not None}
        if "leverage" in overrides:
            overrides["max_leverage"] = max(costs.max_leverage, overrides["leverage"])
        costs = dataclasses.replace(costs, **overrides)
    except ValueError as exc:
        fail(f"costs: {exc}", 2)
    if not (lake_root() / "catalog.ducklake").exists():
        fail(
            f"no lake at {lake_root()}: materialize the dataset first (`himari run -d {dataset} --data-only`)"
        )
    store = Lake(lake_root())
    try:
        split_v = store.get_version(SPLITS, dataset)
        bar_ts = pd.DatetimeIndex(pd.to_datetime(store.read_table(RAW, dataset)["timestamp"], utc=True)).asi8
    except LakeError:
        fail(f"no splits of {dataset} in {lake_root()}: run `himari run -d {dataset} --data-only` first")
    splits = load_npz(store.root / split_v.path)
    try:
        frame = read_positions(positions)
        segment_positions(frame, splits, costs.leverage, positions, bar_ts)
    except PositionsError as exc:
        fail(str(exc), 2)
    if not verbose:
        quiet_python_warnings()
    part = strategy_partition(name, dataset)
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        canonical = Path(tmp) / "positions.parquet"
        frame[["timestamp", "position"]].assign(
            timestamp=pd.to_datetime(frame["timestamp"], utc=True)
        ).to_parquet(canonical, index=False)
        pos_v = store.write_file(POSITIONS, part, canonical, inputs={SPLITS: split_v.version})

    import dagster as dg

    from himari_pipeline.defs.partitions import DATASET_DIM
    from himari_pipeline.instance import get_instance
    from himari_pipeline.runner import ensure_partitions, run_job

    instance = get_instance()
    ensure_partitions(instance, [dataset])
    if name not in instance.get_dynamic_partitions(strategies_partitions.name):
        instance.add_dynamic_partitions(strategies_partitions.name, [name])
    config = {
        "positions_version": pos_v.version,
        "source": positions.name,
        "trials": trials,
        "transaction_cost": costs.transaction_cost,
        "carry_cost": costs.carry_cost,
        "borrow_rate_annual": costs.borrow_rate_annual,
        "leverage": costs.leverage,
    }
    key = dg.MultiPartitionKey({STRATEGY_DIM: name, DATASET_DIM: dataset})
    typer.echo(f"[{name} on {dataset}] strategy_job ...")
    out = run_job(
        instance, "strategy_job", key, {"ops": {STRATEGY_EVAL: {"config": config}}}, quiet=not verbose
    )
    typer.echo(f"[{name} on {dataset}] strategy_job {'ok' if out.success else 'FAILED'} (run {out.run_id})")
    if not out.success:
        fail(f"the evaluation run failed: {out.error}")
    row = store.read_table(STRATEGY_SUMMARY, part).iloc[-1]
    passed = row["verdict"] == "PASS"
    typer.secho(
        f"verdict: {row['verdict']}", fg=typer.colors.GREEN if passed else typer.colors.RED, bold=True
    )
    for reason in filter(None, str(row["reasons"]).split("; ")):
        typer.echo(f"  - {reason}")
    for warning in filter(None, str(row["warnings"]).split("; ")):
        typer.echo(f"  - warning: {warning}")
    html = store.root / str(row["report_path"])
    typer.echo(f"report: {html}")
    typer.echo(f"markdown: {store.file_path(f'{STRATEGY_EVAL}_markdown', part)}")
    raise typer.Exit(0 if passed else 3)
