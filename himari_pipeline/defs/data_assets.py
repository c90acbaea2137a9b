"""The data half as software-defined assets: raw bars -> features -> EKF -> regimes -> splits.

Each asset reads its inputs' latest versions from the lake, calls domain code, writes one new
version (atomically) and reports it as Dagster metadata and data version. Partitioned by dataset
(``SYMBOL_TIMEFRAME``).

New bars do not recompute history: when the new input *extends* the one the stored version was
computed from (every stored row identical, new rows after), ``features``, ``features_denoised`` and
``regimes`` continue from the stored tail (:mod:`himari_pipeline.incremental`, bit-identical to a
full recompute) and write stored rows + new rows. ``features`` stores the
:class:`~himari_pipeline.incremental.AppendState` as the lake file asset ``append_state`` (only when
the append path reproduces the full computation); ``features_denoised`` keeps its EKF state in its
version metadata. Anything else (history changed, other code, no state) recomputes in full. The
metadata says which: ``mode`` (``incremental``/``full``), ``appended_rows``, ``compute_seconds``.
"""

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

from himari_pipeline import incremental, sources
from himari_pipeline.config import raw_dir
from himari_pipeline.datasets import arrays as split_arrays
from himari_pipeline.datasets import splits as split_mod
from himari_pipeline.defs.metadata import png, preview, result
from himari_pipeline.defs.partitions import datasets_partitions
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.ekf import model as ekf_model
from himari_pipeline.ekf import vectorized as ekf_mod
from himari_pipeline.ekf.model import EKFParams
from himari_pipeline.ekf.vectorized import EKFState
from himari_pipeline.features import compute as features_mod
from himari_pipeline.features.catalog import FEATURE_NAMES, FEATURES
from himari_pipeline.market.bars import parse_dataset_key
from himari_pipeline.plots import denoise_plot, price_plot, regime_plot, splits_plot
from himari_pipeline.regimes import detect as regimes_mod
from himari_pipeline.storage.hashing import code_version, frame_hash
from himari_pipeline.storage.lake import Lake, Version

RAW, FEATURES_T, DENOISED, REGIMES, SPLITS = (
    "raw_ohlcv",
    "features",
    "features_denoised",
    "regimes",
    "dataset_splits",
)
SPLIT_SUMMARY = "dataset_split_summary"
POOL = "himari_lake"  # writers to the lake run one at a time (DuckDB: one writer per file)


APPEND_STATE = "append_state"  # lake file asset: the AppendState after the latest `features` version
FEATURES_CODE = code_version(features_mod)
DENOISED_CODE = code_version(ekf_model, ekf_mod)
REGIMES_CODE = code_version(regimes_mod)
STATE_CODE = code_version(incremental, features_mod, ekf_model, ekf_mod, regimes_mod)


def _inputs(lake, partition: str, *assets: str) -> dict[str, str]:
    return {a: lake.get_version(a, partition).version for a in assets}


def _ekf_params() -> EKFParams:
    return EKFParams.for_features(FEATURE_NAMES)


def _jsonable(d: dict) -> dict:
    """``d`` as it reads back from version metadata (tuples become lists)."""
    return json.loads(json.dumps(d))


@dataclass
class _Plan:
    """How an asset is computed this run: incremental from ``stored`` (+ a state) or in full (``reason``)."""

    reason: str = ""
    stored: pd.DataFrame | None = None
    n_old: int = 0
    state: incremental.AppendState | None = None
    ekf: EKFState | None = None

    @property
    def mode(self) -> str:
        return "full" if self.stored is None else "incremental"


def _extends(rows: pd.DataFrame, n_old: int, old_version: str | None) -> bool:
    """True when ``rows[:n_old]`` is exactly the table whose content hash is ``old_version``."""
    return bool(old_version) and len(rows) >= n_old and frame_hash(rows.iloc[:n_old]) == old_version


def _load_state(store: Lake, key: str, **inputs: str) -> incremental.AppendState | None:
    """The newest stored AppendState computed by this code whose inputs include ``inputs``."""
    for v in reversed(store.versions(APPEND_STATE, key)):
        if v.code_version == STATE_CODE and v.path and all(v.inputs.get(a) == h for a, h in inputs.items()):
            try:
                return incremental.AppendState.from_json((store.root / v.path).read_text())
            except (OSError, ValueError, KeyError):
                return None
    return None


def _store_state(store: Lake, key: str, state: incremental.AppendState, inputs: dict, run_id: str) -> Version:
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        path = Path(tmp) / "append_state.json"
        path.write_text(state.to_json())
        return store.write_file(
            APPEND_STATE,
            key,
            path,
            inputs=inputs,
            code_version=STATE_CODE,
            run_id=run_id,
            metadata={"n_bars": state.n_bars, "last_bar": str(state.last_timestamp)},
        )


def _plan_from_bars(store: Lake, key: str, asset: str, code: str, bars: pd.DataFrame, **match: str) -> _Plan:
    """Continue ``asset`` (one row per bar) when ``bars`` extend the bars of its stored version."""
    prev = store.latest(asset, key)
    if prev is None:
        return _Plan("no stored version")
    if prev.code_version != code:
        return _Plan(f"code version changed ({prev.code_version} -> {code})")
    raw_old = prev.inputs.get(RAW)
    if not _extends(bars, prev.row_count, raw_old):
        return _Plan("the stored bars changed (the new bars do not extend them)")
    state = _load_state(store, key, **{RAW: raw_old}, **match)
    if state is None:
        return _Plan("no append state for the stored version")
    if (
        state.n_bars != prev.row_count
        or state.regime_params.to_dict() != regimes_mod.RegimeParams().to_dict()
        or state.ekf_params.to_dict() != _ekf_params().to_dict()
    ):
        return _Plan("the append state does not match the stored version")
    return _Plan(stored=store.read_table(asset, key), n_old=prev.row_count, state=state)


def _mode_metadata(plan: _Plan, appended: int, seconds: float) -> tuple[dict, dict]:
    """(lake metadata, Dagster metadata) recording how the table was computed."""
    lake_meta = {"mode": plan.mode, "appended_rows": appended, "compute_seconds": round(seconds, 6)}
    dg_meta = {
        "mode": dg.MetadataValue.text(plan.mode),
        "appended_rows": dg.MetadataValue.int(appended),
        "compute_seconds": dg.MetadataValue.float(seconds),
    }
    if plan.reason:
        lake_meta["full_reason"] = plan.reason
        dg_meta["full_reason"] = dg.MetadataValue.text(plan.reason)
    return lake_meta, dg_meta


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
    code_version=code_version(features_mod),
    description="44 causal technical features (returns, trend, momentum, volatility, volume, calendar) "
    "computed with `ta` and pandas; warm-up rows are marked in `warmup`, never back-filled.",
)
def features(context: dg.AssetExecutionContext, lake: LakeResource):
    key, store = context.partition_key, lake.get()
    _, timeframe = parse_dataset_key(key)
    bars = store.read_table(RAW, key)
    inputs = _inputs(store, key, RAW)
    prev = store.latest(FEATURES_T, key)
    plan = _plan_from_bars(
        store, key, FEATURES_T, FEATURES_CODE, bars, **({FEATURES_T: prev.version} if prev else {})
    )
    t0 = time.perf_counter()
    if plan.state is not None:
        new_bars, state = bars.iloc[plan.n_old :], plan.state
        table = plan.stored
        if len(new_bars):
            rows, _, _, state = incremental.append(state, new_bars, timeframe)
            table = pd.concat([plan.stored, rows], ignore_index=True)
    else:
        table = features_mod.compute_features(bars)
        rows, _, _, state = incremental.initial_state(
            bars, timeframe, regimes_mod.RegimeParams(), _ekf_params()
        )
        if frame_hash(rows) != frame_hash(table):  # never continue from a state the full path disagrees with
            context.log.warning(f"{key}: the append path differs from compute_features; no append state kept")
            state = None
    seconds = time.perf_counter() - t0
    lake_meta, dg_meta = _mode_metadata(plan, len(table) - plan.n_old if plan.state else 0, seconds)
    v = store.write_table(
        FEATURES_T,
        key,
        table,
        inputs=inputs,
        code_version=FEATURES_CODE,
        run_id=context.run_id,
        metadata=lake_meta,
    )
    if state is not None:
        _store_state(store, key, state, {**inputs, FEATURES_T: v.version}, context.run_id)
    context.log.info(
        f"{key}: features {plan.mode} ({lake_meta['appended_rows']} rows appended, {seconds:.3f} s)"
    )
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
    code_version=code_version(ekf_model, ekf_mod),
    description="Each feature filtered by a causal Extended Kalman Filter (level + slope state, logistic "
    "measurement for bounded oscillators); filter parameters are stored with the table.",
)
def features_denoised(context: dg.AssetExecutionContext, lake: LakeResource):
    key, store = context.partition_key, lake.get()
    table = store.read_table(FEATURES_T, key)
    params = _ekf_params()
    plan = _plan_denoised(store, key, table, params)
    t0 = time.perf_counter()
    if plan.ekf is not None:
        den, ekf = plan.stored, plan.ekf
        if len(table) > plan.n_old:
            rows, ekf = ekf_mod.denoise_features_with_state(table.iloc[plan.n_old :], params, plan.ekf)
            den = pd.concat([plan.stored, rows], ignore_index=True)
    else:
        den, ekf = ekf_mod.denoise_features_with_state(table, params)
    seconds = time.perf_counter() - t0
    lake_meta, dg_meta = _mode_metadata(plan, len(den) - plan.n_old if plan.ekf else 0, seconds)
    v = store.write_table(
        DENOISED,
        key,
        den,
        inputs=_inputs(store, key, FEATURES_T),
        code_version=DENOISED_CODE,
        run_id=context.run_id,
        metadata={"ekf_params": params.to_dict(), "ekf_state": ekf.to_dict(), **lake_meta},
    )
    return result(
        v,
        **dg_meta,
        ekf_params=dg.MetadataValue.json(params.to_dict()),
        preview=preview(den.loc[~den["warmup"]]),
        plot=png(denoise_plot(table, den, list(FEATURE_NAMES[:1]) + _bounded_example())),
    )


def _plan_denoised(store: Lake, key: str, table: pd.DataFrame, params: EKFParams) -> _Plan:
    """Continue the filter (state in the stored version's metadata) when ``table`` extends its input."""
    prev = store.latest(DENOISED, key)
    if prev is None:
        return _Plan("no stored version")
    if prev.code_version != DENOISED_CODE:
        return _Plan(f"code version changed ({prev.code_version} -> {DENOISED_CODE})")
    if prev.metadata.get("ekf_params") != _jsonable(params.to_dict()) or "ekf_state" not in prev.metadata:
        return _Plan("no EKF state for these parameters")
    if not _extends(table, prev.row_count, prev.inputs.get(FEATURES_T)):
        return _Plan("the stored features changed (the new rows do not extend them)")
    ekf = EKFState.from_dict(prev.metadata["ekf_state"])
    return _Plan(stored=store.read_table(DENOISED, key), n_old=prev.row_count, ekf=ekf)


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
    plan = _plan_from_bars(store, key, REGIMES, REGIMES_CODE, bars)
    t0 = time.perf_counter()
    if plan.state is not None:
        table = plan.stored
        if len(bars) > plan.n_old:
            _, _, rows, _ = incremental.append(plan.state, bars.iloc[plan.n_old :], timeframe)
            table = pd.concat([plan.stored, rows], ignore_index=True)
    else:
        table = regimes_mod.detect_regimes(bars, timeframe, params)
    seconds = time.perf_counter() - t0
    lake_meta, dg_meta = _mode_metadata(plan, len(table) - plan.n_old if plan.state else 0, seconds)
    dist = regimes_mod.regime_distribution(table["regime_id"])
    v = store.write_table(
        REGIMES,
        key,
        table,
        inputs=_inputs(store, key, RAW),
        code_version=REGIMES_CODE,
        run_id=context.run_id,
        metadata={"params": params.to_dict(), "distribution": dist, **lake_meta},
    )
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
