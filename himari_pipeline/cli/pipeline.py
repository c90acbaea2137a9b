"""``himari run``, ``himari experiments`` and ``himari report``: train, validate, promote, show verdicts."""

from __future__ import annotations

from typing import Annotated

import typer

from himari_pipeline.cli.common import (
    check_datasets,
    check_experiments,
    default_dataset,
    fail,
    print_versions,
    quiet_python_warnings,
)
from himari_pipeline.cli.jobs import materialize_datasets, run_step
from himari_pipeline.config import PROFILES, lake_root, raw_dir
from himari_pipeline.market.bars import parse_dataset_key


def train_and_validate(pairs: list[tuple[str, str]], quiet: bool = True) -> tuple[bool, list[str]]:
    """Train, validate and (verdict permitting) promote each (experiment, dataset), then the dbt marts.

    Returns (no run broke, the pairs whose verdict is FAIL). A collapsed policy is still validated; a
    FAIL verdict is a finished run, not an error. An exit experiment runs ``exit_job`` (entries,
    training, judged report) instead.
    """
    from himari_pipeline.defs.partitions import training_key
    from himari_pipeline.exits.experiments import is_exit_experiment
    from himari_pipeline.instance import get_instance

    instance = get_instance()
    ok, rejected = True, []
    for name, key in pairs:
        label = f"{name} on {key}"
        if is_exit_experiment(name):
            from himari_pipeline.defs.exit_assets import exit_key

            if not run_step(instance, "exit_job", exit_key(name, key), label, quiet).success:
                ok = False
            elif print_exit_report(name, key, label) != "PASS":
                rejected.append(label)
            continue
        train = run_step(instance, "train_job", training_key(name, key), label, quiet)
        if not train.success:
            ok = False
            continue
        if train.failed("no_action_collapse"):
            typer.secho(f"[{label}] the policy collapsed; validating anyway (see the report)", fg="yellow")
        if not run_step(instance, "validate_job", training_key(name, key), label, quiet).success:
            ok = False
            continue
        if print_report(name, key, label) != "PASS":
            rejected.append(label)
    ok &= run_step(instance, "marts_job", None, quiet=quiet).success
    typer.echo(f"marts: {lake_root() / 'marts.duckdb'}")
    return ok, rejected


def split_presets(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The fractions preset (``split:``) each dataset is cut with: the one its trading experiments name.

    One dataset has one current ``dataset_splits`` version, so experiments that want different presets
    on one dataset in one run are refused, naming them (run them in separate lakes or one at a time).
    Exit experiments do not read the splits.
    """
    from himari_pipeline.exits.experiments import is_exit_experiment
    from himari_pipeline.rl.experiments import load_experiment

    wants: dict[str, dict[str, list[str]]] = {}
    for name, key in pairs:
        if not is_exit_experiment(name):
            wants.setdefault(key, {}).setdefault(load_experiment(name).split, []).append(name)
    for key, by_preset in wants.items():
        if len(by_preset) > 1:
            said = "; ".join(f"{p!r}: {', '.join(names)}" for p, names in sorted(by_preset.items()))
            fail(f"experiments on {key} want different split presets ({said}); run them one preset at a time")
    return {key: next(iter(by_preset)) for key, by_preset in wants.items()}


def _print_verdict(label: str, summary) -> bool:
    """The verdict line, its reasons (red or green) and warnings of a summary row; whether it passed."""
    passed = summary["verdict"] == "PASS"
    color = typer.colors.GREEN if passed else typer.colors.RED
    typer.secho(f"[{label}] verdict {summary['verdict']}", fg=color)
    for reason in filter(None, str(summary["reasons"] or "").split("; ")):
        typer.secho(f"[{label}]   - {reason}", fg=color)
    for warning in filter(None, str(summary["warnings"] or "").split("; ")):
        typer.echo(f"[{label}]   warning: {warning}")
    return bool(passed)


def print_report(name: str, key: str, label: str | None = None) -> str:
    """Print the verdict (reasons, collapse first), promotion and HTML path of one report; its verdict."""
    from himari_pipeline.defs.partitions import lake_partition
    from himari_pipeline.defs.validation_assets import SUMMARY
    from himari_pipeline.storage.lake import Lake

    label = label or f"{name} on {key}"
    lake = Lake(lake_root())
    summary = lake.read_table(SUMMARY, lake_partition(name, key)).iloc[-1]
    passed = _print_verdict(label, summary)
    typer.echo(
        f"[{label}] Sharpe validation {summary['val_sharpe']:.2f}, test {summary['test_sharpe']:.2f}, "
        f"live {summary['live_sharpe']:.2f} (buy-and-hold {summary['live_bh_sharpe']:.2f}); "
        f"DSR {summary['dsr']:.3f}, permutation p {summary['perm_pvalue']:.3f}"
    )
    typer.echo(f"[{label}] promoted: {'yes' if passed else 'no (the verdict is FAIL)'}")
    typer.echo(f"[{label}] HTML report: {lake.root / summary['report_path']}")
    return str(summary["verdict"])


def print_exit_report(name: str, key: str, label: str) -> str:
    """Print an exit experiment's verdict, reasons, numbers and report path; its verdict."""
    from himari_pipeline.defs.exit_assets import EXIT_SUMMARY, exit_partition
    from himari_pipeline.storage.lake import Lake

    lake = Lake(lake_root())
    s = lake.read_table(EXIT_SUMMARY, exit_partition(name, key)).iloc[-1]
    _print_verdict(label, s)
    typer.echo(
        f"[{label}] test: {int(s['test_trades'])} trades, mean {s['test_mean_return']:+.3%} a trade (fixed "
        f"stops {s['test_fixed_stops_mean_return']:+.3%}), Sharpe {s['test_sharpe']:.2f}; live Sharpe "
        f"{s['live_sharpe']:.2f} (fixed stops {s['live_buy_and_hold_sharpe']:.2f}); DSR {s['dsr']:.3f}, "
        f"permutation p {s['permutation_p']:.3f}; blocked rate {s['test_blocked_rate']:.3f}"
    )
    typer.echo(f"[{label}] HTML report: {lake.root / s['report_path']}")
    return str(s["verdict"])


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
        fail(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    names = check_experiments(list(experiment or PROFILES[profile].experiments))
    keys = check_datasets(list(dataset)) if dataset else []
    if not verbose:
        quiet_python_warnings()
    if not dataset:
        defaults = [default_dataset(n) for n in names]
        keys = check_datasets(defaults if experiment else [*PROFILES[profile].datasets, *defaults])
        pairs = [(n, d) for n, d in zip(names, defaults, strict=True)]
    else:
        pairs = [(n, k) for n in names for k in keys]
    if not materialize_datasets(keys, quiet=not verbose, split_presets=split_presets(pairs)):
        fail("some runs failed (see above)")
    if verbose:
        print_versions(None, None)
    if data_only:
        typer.echo(f"lake: {lake_root()}")
        return
    ok, rejected = train_and_validate(pairs, quiet=not verbose)
    typer.echo(f"lake: {lake_root()}")
    if not ok:
        fail("some runs failed (see above)")
    if rejected and strict:
        fail(f"--strict: verdict FAIL for {', '.join(rejected)}")


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
    _exit_experiments()


def _exit_experiments() -> None:
    """The exit experiments (experiments/exits/): name, default dataset, config hash, where trained."""
    from himari_pipeline.defs.exit_assets import EXIT_SUMMARY
    from himari_pipeline.exits.experiments import list_exit_experiments, load_exit_experiment
    from himari_pipeline.rl.experiments import is_test_experiment
    from himari_pipeline.storage.lake import Lake

    parts = Lake(lake_root()).partitions(EXIT_SUMMARY) if (lake_root() / "catalog.ducklake").exists() else []
    for name in list_exit_experiments(include_test=True):
        try:
            exp = load_exit_experiment(name)
            chash, dataset = exp.config_hash()[:12], exp.dataset
        except (ValueError, FileNotFoundError) as exc:
            chash, dataset = "INVALID", str(exc)[:60]
        where = ", ".join(p[len(f"exit-{name}.") :] for p in parts if p.startswith(f"exit-{name}."))
        tag = " (exit" + (", test-only)" if is_test_experiment(name) else ")")
        typer.echo(f"{name:<16} {dataset:<20} {chash:<13} {where or 'not trained'}{tag}")


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

    (name,) = check_experiments([experiment])
    key = dataset or load_experiment(name).dataset
    try:
        parse_dataset_key(key)
    except ValueError as exc:
        fail(str(exc))
    have = []
    if (lake_root() / "catalog.ducklake").exists():
        have = [p for p in Lake(lake_root()).partitions(SUMMARY) if p.startswith(f"{name}.")]
    if lake_partition(name, key) not in have:
        others = ", ".join(p[len(name) + 1 :] for p in have) or "none"
        fail(
            f"no validation report for {name} on {key} in {lake_root()}; run `himari run -e {name} -d {key}` "
            f"(reports of {name} exist for: {others})"
        )
    print_report(name, key)
