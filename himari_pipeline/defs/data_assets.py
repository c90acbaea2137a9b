"""The data half as software-defined assets: raw bars -> features -> EKF -> regimes -> splits.

Each asset reads its inputs' latest versions from the lake, calls domain code, writes one new
version (atomically) and reports it as Dagster metadata and data version. Partitioned by dataset
(``SYMBOL_TIMEFRAME``).
"""

import tempfile
from pathlib import Path

import dagster as dg

from himari_pipeline import sources
from himari_pipeline.config import raw_dir
from himari_pipeline.datasets import arrays as split_arrays
from himari_pipeline.datasets import splits as split_mod
from himari_pipeline.defs.metadata import png, preview, result
from himari_pipeline.defs.partitions import datasets_partitions
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.ekf import model as ekf_model
from himari_pipeline.ekf import vectorized as ekf_mod
from himari_pipeline.ekf.model import EKFParams
from himari_pipeline.features import compute as features_mod
from himari_pipeline.features.catalog import FEATURE_NAMES, FEATURES
from himari_pipeline.market.bars import parse_dataset_key
from himari_pipeline.plots import denoise_plot, price_plot, regime_plot, splits_plot
from himari_pipeline.regimes import detect as regimes_mod
from himari_pipeline.storage.hashing import code_version

RAW, FEATURES_T, DENOISED, REGIMES, SPLITS = (
    "raw_ohlcv",
    "features",
    "features_denoised",
    "regimes",
    "dataset_splits",
)
SPLIT_SUMMARY = "dataset_split_summary"
POOL = "himari_lake"  # writers to the lake run one at a time (DuckDB: one writer per file)


def _inputs(lake, partition: str, *assets: str) -> dict[str, str]:
    return {a: lake.get_version(a, partition).version for a in assets}


@dg.asset(
    name=RAW,
    partitions_def=datasets_partitions,
    group_name="market_data",
    kinds={"python", "duckdb", "parquet"},
    owners=["team:data"],
    pool=POOL,
    code_version=code_version(sources),
    description="Validated OHLCV bars of one dataset: the built-in synthetic market (SYNTH-PLANTED_*, "
    "SYNTH-NULL_*) or files in data_lake/raw/<SYMBOL>/<TIMEFRAME>/ (Binance klines, CSV, Parquet).",
)
def raw_ohlcv(context: dg.AssetExecutionContext, lake: LakeResource, settings: PipelineSettings):
    key = context.partition_key
    loaded = sources.load_dataset(
        key,
        Path(settings.raw_dir or raw_dir()),
        gap_policy=settings.gap_policy,
        seed=settings.synthetic_seed,
        span=(settings.synthetic_start, settings.synthetic_end),
    )
    bars = loaded.bars
    v = lake.get().write_table(
        RAW,
        key,
        bars,
        inputs={k: f"sha256:{h}" for k, h in loaded.provenance.get("files", {}).items()},
        code_version=code_version(sources),
        run_id=context.run_id,
        metadata={"provenance": loaded.provenance},
    )
    context.log.info(f"{key}: {len(bars)} bars, version {v.short}")
    return result(
        v,
        provenance=dg.MetadataValue.json(loaded.provenance),
        first_bar=dg.MetadataValue.text(str(bars["timestamp"].iloc[0])),
        last_bar=dg.MetadataValue.text(str(bars["timestamp"].iloc[-1])),
        gaps=dg.MetadataValue.int(len(loaded.gaps)),
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
    code_version=code_version(features_mod),
    description="44 causal technical features (returns, trend, momentum, volatility, volume, calendar) "
    "computed with `ta` and pandas; warm-up rows are marked in `warmup`, never back-filled.",
)
def features(context: dg.AssetExecutionContext, lake: LakeResource):
    key, store = context.partition_key, lake.get()
    bars = store.read_table(RAW, key)
    table = features_mod.compute_features(bars)
    v = store.write_table(
        FEATURES_T,
        key,
        table,
        inputs=_inputs(store, key, RAW),
        code_version=code_version(features_mod),
        run_id=context.run_id,
    )
    warm = int(table["warmup"].sum())
    return result(
        v,
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
    code_version=code_version(ekf_model, ekf_mod),
    description="Each feature filtered by a causal Extended Kalman Filter (level + slope state, logistic "
    "measurement for bounded oscillators); filter parameters are stored with the table.",
)
def features_denoised(context: dg.AssetExecutionContext, lake: LakeResource):
    key, store = context.partition_key, lake.get()
    table = store.read_table(FEATURES_T, key)
    params = EKFParams.for_features(FEATURE_NAMES)
    den = ekf_mod.denoise_features(table, params)
    v = store.write_table(
        DENOISED,
        key,
        den,
        inputs=_inputs(store, key, FEATURES_T),
        code_version=code_version(ekf_model, ekf_mod),
        run_id=context.run_id,
        metadata={"ekf_params": params.to_dict()},
    )
    return result(
        v,
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
    code_version=code_version(regimes_mod),
    description="LOW_VOL / TRENDING / HIGH_VOL / CRISIS per bar with a confidence in [0,1], from trailing "
    "volatility percentiles, ADX and drawdown, with hysteresis; no full-sample threshold.",
)
def regimes(context: dg.AssetExecutionContext, lake: LakeResource):
    key, store = context.partition_key, lake.get()
    _, timeframe = parse_dataset_key(key)
    bars = store.read_table(RAW, key)
    params = regimes_mod.RegimeParams()
    table = regimes_mod.detect_regimes(bars, timeframe, params)
    dist = regimes_mod.regime_distribution(table["regime_id"])
    v = store.write_table(
        REGIMES,
        key,
        table,
        inputs=_inputs(store, key, RAW),
        code_version=code_version(regimes_mod),
        run_id=context.run_id,
        metadata={"params": params.to_dict(), "distribution": dist},
    )
    return result(
        v,
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
    """How to split (see ``SplitConfig``): fractions preset ``default`` (60/20/20) or ``bear`` (40/40/20)."""

    fractions: str = "default"
    live_year: int | None = None
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
    description="Train/val/test by time (embargo >= warm-up + context at every boundary) and the last "
    "calendar year held out as the live year, in the array format, exported as a pickle-free .npz.",
)
def dataset_splits(context: dg.AssetExecutionContext, config: SplitsConfig, lake: LakeResource):
    key, store = context.partition_key, lake.get()
    bars = store.read_table(RAW, key)
    feats = store.read_table(FEATURES_T, key)
    den = store.read_table(DENOISED, key)
    regs = store.read_table(REGIMES, key)
    inputs = _inputs(store, key, RAW, FEATURES_T, DENOISED, REGIMES)
    cfg = split_mod.SplitConfig(
        fractions=config.fractions, live_year=config.live_year, context=config.context
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
        npz=dg.MetadataValue.path(str(store.root / v.path)),
        plot=png(splits_plot(bars, plan.ranges, f"{key} splits")),
    )


DATA_ASSETS = [raw_ohlcv, features, features_denoised, regimes, dataset_splits]
