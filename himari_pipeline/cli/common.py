"""The ``himari`` Typer app and what its commands share: errors, name checks, quiet warnings, versions."""

from __future__ import annotations

import os

import typer

from himari_pipeline.config import lake_root, raw_dir
from himari_pipeline.market.bars import dataset_key, parse_dataset_key

app = typer.Typer(
    help="HIMARI: OHLCV bars to leak-proof datasets, PPO checkpoints and validation reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def fail(msg: str, code: int = 1) -> None:
    """Print ``msg`` in red on stderr and exit with ``code``."""
    typer.secho(msg, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def check_experiments(names: list[str]) -> list[str]:
    """Known experiment names, trading (``experiments/``) or exit (``experiments/exits/``); test-only
    ones switch on ``HIMARI_TEST_EXPERIMENTS``; a clear error otherwise."""
    from himari_pipeline.exits.experiments import list_exit_experiments, load_exit_experiment
    from himari_pipeline.rl.experiments import (
        TEST_EXPERIMENTS_ENV,
        is_test_experiment,
        list_experiments,
        load_experiment,
    )

    exits = list_exit_experiments(include_test=True)
    known = list_experiments(include_test=True) + exits
    unknown = [n for n in names if n not in known]
    if unknown:
        fail(f"unknown experiment {', '.join(map(repr, unknown))}; known experiments: {', '.join(known)}")
    for name in names:
        try:
            load_exit_experiment(name) if name in exits else load_experiment(name)
        except (ValueError, FileNotFoundError) as exc:
            fail(f"experiment {name!r} is invalid: {exc}")
    if any(is_test_experiment(n) for n in names):
        os.environ[TEST_EXPERIMENTS_ENV] = "1"  # before the definitions are imported
    return list(dict.fromkeys(names))


def default_dataset(name: str) -> str:
    """The dataset an experiment (trading or exit) names in its YAML."""
    from himari_pipeline.exits.experiments import is_exit_experiment, load_exit_experiment
    from himari_pipeline.rl.experiments import load_experiment

    return (load_exit_experiment(name) if is_exit_experiment(name) else load_experiment(name)).dataset


def check_datasets(keys: list[str]) -> list[str]:
    """Dataset keys that can be materialized (synthetic, or with files under raw/), or a clear error.

    Nothing is registered here: a typo never becomes a partition.
    """
    from himari_pipeline import sources

    for key in keys:
        try:
            parse_dataset_key(key)
        except ValueError as exc:
            fail(str(exc))
        if not sources.is_synthetic(key) and not sources.dataset_files(key, raw_dir()):
            symbol, timeframe = parse_dataset_key(key)
            have = file_datasets()
            fail(
                f"unknown dataset {key!r}: no files in {raw_dir() / symbol / timeframe} (add them with "
                f"`himari ingest FILES --symbol {symbol} --timeframe {timeframe}`); datasets with files: "
                f"{', '.join(have) or 'none'}; built-in: SYNTH-PLANTED_<TF>, SYNTH-NULL_<TF> "
                "(SYNTH-PLANTED-S<seed>_<TF> for another market seed)"
            )
    return list(dict.fromkeys(keys))


def file_datasets() -> list[str]:
    """Dataset keys with files in the raw folder."""
    from himari_pipeline import sources

    root, found = raw_dir(), []
    if root.is_dir():
        for sym in sorted(p for p in root.iterdir() if p.is_dir()):
            for tf in sorted(p for p in sym.iterdir() if p.is_dir()):
                try:
                    key = dataset_key(sym.name, tf.name)
                except ValueError:
                    continue
                if sources.dataset_files(key, root):
                    found.append(key)
    return found


def quiet_python_warnings() -> None:
    """Hide Dagster's beta, preview and supersession warnings (``-v`` shows them)."""
    import warnings

    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


def print_versions(asset: str | None, dataset: str | None) -> None:
    """One line per stored version (optionally of one asset or dataset), with its inputs' versions."""
    from himari_pipeline.storage.lake import Lake

    lake = Lake(lake_root())
    rows = lake.versions(asset, dataset)
    typer.echo(
        f"{'asset':<20} {'dataset':<20} {'version':<13} {'snap':>5} {'rows':>8} {'code':<13} "
        f"{'created':<27} inputs"
    )
    for v in rows:
        inputs = ", ".join(f"{k}={h.split(':')[-1][:8]}" for k, h in v.inputs.items())
        n_rows = "-" if v.row_count is None else v.row_count  # a document (report, archive) has no rows
        typer.echo(
            f"{v.asset:<20} {v.partition:<20} {v.short:<13} {v.snapshot_id:>5} {n_rows:>8} "
            f"{v.code_version:<13} {v.created_at[:26]:<27} {inputs}"
        )
