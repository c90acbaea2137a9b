"""The ``himari`` command: run the pipeline, ingest files, list versions, start the UI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer

from himari_pipeline.config import PROFILES, PROJECT_ROOT, lake_root, raw_dir
from himari_pipeline.market.bars import dataset_key, parse_dataset_key
from himari_pipeline.market.validation import BarValidationError

app = typer.Typer(
    help="HIMARI: OHLCV bars to leak-proof datasets, PPO checkpoints and validation reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _fail(msg: str, code: int = 1) -> None:
    typer.secho(msg, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _run(instance, job: str, key: str | None, expected_check: str | None = None) -> bool:
    """Run one job; a failure of ``expected_check`` alone (a verdict, not a crash) is not an error."""
    from himari_pipeline.runner import run_job

    label = key or job
    typer.echo(f"[{label}] {job} ...")
    out = run_job(instance, job, key)
    only_expected = bool(out.failed_checks) and all(
        c.endswith(f":{expected_check}") for c in out.failed_checks
    )
    ok = out.success or only_expected
    status = "ok" if out.success else ("done (a blocking check said no)" if only_expected else "FAILED")
    typer.echo(f"[{label}] {job} {status} (run {out.run_id})")
    for check in out.failed_checks:
        typer.secho(f"[{label}]   failed check: {check}", fg=typer.colors.RED)
    if out.error and not only_expected:
        typer.secho(f"[{label}]   error: {out.error}", fg=typer.colors.RED)
    return ok


def _materialize(keys: list[str]) -> bool:
    from himari_pipeline.instance import get_instance
    from himari_pipeline.runner import ensure_partitions

    instance = get_instance()
    ensure_partitions(instance, keys)
    return all([_run(instance, "data_job", key) for key in keys])


def _train_and_validate(experiments: list[str]) -> bool:
    """Train, validate and (gate permitting) promote each experiment, then build the dbt marts."""
    from himari_pipeline.instance import get_instance
    from himari_pipeline.storage.lake import Lake

    instance = get_instance()
    ok = True
    for name in experiments:
        if not _run(instance, "train_job", name):
            ok = False
            continue
        if not _run(instance, "validate_job", name, expected_check="promotion_gate"):
            ok = False  # the report itself failed (a FAIL verdict only blocks promotion)
            continue
        lake = Lake(lake_root())
        summary = lake.read_table("validation_summary", name).iloc[-1]
        passed = summary["verdict"] == "PASS"
        typer.secho(
            f"[{name}] verdict {summary['verdict']}: {summary['reasons'] or 'all gates passed'}",
            fg=typer.colors.GREEN if passed else typer.colors.RED,
        )
        typer.echo(f"[{name}] promoted: {'yes' if passed else 'no (blocked by the promotion gate)'}")
        typer.echo(f"[{name}] HTML report: {lake.root / summary['report_path']}")
    ok &= _run(instance, "marts_job", None)
    typer.echo(f"marts: {lake_root() / 'marts.duckdb'}")
    return ok


@app.command()
def run(
    profile: Annotated[str, typer.Option(help="default: 1h synthetic bars; full: 5m")] = "default",
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", "-d", help="dataset keys SYMBOL_TF")
    ] = None,
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="experiments/<name>.yaml to train")
    ] = None,
    data_only: Annotated[bool, typer.Option(help="stop after the data assets")] = False,
) -> None:
    """Materialize everything: the profile's datasets (both synthetic variants by default), then train,
    validate and promote its experiments, then the dbt marts; prints where the HTML reports are."""
    if profile not in PROFILES:
        _fail(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    keys = list(dataset or PROFILES[profile].datasets)
    if not _materialize(keys):
        _fail("some runs failed (see above)")
    _print_versions(None, None)
    if not data_only and not _train_and_validate(list(experiment or PROFILES[profile].experiments)):
        _fail("some runs failed (see above)")
    typer.echo(f"lake: {lake_root()}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Binance kline CSV/ZIP or CSV/Parquet files")],
    symbol: Annotated[str, typer.Option(help="e.g. BTCUSDT")],
    timeframe: Annotated[str, typer.Option(help="e.g. 1h, 5m")],
    gap_policy: Annotated[str, typer.Option(help="error: reject gaps; report: keep and list them")] = "error",
    materialize: Annotated[bool, typer.Option(help="run the data job for this dataset afterwards")] = True,
) -> None:
    """Validate files, add them to the lake's raw folder and materialize the dataset.

    The new files are validated together with the dataset's existing ones; on any error nothing is
    copied and the lake is unchanged.
    """
    from himari_pipeline import sources
    from himari_pipeline.storage.hashing import file_sha256

    try:
        key = dataset_key(symbol, timeframe)
    except ValueError as exc:
        _fail(str(exc))
    if sources.is_synthetic(key):
        _fail(f"{symbol} is reserved for the built-in synthetic market")
    for p in paths:
        if not p.is_file():
            _fail(f"{p}: no such file")
    folder = raw_dir() / symbol / timeframe
    existing = sources.dataset_files(key, raw_dir())
    known = {file_sha256(p) for p in existing}
    new = [p for p in paths if file_sha256(p) not in known]
    names = [p.name for p in existing] + [p.name for p in new]
    if len(set(names)) != len(names):
        _fail(f"a different file with the same name already exists in {folder}; rename the new file")
    try:
        bars, gaps = sources.load_files(existing + new, timeframe, gap_policy)
    except BarValidationError as exc:
        _fail(f"rejected, nothing changed: {exc}")
    folder.mkdir(parents=True, exist_ok=True)
    for p in new:
        tmp = folder / f".{p.name}.{uuid.uuid4().hex}.tmp"
        shutil.copyfile(p, tmp)
        os.replace(tmp, folder / p.name)
    typer.echo(f"{key}: {len(new)} new file(s), {len(bars)} bars in total, {len(gaps)} gap(s)")
    if materialize and not _materialize([key]):
        _fail("materialization failed (see above)")


def _print_versions(asset: str | None, dataset: str | None) -> None:
    from himari_pipeline.storage.lake import Lake

    lake = Lake(lake_root())
    rows = lake.versions(asset, dataset)
    typer.echo(
        f"{'asset':<20} {'dataset':<20} {'version':<13} {'snap':>5} {'rows':>8} {'code':<13} "
        f"{'created':<27} inputs"
    )
    for v in rows:
        inputs = ", ".join(f"{k}={h.split(':')[-1][:8]}" for k, h in v.inputs.items())
        typer.echo(
            f"{v.asset:<20} {v.partition:<20} {v.short:<13} {v.snapshot_id:>5} {v.row_count:>8} "
            f"{v.code_version:<13} {v.created_at[:26]:<27} {inputs}"
        )


@app.command()
def versions(
    asset: Annotated[str | None, typer.Option(help="only this asset")] = None,
    dataset: Annotated[str | None, typer.Option(help="only this dataset key")] = None,
) -> None:
    """List every stored version with its inputs' versions and code version."""
    if dataset:
        parse_dataset_key(dataset)
    _print_versions(asset, dataset)


@app.command()
def ui(
    port: Annotated[int, typer.Option()] = 3000,
    host: Annotated[str, typer.Option(help="bind address; loopback unless you mean it")] = "127.0.0.1",
) -> None:
    """Start the Dagster UI on the project's persistent instance."""
    from himari_pipeline.instance import ensure_dagster_home

    ensure_dagster_home()
    cmd = [
        sys.executable,
        "-m",
        "dagster_webserver",
        "-h",
        host,
        "-p",
        str(port),
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
    ]
    raise typer.Exit(subprocess.call(cmd, cwd=PROJECT_ROOT))


if __name__ == "__main__":  # pragma: no cover
    app()
