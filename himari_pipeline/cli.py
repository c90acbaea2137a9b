"""The ``himari`` command: run the pipeline, ingest files, list versions, start the UI."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
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


def _run(instance, job: str, key: str | None, label: str | None = None, quiet: bool = True):
    """Run one job in process and print one status line (plus errors); returns the RunOutcome."""
    from himari_pipeline.runner import run_job

    label = label or key or job
    typer.echo(f"[{label}] {job} ...")
    if quiet and job == "marts_job":  # dbt writes its own log to the terminal: keep its summary line
        with _terminal_captured() as captured:
            out = run_job(instance, job, key, quiet=quiet)
        lines = captured[0].splitlines()
        shown = [ln for ln in lines if ln.startswith("Done. PASS=")] if out.success else lines[-40:]
        for line in shown:
            typer.echo(f"    dbt: {line}")
    else:
        out = run_job(instance, job, key, quiet=quiet)
    typer.echo(f"[{label}] {job} {'ok' if out.success else 'FAILED'} (run {out.run_id})")
    for check in out.checks:
        if not check.passed and check.severity == "ERROR":
            typer.secho(f"[{label}]   check {check.name} did not pass: {check.description}", fg="red")
    if out.error:
        typer.secho(f"[{label}]   error: {out.error}", fg=typer.colors.RED)
    return out


@contextlib.contextmanager
def _terminal_captured():
    """Send this process's stdout/stderr file descriptors (and children's) to a temp file meanwhile;
    yields a one-item list that holds the captured text afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved, text = [os.dup(1), os.dup(2)], [""]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield text
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text[0] = sink.read().decode(errors="replace")


def _materialize(keys: list[str], quiet: bool = True) -> bool:
    from himari_pipeline.instance import get_instance
    from himari_pipeline.runner import ensure_partitions

    instance = get_instance()
    ensure_partitions(instance, keys)
    return all([_run(instance, "data_job", key, quiet=quiet).success for key in keys])


def _check_experiments(names: list[str]) -> list[str]:
    """Known experiment names (test-only ones switch on ``HIMARI_TEST_EXPERIMENTS``), or a clear error."""
    from himari_pipeline.rl.experiments import (
        TEST_EXPERIMENTS_ENV,
        is_test_experiment,
        list_experiments,
        load_experiment,
    )

    known = list_experiments(include_test=True)
    unknown = [n for n in names if n not in known]
    if unknown:
        _fail(f"unknown experiment {', '.join(map(repr, unknown))}; known experiments: {', '.join(known)}")
    for name in names:
        try:
            load_experiment(name)
        except (ValueError, FileNotFoundError) as exc:
            _fail(f"experiment {name!r} is invalid: {exc}")
    if any(is_test_experiment(n) for n in names):
        os.environ[TEST_EXPERIMENTS_ENV] = "1"  # before the definitions are imported
    return list(dict.fromkeys(names))


def _check_datasets(keys: list[str]) -> list[str]:
    """Dataset keys that can be materialized (synthetic, or with files under raw/), or a clear error.

    Nothing is registered here: a typo never becomes a partition.
    """
    from himari_pipeline import sources

    for key in keys:
        try:
            parse_dataset_key(key)
        except ValueError as exc:
            _fail(str(exc))
        if not sources.is_synthetic(key) and not sources.dataset_files(key, raw_dir()):
            symbol, timeframe = parse_dataset_key(key)
            have = _file_datasets()
            _fail(
                f"unknown dataset {key!r}: no files in {raw_dir() / symbol / timeframe} (add them with "
                f"`himari ingest FILES --symbol {symbol} --timeframe {timeframe}`); datasets with files: "
                f"{', '.join(have) or 'none'}; built-in: SYNTH-PLANTED_<TF>, SYNTH-NULL_<TF>"
            )
    return list(dict.fromkeys(keys))


def _file_datasets() -> list[str]:
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


def _train_and_validate(pairs: list[tuple[str, str]], quiet: bool = True) -> tuple[bool, list[str]]:
    """Train, validate and (verdict permitting) promote each (experiment, dataset), then the dbt marts.

    Returns (no run broke, the pairs whose verdict is FAIL). A collapsed policy is still validated; a
    FAIL verdict is a finished run, not an error.
    """
    from himari_pipeline.defs.partitions import training_key
    from himari_pipeline.instance import get_instance

    instance = get_instance()
    ok, rejected = True, []
    for name, key in pairs:
        label = f"{name} on {key}"
        train = _run(instance, "train_job", training_key(name, key), label, quiet)
        if not train.success:
            ok = False
            continue
        if train.failed("no_action_collapse"):
            typer.secho(f"[{label}] the policy collapsed; validating anyway (see the report)", fg="yellow")
        if not _run(instance, "validate_job", training_key(name, key), label, quiet).success:
            ok = False
            continue
        if _print_report(name, key, label) != "PASS":
            rejected.append(label)
    ok &= _run(instance, "marts_job", None, quiet=quiet).success
    typer.echo(f"marts: {lake_root() / 'marts.duckdb'}")
    return ok, rejected


def _print_report(name: str, key: str, label: str | None = None) -> str:
    """Print the verdict (reasons, collapse first), promotion and HTML path of one report; its verdict."""
    from himari_pipeline.defs.partitions import lake_partition
    from himari_pipeline.defs.validation_assets import SUMMARY
    from himari_pipeline.storage.lake import Lake

    label = label or f"{name} on {key}"
    lake = Lake(lake_root())
    summary = lake.read_table(SUMMARY, lake_partition(name, key)).iloc[-1]
    passed = summary["verdict"] == "PASS"
    color = typer.colors.GREEN if passed else typer.colors.RED
    typer.secho(f"[{label}] verdict {summary['verdict']}", fg=color)
    for reason in filter(None, str(summary["reasons"] or "").split("; ")):
        typer.secho(f"[{label}]   - {reason}", fg=color)
    for warning in filter(None, str(summary["warnings"] or "").split("; ")):
        typer.echo(f"[{label}]   warning: {warning}")
    typer.echo(
        f"[{label}] Sharpe validation {summary['val_sharpe']:.2f}, test {summary['test_sharpe']:.2f}, "
        f"live {summary['live_sharpe']:.2f} (buy-and-hold {summary['live_bh_sharpe']:.2f}); "
        f"DSR {summary['dsr']:.3f}, permutation p {summary['perm_pvalue']:.3f}"
    )
    typer.echo(f"[{label}] promoted: {'yes' if passed else 'no (the verdict is FAIL)'}")
    typer.echo(f"[{label}] HTML report: {lake.root / summary['report_path']}")
    return str(summary["verdict"])


def _quiet_python_warnings() -> None:
    import warnings

    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


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
    strict: Annotated[bool, typer.Option(help="exit 1 when a verdict is FAIL (for CI)")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Dagster's own logs")] = False,
) -> None:
    """Materialize datasets, train each experiment on each dataset, validate, promote, build the marts.

    No -e/-d: the profile's datasets (both synthetic variants by default) and its experiments on their
    default datasets. -e alone: those experiments on their default datasets (the YAML's `dataset`).
    -d alone: those datasets, with the profile's experiments trained on each. -e and -d: every
    experiment on every dataset. A FAIL verdict is printed with its reasons and blocks promotion; the
    command still succeeds unless --strict.
    """
    if profile not in PROFILES:
        _fail(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    names = _check_experiments(list(experiment or PROFILES[profile].experiments))
    keys = _check_datasets(list(dataset)) if dataset else []
    if not verbose:
        _quiet_python_warnings()
    if not dataset:
        from himari_pipeline.rl.experiments import load_experiment

        defaults = [load_experiment(n).dataset for n in names]
        keys = _check_datasets(defaults if experiment else [*PROFILES[profile].datasets, *defaults])
        pairs = [(n, d) for n, d in zip(names, defaults, strict=True)]
    else:
        pairs = [(n, k) for n in names for k in keys]
    if not _materialize(keys, quiet=not verbose):
        _fail("some runs failed (see above)")
    if verbose:
        _print_versions(None, None)
    if data_only:
        typer.echo(f"lake: {lake_root()}")
        return
    ok, rejected = _train_and_validate(pairs, quiet=not verbose)
    typer.echo(f"lake: {lake_root()}")
    if not ok:
        _fail("some runs failed (see above)")
    if rejected and strict:
        _fail(f"--strict: verdict FAIL for {', '.join(rejected)}")


@app.command()
def experiments() -> None:
    """List the experiments: name, default dataset, config hash (on that dataset), where trained."""
    from himari_pipeline import sources
    from himari_pipeline.defs.training_assets import CHECKPOINTS
    from himari_pipeline.rl.experiments import is_test_experiment, list_experiments, load_experiment
    from himari_pipeline.storage.lake import Lake

    names = list_experiments(include_test=True)
    trained: dict[str, list[str]] = {n: [] for n in names}
    if (lake_root() / "catalog.ducklake").exists():
        for part in Lake(lake_root()).partitions(CHECKPOINTS):
            owner = max((n for n in names if part.startswith(f"{n}.")), key=len, default=None)
            if owner:
                trained[owner].append(part[len(owner) + 1 :])
    typer.echo(f"{'experiment':<16} {'default dataset':<20} {'config':<13} trained on")
    for name in names:
        try:
            exp = load_experiment(name)
            try:
                exp = exp.on_dataset(None, sources.dataset_bars_per_year(exp.dataset, raw_dir()))
            except (ValueError, OSError):
                pass  # a file dataset not ingested yet: the YAML's own hash
            chash, dataset = exp.config_hash()[:12], exp.dataset
        except (ValueError, FileNotFoundError) as exc:
            chash, dataset = "INVALID", str(exc)[:60]
        where = ", ".join(trained[name]) or "not trained"
        tag = " (test-only)" if is_test_experiment(name) else ""
        typer.echo(f"{name:<16} {dataset:<20} {chash:<13} {where}{tag}")


@app.command()
def report(
    experiment: Annotated[str, typer.Argument(help="experiment name")],
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="dataset key (default: the experiment's)")
    ] = None,
) -> None:
    """Print the verdict, its reasons and the HTML path of an experiment's latest validation report."""
    from himari_pipeline.defs.partitions import lake_partition
    from himari_pipeline.defs.validation_assets import SUMMARY
    from himari_pipeline.rl.experiments import load_experiment
    from himari_pipeline.storage.lake import Lake

    (name,) = _check_experiments([experiment])
    key = dataset or load_experiment(name).dataset
    try:
        parse_dataset_key(key)
    except ValueError as exc:
        _fail(str(exc))
    have = []
    if (lake_root() / "catalog.ducklake").exists():
        have = [p for p in Lake(lake_root()).partitions(SUMMARY) if p.startswith(f"{name}.")]
    if lake_partition(name, key) not in have:
        others = ", ".join(p[len(name) + 1 :] for p in have) or "none"
        _fail(
            f"no validation report for {name} on {key} in {lake_root()}; run `himari run -e {name} -d {key}` "
            f"(reports of {name} exist for: {others})"
        )
    _print_report(name, key)


@app.command()
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
    from himari_pipeline.evaluation.backtest import CostModel
    from himari_pipeline.evaluation.report import costs_from_experiment
    from himari_pipeline.evaluation.strategy import PositionsError, read_positions, segment_positions
    from himari_pipeline.market.bars import validate_name
    from himari_pipeline.storage.lake import Lake, LakeError

    name = name or positions.stem
    try:
        parse_dataset_key(dataset)
        validate_name("strategy", name)
        strategy_partition(name, dataset)
    except ValueError as exc:
        _fail(str(exc), 2)
    if trials is None:
        typer.secho(
            "warning: --trials not given, assuming this is the only variant tried; if you tried N "
            "variants (parameters, rules), pass --trials N or the Deflated Sharpe is too kind",
            fg=typer.colors.YELLOW,
            err=True,
        )
        trials = 1
    if trials < 1:
        _fail(f"--trials must be >= 1, got {trials}", 2)
    costs = CostModel()
    if experiment:
        from himari_pipeline.rl.experiments import load_experiment

        (exp_name,) = _check_experiments([experiment])
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
        _fail(f"costs: {exc}", 2)
    if not (lake_root() / "catalog.ducklake").exists():
        _fail(
            f"no lake at {lake_root()}: materialize the dataset first (`himari run -d {dataset} --data-only`)"
        )
    store = Lake(lake_root())
    try:
        split_v = store.get_version(SPLITS, dataset)
        bar_ts = pd.DatetimeIndex(pd.to_datetime(store.read_table(RAW, dataset)["timestamp"], utc=True)).asi8
    except LakeError:
        _fail(f"no splits of {dataset} in {lake_root()}: run `himari run -d {dataset} --data-only` first")
    splits = load_npz(store.root / split_v.path)
    try:
        frame = read_positions(positions)
        segment_positions(frame, splits, costs.leverage, positions, bar_ts)
    except PositionsError as exc:
        _fail(str(exc), 2)
    if not verbose:
        _quiet_python_warnings()
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
        _fail(f"the evaluation run failed: {out.error}")
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


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Binance kline CSV/ZIP or CSV/Parquet files")],
    symbol: Annotated[str, typer.Option(help="e.g. BTCUSDT")],
    timeframe: Annotated[str, typer.Option(help="e.g. 1h, 5m")],
    calendar: Annotated[
        str | None,
        typer.Option(help="24/7 (default), 24/5 (FX) or an exchange: XNYS, XLON, CMES, ... (stored)"),
    ] = None,
    gap_policy: Annotated[
        str | None,
        typer.Option(help="short (default): accept gaps up to --max-gap-bars; any; none (stored)"),
    ] = None,
    max_gap_bars: Annotated[
        int | None, typer.Option(min=0, help="longest accepted gap in bars (default: one trading day)")
    ] = None,
    materialize: Annotated[bool, typer.Option(help="run the data job for this dataset afterwards")] = True,
) -> None:
    """Validate files, add them to the lake's raw folder and materialize the dataset.

    The new files are validated together with the dataset's existing ones, with the dataset's stored
    settings (calendar, gap policy) updated by the options given; the settings are stored with the
    dataset and used by every later run. On any error nothing is copied; if the data job fails
    afterwards, the copied files and the settings are rolled back.
    """
    from himari_pipeline import ingest as ingest_mod
    from himari_pipeline import sources

    try:
        key = dataset_key(symbol, timeframe)
        if sources.is_synthetic(key):
            _fail(f"{symbol} is reserved for the built-in synthetic market")
        ingest_mod.check_paths(paths)

        def wait() -> None:
            typer.echo(f"{key}: another ingest into this dataset is running; waiting")

        with ingest_mod.dataset_lock(key, lake_root(), on_wait=wait):
            stored = sources.dataset_settings(key, raw_dir())
            settings = ingest_mod.resolve_settings(stored, calendar, gap_policy, max_gap_bars)
            try:
                plan = ingest_mod.prepare(key, paths, raw_dir(), settings)
            except BarValidationError as exc:
                _fail(f"rejected, nothing changed: {exc}")
            applied = ingest_mod.commit(plan)
            rep = plan.report
            typer.echo(
                f"{key}: {len(plan.new)} new file(s), {len(plan.already_present)} already present, "
                f"{rep.n_rows} bars in total, calendar {settings.calendar}, {len(rep.gaps)} gap(s) "
                f"(longest {rep.longest_gap} bars; policy {settings.gap_policy}, limit "
                f"{'none' if rep.gap_limit is None else rep.gap_limit}), "
                f"{settings.bars_per_year(timeframe):,.1f} bars per year"
            )
            if materialize and not _materialize([key]):
                undone = ingest_mod.rollback(applied)
                _fail("materialization failed (see above); rolled back: " + ("; ".join(undone) or "nothing"))
    except ValueError as exc:  # bad names, options or files: IngestError, SettingsError, CalendarError
        _fail(str(exc))


def _dataset_rows() -> list[dict]:
    """One summary per dataset: in the lake (latest raw_ohlcv) or with files in the raw folder."""
    from himari_pipeline import sources
    from himari_pipeline.storage.lake import Lake

    lake = Lake(lake_root())
    keys = sorted(set(lake.partitions("raw_ohlcv")) | set(sources.raw_dataset_keys(raw_dir())))
    rows = []
    for key in keys:
        v = lake.latest("raw_ohlcv", key)
        meta = v.metadata if v else {}
        _, timeframe = parse_dataset_key(key)
        try:
            stored = sources.dataset_settings(key, raw_dir())
        except ValueError:
            stored = None
        calendar = meta.get("calendar") or (stored.calendar if stored else "24/7")
        bpy = meta.get("bars_per_year")
        if bpy is None:
            bpy = stored.bars_per_year(timeframe) if stored else None
        rows.append(
            {
                "dataset": key,
                "calendar": calendar,
                "first_bar": meta.get("first_bar"),
                "last_bar": meta.get("last_bar"),
                "bars": v.row_count if v else None,
                "gaps": meta.get("gap_count"),
                "longest_gap_bars": meta.get("longest_gap_bars"),
                "missing_bars": meta.get("missing_bars"),
                "bars_per_year": bpy,
                "gap_policy": meta.get("gap_policy") or (stored.gap_policy if stored else None),
                "latest_version": v.short if v else None,
                "materialized_at": v.created_at if v else None,
            }
        )
    return rows


@app.command()
def datasets(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list of objects")] = False,
) -> None:
    """One line per dataset: calendar, first and last bar, bars, gaps, bars per year, latest version."""
    import json

    rows = _dataset_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no datasets yet: `himari ingest FILES --symbol S --timeframe TF` or `himari run`")
        return

    def cell(x, fmt="{}") -> str:
        return "-" if x is None else fmt.format(x)

    typer.echo(
        f"{'dataset':<22} {'calendar':<8} {'first bar':<25} {'last bar':<25} {'bars':>9} "
        f"{'gaps':>5} {'longest':>7} {'bars/year':>10} version"
    )
    for r in rows:
        typer.echo(
            f"{r['dataset']:<22} {r['calendar']:<8} {cell(r['first_bar']):<25} {cell(r['last_bar']):<25} "
            f"{cell(r['bars'], '{:,}'):>9} {cell(r['gaps']):>5} {cell(r['longest_gap_bars']):>7} "
            f"{cell(r['bars_per_year'], '{:,.1f}'):>10} {cell(r['latest_version'], '{}')}"
        )


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
        n_rows = "-" if v.row_count is None else v.row_count  # a document (report, archive) has no rows
        typer.echo(
            f"{v.asset:<20} {v.partition:<20} {v.short:<13} {v.snapshot_id:>5} {n_rows:>8} "
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
    workspace: Annotated[
        Path | None, typer.Option(help="a Dagster workspace.yaml (default: the project's)")
    ] = None,
) -> None:
    """Start the Dagster UI and daemon (schedules, sensor, run queue) on the project's instance.

    Stops everything it started on Ctrl-C or SIGTERM. Runs left behind by a crash are marked failed
    and their pool slots freed before it starts.
    """
    from himari_pipeline.instance import get_instance
    from himari_pipeline.operations import recover_stale_state, serve_ui

    with get_instance():  # recovers stale state on the way
        pass
    ws = (workspace or PROJECT_ROOT / "workspace.yaml").resolve()
    if not ws.is_file():
        _fail(f"{ws}: no such workspace file")
    code = serve_ui(host, port, ws, PROJECT_ROOT)
    with get_instance(recover=False) as instance:  # runs the stop interrupted are failed now
        for line in recover_stale_state(instance):
            typer.echo(f"himari: {line}", err=True)
    raise typer.Exit(code)


@app.command()
def doctor(
    repair: Annotated[
        bool, typer.Option("--repair", help="fix what is found (default: report only)")
    ] = False,
) -> None:
    """Report stale state left by killed processes; --repair fixes it.

    Stale state: runs STARTING/STARTED/CANCELING whose processes are gone (repair: mark failed), pool
    slots or queued steps held by finished or dead runs (repair: free), temp files in the lake that no
    process has open (repair: delete). Exits 1 when something stale is left unrepaired.
    """
    from himari_pipeline.instance import get_instance
    from himari_pipeline.operations import find_stale_state
    from himari_pipeline.operations import repair as repair_state

    with get_instance(recover=False) as instance:
        health = find_stale_state(instance, lake_root())
        for note in health.notes:
            typer.echo(f"note: {note}")
        if health.clean:
            typer.secho(
                "clean: no dead runs, no stale pool slots, no stale temp files", fg=typer.colors.GREEN
            )
            return
        for problem in health.problems():
            typer.secho(f"stale: {problem}", fg=typer.colors.YELLOW)
        if not repair:
            _fail("stale state found; `himari doctor --repair` fixes it")
        for line in repair_state(instance, health):
            typer.echo(f"repaired: {line}")
        left = find_stale_state(instance, lake_root())
        if not left.clean:
            _fail("still stale after repair: " + "; ".join(left.problems()))
        typer.secho("clean after repair", fg=typer.colors.GREEN)


if __name__ == "__main__":  # pragma: no cover
    app()
