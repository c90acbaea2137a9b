"""``himari pairs``: two legs through the spread model, the z-score rule, log 004's table and the gate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from himari_pipeline.cli.common import fail

if TYPE_CHECKING:
    from himari_pipeline.pairs.evaluate import PairConfig


def pairs(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="one bar file per leg, or one wide close file (date, one column per symbol)"),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset", help="instead of files: two datasets of the lake (repeat), judged by the pair_job"
        ),
    ] = None,
    legs: Annotated[
        list[str] | None, typer.Option("--leg", help="leg symbols, first = y (repeat: --leg AMZN --leg MSFT)")
    ] = None,
    timeframe: Annotated[
        str, typer.Option(help="bar timeframe (1d, 1h, ...; 1mo for monthly closes)")
    ] = "1d",
    calendar: Annotated[str, typer.Option(help="trading calendar (XNYS, 24/7, ...)")] = "XNYS",
    start: Annotated[str | None, typer.Option(help="first date to read (inclusive)")] = None,
    end: Annotated[str | None, typer.Option(help="last date to read (inclusive)")] = None,
    synthetic: Annotated[
        str | None, typer.Option(help="instead of files: a built-in pair, 'planted' or 'null'")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the built-in pair")] = 0,
    hedge: Annotated[str, typer.Option(help="hedge ratio: ols (rolling) or kalman")] = "ols",
    window: Annotated[int, typer.Option(help="bars in the rolling regression")] = 60,
    z_window: Annotated[int, typer.Option(help="bars in the z-score")] = 60,
    cost_bps: Annotated[float, typer.Option(help="basis points per leg's traded notional")] = 5.0,
    borrow_rate: Annotated[float, typer.Option(help="per year, on the short leg's notional")] = 0.0675,
    leverage: Annotated[float, typer.Option(help="gross exposure of a full spread position")] = 1.5,
    experiment: Annotated[
        str | None,
        typer.Option(
            "--experiment", "-e", help="train a PPO policy (experiments/pairs/NAME.yaml) and judge it"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="report folder (default pair_reports/Y-X)")] = None,
) -> None:
    """Evaluate a pair: causal hedge ratio and z-score, the mean-reversion rule chosen on validation
    (or, with --experiment, a PPO policy trained on the spread), log 004's table against buy-and-hold
    of both legs, the z-score rule and flat, and the gate.

    Exit 0 on PASS, 3 on FAIL, 2 on a bad file or option.
    """
    from himari_pipeline.market.validation import BarValidationError
    from himari_pipeline.pairs.evaluate import PairConfig, evaluate_pair
    from himari_pipeline.pairs.legs import pair_key, read_legs
    from himari_pipeline.pairs.report import pair_markdown, write_pair_report
    from himari_pipeline.pairs.spread import SpreadConfig
    from himari_pipeline.pairs.synthetic import SyntheticPair, synthetic_pair

    try:
        spread = SpreadConfig(hedge=hedge, window=window, z_window=z_window)
        cfg = PairConfig(
            spread=spread, transaction_cost=cost_bps / 1e4, borrow_rate_annual=borrow_rate, leverage=leverage
        )
        exp = None
        if experiment is not None:
            from himari_pipeline.pairs.training import load_pair_experiment  # imports torch

            exp = load_pair_experiment(experiment)
        if dataset:
            key = pair_key(list(dataset))
        elif synthetic is not None:
            if files:
                fail("give files or --synthetic, not both", 2)
            if synthetic not in ("planted", "null"):
                fail(f"--synthetic must be 'planted' or 'null', not {synthetic!r}", 2)
            aligned = synthetic_pair(SyntheticPair(planted=synthetic == "planted", seed=seed))
        else:
            if not files or not legs or len(legs) != 2:
                fail("give the files and two --leg symbols (or --synthetic planted|null)", 2)
            aligned = read_legs([str(f) for f in files], legs, timeframe, calendar, start, end)
    except BarValidationError as exc:
        fail(str(exc), 2)
    except ValueError as exc:
        fail(f"pairs: {exc}", 2)
    if dataset:
        _pairs_in_lake(key, cfg, experiment)
    name = "-".join(aligned.names) if synthetic is None else f"synthetic-{synthetic}-{seed}"
    folder = out or Path("pair_reports") / (name if exp is None else f"{name}-{exp.name}")
    try:
        if exp is None:
            ev = evaluate_pair(aligned, cfg)
        else:
            from himari_pipeline.pairs.training import train_pair_policy

            typer.echo(f"training {exp.name} on {name} (checkpoints under {folder / 'checkpoints'})")
            ev = train_pair_policy(aligned, exp, cfg, folder / "checkpoints").evaluation
    except ValueError as exc:
        fail(f"pairs: {exc}", 2)
    paths = write_pair_report(ev, folder)
    typer.echo(pair_markdown(ev).split("## Selection")[0].rstrip())
    typer.echo(f"\nreport: {paths['report']}\ntable: {paths['table']}")
    raise typer.Exit(0 if ev.verdict.passed else 3)


def _pairs_in_lake(key: str, cfg: PairConfig, experiment: str | None) -> None:
    """Register the pair's partition and run ``pair_job``: the result lands in the lake and the marts."""
    from himari_pipeline.config import lake_root
    from himari_pipeline.pairs.legs import pair_datasets, pair_partition
    from himari_pipeline.storage.lake import Lake

    datasets = pair_datasets(key)
    store = Lake(lake_root())
    raw = "raw_ohlcv"  # defs.data_assets.RAW, named here so a refused pair does not load Dagster
    missing = [
        d for d in datasets if not (lake_root() / "catalog.ducklake").exists() or store.latest(raw, d) is None
    ]
    if missing:
        fail(
            f"no bars of {', '.join(missing)} in {lake_root()}: ingest them (`himari ingest FILES ...`)",
            2,
        )
    from himari_pipeline.defs.pair_assets import PAIR_SUMMARY, pairs_partitions
    from himari_pipeline.instance import get_instance
    from himari_pipeline.runner import run_job

    instance = get_instance()
    if key not in instance.get_dynamic_partitions(pairs_partitions.name):
        instance.add_dynamic_partitions(pairs_partitions.name, [key])
    config = {
        "hedge": cfg.spread.hedge, "window": cfg.spread.window, "z_window": cfg.spread.z_window,
        "transaction_cost": cfg.transaction_cost, "borrow_rate_annual": cfg.borrow_rate_annual,
        "leverage": cfg.leverage, "experiment": experiment or "",
    }  # fmt: skip
    typer.echo(f"[{key}] pair_job ...")
    out = run_job(instance, "pair_job", key, {"ops": {"evaluate_pair": {"config": config}}}, quiet=True)
    typer.echo(f"[{key}] pair_job {'ok' if out.success else 'FAILED'} (run {out.run_id})")
    if not out.success:
        fail(f"the pair run failed: {out.error}")
    row = store.read_table(PAIR_SUMMARY, pair_partition(key)).iloc[-1]
    passed = row["verdict"] == "PASS"
    typer.secho(
        f"verdict: {row['verdict']}", fg=typer.colors.GREEN if passed else typer.colors.RED, bold=True
    )
    for reason in filter(None, str(row["reasons"]).split("; ")):
        typer.echo(f"  - {reason}")
    typer.echo(f"report: {store.root / str(row['report_path'])}")
    raise typer.Exit(0 if passed else 3)
