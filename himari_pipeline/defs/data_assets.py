"""The data half as software-defined assets: raw bars -> features -> EKF -> regimes -> splits.

Each asset reads its inputs' latest versions from the lake, calls domain code, writes one new
version (atomically) and reports it as Dagster metadata and data version. Partitioned by dataset
(``SYMBOL_TIMEFRAME``).

New bars do not recompute history: each of ``features``, ``features_denoised`` and ``regimes``
keeps its own append state in its version metadata (``append_state``) and the asset calls one
domain function (:mod:`himari_pipeline.incremental`) that continues the table from it when the new
input extends the stored one, or recomputes it in full (history changed, other code, no state). The
metadata says which: ``mode`` (``incremental``/``full``), ``appended_rows``, ``compute_seconds``.
"""

import tempfile
from dataclasses import asdict
from pathlib import Path

import dagster as dg

from himari_pipeline import bar_tail, incremental, sources
from himari_pipeline.config import raw_dir
from himari_pipeline.datasets import arrays as split_arrays
from himari_pipeline.datasets import splits as split_mod
from himari_pipeline.defs.metadata import png, preview, result
from himari_pipeline.defs.partitions import datasets_partitions
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.ekf import model as ekf_model
from himari_pipeline.ekf import vectorized as ekf_mod
from himari_pipeline.ekf.model import EKFParams
from himari_pipeline.features import append as features_append
from himari_pipeline.features import compute as features_mod
from himari_pipeline.features.catalog import FEATURE_NAMES, FEATURES
from himari_pipeline.market.bars import parse_dataset_key
from himari_pipeline.plots import denoise_plot, price_plot, regime_plot, splits_plot
from himari_pipeline.regimes import append as regimes_append
from himari_pipeline.regimes import detect as regimes_mod
from himari_pipeline.storage.hashing import code_version
from himari_pipeline.storage.lake import Lake

RAW, FEATURES_T, DENOISED, REGIMES, SPLITS = (
    "raw_ohlcv",
    "features",
    "features_denoised",
    "regimes",
    "dataset_splits",
)
SPLIT_SUMMARY = "dataset_split_summary"
POOL = "himari_lake"  # writers to the lake run one at a time (DuckDB: one writer per file)


STATE_KEY = "append_state"  # version metadata: the state the table is continued from
FEATURES_CODE = code_version(features_mod, features_append, bar_tail, incremental)
DENOISED_CODE = code_version(ekf_model, ekf_mod, incremental)
REGIMES_CODE = code_version(regimes_mod, regimes_append, bar_tail, incremental)


def _inputs(lake, partition: str, *assets: str) -> dict[str, str]:
    return {a: lake.get_version(a, partition).version for a in assets}


def _ekf_params() -> EKFParams:
    return EKFParams.for_features(FEATURE_NAMES)


def _stored(store: Lake, key: str, asset: str, input_asset: str) -> incremental.Stored | None:
    """What the lake holds for ``asset`` (its newest version), for the domain's planning."""
    prev = store.latest(asset, key)
    if prev is None:
        return None
    return incremental.Stored(
        n_rows=prev.row_count or 0,
        input_version=prev.inputs.get(input_asset),
        code_version=prev.code_version,
        state=prev.metadata.get(STATE_KEY),
        load=lambda: store.read_table(asset, key, prev.version),
    )


def _write(context, store: Lake, asset: str, up: incremental.Update, inputs: dict, code: str, **meta):
    """Write the updated table with its state and how it was computed; Dagster metadata for it."""
    v = store.write_table(
        asset,
        context.partition_key,
        up.table,
        inputs=inputs,
        code_version=code,
        run_id=context.run_id,
        metadata={**meta, **up.metadata(), STATE_KEY: up.state},
    )
    context.log.info(
        f"{context.partition_key}: {asset} {up.mode} ({up.appended} rows appended, {up.seconds:.3f} s)"
    )
    dg_meta = {
        "mode": dg.MetadataValue.text(up.mode),
        "appended_rows": dg.MetadataValue.int(up.appended),
        "compute_seconds": dg.MetadataValue.float(up.seconds),
    }
    if up.reason:
        dg_meta["full_reason"] = dg.MetadataValue.text(up.reason)
    return v, dg_meta


@dg.asset(
    name=RAW,
    partitions_def=datasets_partitions,
    group_name="market_data",
    kinds={"python", "duckdb", "parquet"},
    owners=["team:data"],
    pool=POOL,
    code_version=code_version(sources),
    description="Validated OHLCV bars of one dataset: the built-in synthetic market (SYNTH-PLANTED_*, "
    "SYNTH-NULL_*, SYNTH-PLANTED-S<seed>_*, ...) or files in data_lake/raw/<SYMBOL>/<TIMEFRAME>/ (Binance "
    "klines, CSV, Parquet).",
)
def raw_ohlcv(context: dg.AssetExecutionContext, lake: LakeResource, settings: PipelineSettings):
    key = context.partition_key
    loaded = sources.load_dataset(
        key,
        Path(settings.raw_dir or raw_dir()),
        seed=settings.synthetic_seed,
        span=(settings.synthetic_start, settings.synthetic_end),
    )
    bars, ds = loaded.bars, loaded.settings
    _, timeframe = parse_dataset_key(key)
    gaps = [asdict(g) for g in loaded.gaps]
    longest = max((g["missing_bars"] for g in gaps), default=0)
    summary = {
        "calendar": ds.calendar,
        "first_bar": str(bars["timestamp"].iloc[0]),
        "last_bar": str(bars["timestamp"].iloc[-1]),
        "gap_policy": ds.gap_policy,
        "gap_limit_bars": ds.gap_limit(timeframe),
        "bars_per_year": loaded.bars_per_year,
        "gap_count": len(gaps),
        "longest_gap_bars": longest,
        "missing_bars": int(sum(g["missing_bars"] for g in gaps)),
        "late_prints": [list(x) for x in (loaded.report.late_prints if loaded.report else [])],
    }
    inputs = {k: f"sha256:{h}" for k, h in loaded.provenance.get("files", {}).items()}
    inputs.update({k: f"sha256:{h}" for k, h in loaded.provenance.get("settings", {}).items()})
    v = lake.get().write_table(
        RAW,
        key,
        bars,
        inputs=inputs,
        code_version=code_version(sources),
        run_id=context.run_id,
        metadata={"provenance": loaded.provenance, **summary, "gaps": gaps[:1000]},
    )
    context.log.info(
        f"{key}: {len(bars)} bars, calendar {ds.calendar}, {len(gaps)} gap(s), version {v.short}"
    )
    gap_rows = "\n".join(
        f"| {g['file']} | {g['row']} | {g['before']} | {g['after']} | {g['missing_bars']} |"
        for g in gaps[:50]
    )
    return result(
        v,
        provenance=dg.MetadataValue.json(loaded.provenance),
        first_bar=dg.MetadataValue.text(str(bars["timestamp"].iloc[0])),
        last_bar=dg.MetadataValue.text(str(bars["timestamp"].iloc[-1])),
        calendar=dg.MetadataValue.text(ds.calendar),
        bars_per_year=dg.MetadataValue.float(float(loaded.bars_per_year)),
        gap_policy=dg.MetadataValue.text(f"{ds.gap_policy} (limit {summary['gap_limit_bars']} bars)"),
        gaps=dg.MetadataValue.int(len(gaps)),
        longest_gap_bars=dg.MetadataValue.int(longest),
        gap_list=dg.MetadataValue.md(
            "| file | row | last bar before | first bar after | missing bars |\n|---|---|---|---|---|\n"
            + gap_rows
            if gaps
            else "no gaps"
        ),
        preview=preview(bars),
        plot=png(price_plot(bars, f"{key} close")),
    )


@dg.asset(
    name=FEATURES_T,
    deps=[RAW],
    partitions_def=datasets_partitions,
    group_name="features",
    kinds={"python", "pandas", "parquet"},
    owners=["team:research"],
    pool=POOL,
    code_version=FEATURES_CODE,
    description="44 causal technical features (returns, trend, momentum, volatility, volume, calendar) "
    "computed with `ta` and pandas; warm-up rows are marked in `warmup`, never back-filled.",
)
def features(context: dg.AssetExecutionContext, lake: LakeResource):
    key, store = context.partition_key, lake.get()
    bars = store.read_table(RAW, key)
    up = incremental.update_features(bars, _stored(store, key, FEATURES_T, RAW), FEATURES_CODE)
    v, dg_meta = _write(context, store, FEATURES_T, up, _inputs(store, key, RAW), FEATURES_CODE)
    table = up.table
    warm = int(table["warmup"].sum())
    return result(
        v,
        **dg_meta,
        n_features=dg.MetadataValue.int(len(FEATURE_NAMES)),
        warmup_rows=dg.MetadataValue.int(warm),
        feature_catalog=dg.MetadataValue.md(
            "| feature | group | description |\n|---|---|---|\n"
            + "\n".join(f"| {f.name} | {f.group} | {f.description} |" for f in FEATURES)
        ),
        preview=preview(table.iloc[warm:]),
    )


@dg.asset(
    name=DENOISED,
    deps=[FEATURES_T],
    partitions_def=datasets_partitions,
    group_name="features",
    kinds={"python", "numba", "parquet"},
    owners=["team:research"],
    pool=POOL,
    code_version=DENOISED_CODE,
    description="Each feature filtered by a causal Extended Kalman Filter (level + slope state, logistic "
    "measurement for bounded oscillators); filter parameters are stored with the table.",
)
def features_denoised(context: dg.AssetExecutionContext, lake: LakeResource):
    key, store = context.partition_key, lake.get()
    table = store.read_table(FEATURES_T, key)
    params = _ekf_params()
    up = incremental.update_denoised(table, _stored(store, key, DENOISED, FEATURES_T), DENOISED_CODE, params)
    inputs = _inputs(store, key, FEATURES_T)
    v, dg_meta = _write(context, store, DENOISED, up, inputs, DENOISED_CODE, ekf_params=params.to_dict())
    den = up.table
    return result(
        v,
        **dg_meta,
        ekf_params=dg.MetadataValue.json(params.to_dict()),
        preview=preview(den.loc[~den["warmup"]]),
        plot=png(denoise_plot(table, den, list(FEATURE_NAMES[:1]) + _bounded_example())),
    )


def _bounded_example() -> list[str]:
    bounded = [f.name for f in FEATURES if f.bounds is not None]
    return bounded[:1]


@dg.asset(
    name=REGIMES,
    deps=[RAW],
    partitions_def=datasets_partitions,
    group_name="regimes",
    kinds={"python", "parquet"},
    owners=["team:research"],
    pool=POOL,
    code_version=REGIMES_CODE,
    description="LOW_VOL / TRENDING / HIGH_VOL / CRISIS per bar with a confidence in [0,1], from trailing "
    "volatility percentiles, ADX and drawdown, with hysteresis; no full-sample threshold.",
)
def regimes(context: dg.AssetExecutionContext, lake: LakeResource):
    key, store = context.partition_key, lake.get()
    _, timeframe = parse_dataset_key(key)
    bars = store.read_table(RAW, key)
    params = regimes_mod.RegimeParams()
    stored = _stored(store, key, REGIMES, RAW)
    up = incremental.update_regimes(bars, stored, REGIMES_CODE, timeframe, params)
    table = up.table
    dist = regimes_mod.regime_distribution(table["regime_id"])
    meta = {"params": params.to_dict(), "distribution": dist}
    v, dg_meta = _write(context, store, REGIMES, up, _inputs(store, key, RAW), REGIMES_CODE, **meta)
    return result(
        v,
        **dg_meta,
        distribution=dg.MetadataValue.md(
            "| regime | share |\n|---|---|\n" + "\n".join(f"| {k} | {s:.1%} |" for k, s in dist.items())
        ),
        switches_per_1000_bars=dg.MetadataValue.float(
            float(regimes_mod.switches_per_1000(table["regime_id"]))
        ),
        params=dg.MetadataValue.json(params.to_dict()),
        plot=png(regime_plot(bars, table, regimes_mod.REGIMES, f"{key} regimes")),
    )


class SplitsConfig(dg.Config):
    """How to split (see ``SplitConfig``), set per run in the launchpad / run config.

    ``fractions``: preset ``default`` (60/20/20) or ``bear`` (40/40/20). ``live``: ``auto`` (the last
    calendar year when at least as many rows precede it, else the last ``live_fraction``), ``year``
    (``live_year``, default the last), ``fraction`` or ``date`` (bars closing after ``live_start``).
    ``context``: the longest model context any experiment uses (the embargo is context + 1 bars).
    """

    fractions: str = "default"
    live: str = "auto"
    live_year: int | None = None
    live_fraction: float = 0.2
    live_start: str | None = None
    context: int = 100


@dg.asset(
    name=SPLITS,
    deps=[RAW, FEATURES_T, DENOISED, REGIMES],
    partitions_def=datasets_partitions,
    group_name="datasets",
    kinds={"python", "numpy"},
    owners=["team:research"],
    pool=POOL,
    code_version=code_version(split_mod, split_arrays),
    description="Train/val/test by time (embargo >= label horizon + model context at every boundary) and "
    "a held-out live segment (the last calendar year, or the last 20% when too little history precedes "
    "it), in the array format, exported as a pickle-free .npz.",
)
def dataset_splits(context: dg.AssetExecutionContext, config: SplitsConfig, lake: LakeResource):
    key, store = context.partition_key, lake.get()
    bars = store.read_table(RAW, key)
    feats = store.read_table(FEATURES_T, key)
    den = store.read_table(DENOISED, key)
    regs = store.read_table(REGIMES, key)
    inputs = _inputs(store, key, RAW, FEATURES_T, DENOISED, REGIMES)
    cfg = split_mod.SplitConfig(
        fractions=config.fractions,
        live=config.live,
        live_year=config.live_year,
        live_fraction=config.live_fraction,
        live_start=config.live_start,
        context=config.context,
    )
    plan = split_mod.plan_splits(bars["timestamp"], split_mod.required_warmup(feats, den, regs), cfg)
    ds = split_mod.build_splits(bars, feats, den, regs, list(FEATURE_NAMES), plan, input_versions=inputs)
    problems = split_mod.check_splits(ds, plan.embargo)
    if problems:
        raise ValueError(f"{key}: invalid splits: {problems}")
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        path = split_arrays.export_npz(ds, Path(tmp) / f"{key}.npz")
        v = store.write_file(
            SPLITS,
            key,
            path,
            inputs=inputs,
            code_version=code_version(split_mod, split_arrays),
            run_id=context.run_id,
            metadata={"plan": plan.to_dict(), "sizes": plan.sizes()},
            row_count=sum(plan.sizes().values()),  # samples over all splits
        )
    store.write_table(
        SPLIT_SUMMARY,
        key,
        split_mod.split_summary(ds, plan.embargo, v.version),
        inputs={SPLITS: v.version},
        code_version=code_version(split_mod),
        run_id=context.run_id,
    )
    sizes = plan.sizes()
    dist = ds.metadata.get("regime_distribution", {})
    rows = "\n".join(
        f"| {s} | {sizes[s]} | {plan.bounds.get(s, ('', ''))[0]} | {plan.bounds.get(s, ('', ''))[1]} | "
        + " | ".join(f"{dist.get(s, {}).get(r, 0.0):.1%}" for r in regimes_mod.REGIMES)
        + " |"
        for s in sizes
    )
    header = "| split | rows | first | last | " + " | ".join(regimes_mod.REGIMES) + " |\n"
    return result(
        v,
        splits=dg.MetadataValue.md(header + "|---" * (4 + len(regimes_mod.REGIMES)) + "|\n" + rows),
        embargo_bars=dg.MetadataValue.int(plan.embargo),
        live_segment=dg.MetadataValue.text(plan.live_reason),
        npz=dg.MetadataValue.path(str(store.root / v.path)),
        plot=png(splits_plot(bars, plan.ranges, f"{key} splits")),
    )


DATA_ASSETS = [raw_ohlcv, features, features_denoised, regimes, dataset_splits]
