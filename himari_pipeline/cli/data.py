"""``himari ingest``, ``himari datasets`` and ``himari versions``: add files, list datasets and versions."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from himari_pipeline.cli.common import fail, print_versions
from himari_pipeline.cli.jobs import materialize_datasets
from himari_pipeline.config import lake_root, raw_dir
from himari_pipeline.market.bars import dataset_key, parse_dataset_key
from himari_pipeline.market.validation import BarValidationError


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
    ticks: Annotated[
        bool,
        typer.Option(
            "--ticks",
            help="the files are trades (timestamp, price, size): aggregate them into --timeframe bars on "
            "the calendar; the trades of the bar still open wait for the next call",
        ),
    ] = False,
) -> None:
    """Validate files, add them to the lake's raw folder and materialize the dataset.

    With --ticks the files are trades: the bars that have closed are added as one bar file, and the
    trades of the interval still open are kept for the next `himari ingest --ticks` of this dataset.

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
            fail(f"{symbol} is reserved for the built-in synthetic market")
        ingest_mod.check_paths(paths)

        def wait() -> None:
            typer.echo(f"{key}: another ingest into this dataset is running; waiting")

        with (
            ingest_mod.dataset_lock(key, lake_root(), on_wait=wait),
            tempfile.TemporaryDirectory() as staging,
        ):
            stored = sources.dataset_settings(key, raw_dir())
            settings = ingest_mod.resolve_settings(stored, calendar, gap_policy, max_gap_bars)
            tick_plan = None
            try:
                if ticks:
                    tick_plan = ingest_mod.prepare_ticks(key, paths, raw_dir(), settings, Path(staging))
                    typer.echo(
                        f"{key}: {tick_plan.trades:,} trades read, {tick_plan.dropped:,} outside the "
                        f"calendar's sessions dropped, {tick_plan.bars:,} bars closed, "
                        f"{len(tick_plan.pending):,} trades pending until their bar closes"
                    )
                    if tick_plan.bar_file is None:
                        ingest_mod.commit_pending(sources.dataset_folder(key, raw_dir()), tick_plan)
                        typer.echo(f"{key}: no bar has closed yet; nothing else changed")
                        return
                    paths = [tick_plan.bar_file]
                plan = ingest_mod.prepare(key, paths, raw_dir(), settings)
            except BarValidationError as exc:
                fail(f"rejected, nothing changed: {exc}")
            applied = ingest_mod.commit(plan)
            if tick_plan is not None:
                ingest_mod.commit_pending(plan.folder, tick_plan, applied)
            rep = plan.report
            typer.echo(
                f"{key}: {len(plan.new)} new file(s), {len(plan.already_present)} already present, "
                f"{rep.n_rows} bars in total, calendar {settings.calendar}, {len(rep.gaps)} gap(s) "
                f"(longest {rep.longest_gap} bars; policy {settings.gap_policy}, limit "
                f"{'none' if rep.gap_limit is None else rep.gap_limit}), "
                f"{settings.bars_per_year(timeframe):,.1f} bars per year"
            )
            if materialize and not materialize_datasets([key]):
                undone = ingest_mod.rollback(applied)
                fail("materialization failed (see above); rolled back: " + ("; ".join(undone) or "nothing"))
    except ValueError as exc:  # bad names, options or files: IngestError, SettingsError, CalendarError
        fail(str(exc))


def dataset_rows() -> list[dict]:
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


def datasets(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list of objects")] = False,
) -> None:
    """One line per dataset: calendar, first and last bar, bars, gaps, bars per year, latest version."""
    import json

    rows = dataset_rows()
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


def versions(
    asset: Annotated[str | None, typer.Option(help="only this asset")] = None,
    dataset: Annotated[str | None, typer.Option(help="only this dataset key")] = None,
) -> None:
    """List every stored version with its inputs' versions and code version."""
    if dataset:
        parse_dataset_key(dataset)
    print_versions(asset, dataset)
