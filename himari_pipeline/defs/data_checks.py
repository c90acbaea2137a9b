"""Blocking asset checks on every edge of the data half: a failure stops what is downstream."""

import os
import time

import dagster as dg
import numpy as np
import pandas as pd

from himari_pipeline import every_row
from himari_pipeline.causality import check_every_row, check_truncation_invariance, default_prefixes
from himari_pipeline.datasets import arrays as split_arrays
from himari_pipeline.datasets import splits as split_mod
from himari_pipeline.defs.data_assets import DENOISED, FEATURES_T, RAW, REGIMES, SPLITS
from himari_pipeline.defs.partitions import datasets_partitions
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.ekf import vectorized as ekf_mod
from himari_pipeline.ekf.model import EKFParams
from himari_pipeline.features import compute as features_mod
from himari_pipeline.features.catalog import FEATURE_NAMES
from himari_pipeline.market.bars import RAW_COLUMNS, parse_dataset_key
from himari_pipeline.market.validation import BarValidationError, validate_bars
from himari_pipeline.regimes.detect import RegimeParams, detect_regimes
from himari_pipeline.vocabulary import REGIMES as REGIME_NAMES

_CHECK = {"blocking": True, "partitions_def": datasets_partitions}


def _prefix_count(settings: PipelineSettings) -> int:
    return int(os.environ.get("HIMARI_TRUNCATION_PREFIXES", settings.truncation_prefixes))


#: Rows the every-row check compares: ``all`` (default) or the newest N rows
#: (``HIMARI_TRUNCATION_ROWS``). Every row costs well under a millisecond per table
#: (:mod:`himari_pipeline.every_row`): seconds on six years of hourly bars.
TRUNCATION_ROWS_ENV = "HIMARI_TRUNCATION_ROWS"
DEFAULT_TRUNCATION_ROWS = "all"


def _every_row_start(n: int) -> int:
    raw = os.environ.get(TRUNCATION_ROWS_ENV, DEFAULT_TRUNCATION_ROWS).strip().lower()
    if raw == "all":
        return 0
    try:
        rows = int(raw)
    except ValueError:
        raise ValueError(f"{TRUNCATION_ROWS_ENV}={raw!r}: expected 'all' or a whole number of rows") from None
    return max(n - max(rows, 0), 0)


CHECK_RESULTS = "check_results"


def record_check(
    store, dataset: str, check: str, asset: str, passed: bool, summary: str, run_id: str
) -> None:
    """Keep a check's outcome in the lake (partition ``<dataset>.<check>``) next to the version it judged.

    The validation report reads these, so its leakage section shows the upstream causality proof for
    exactly the data the checkpoint was trained on.
    """
    row = pd.DataFrame(
        [
            {
                "dataset": dataset,
                "check_name": check,
                "asset": asset,
                "passed": bool(passed),
                "summary": summary,
                "checked_version": store.get_version(asset, dataset).version,
                "run_id": run_id,
            }
        ]
    )
    store.write_table(CHECK_RESULTS, f"{dataset}.{check}", row, run_id=run_id)


def _truncation(context, compute, step, settings: PipelineSettings, store, asset: str) -> dg.AssetCheckResult:
    """Compare the stored ``asset`` table with ``compute`` re-run on prefixes of the stored raw bars,
    and every row (or the newest ``HIMARI_TRUNCATION_ROWS``) with ``step(bars, start)``: the rows
    from ``start`` on, each computed from the bars up to it alone."""
    bars, stored = (
        store.read_table(RAW, context.partition_key),
        store.read_table(asset, context.partition_key),
    )
    try:
        start = _every_row_start(len(bars))
    except ValueError as exc:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, description=str(exc))
    ks = default_prefixes(len(bars), count=_prefix_count(settings), min_rows=min(500, len(bars) // 2))
    t0 = time.perf_counter()
    report = check_truncation_invariance(compute, bars, full=stored, prefixes=ks)
    t1 = time.perf_counter()
    rows = check_every_row(step(bars, start), stored, start)
    t2 = time.perf_counter()
    passed = report.ok and rows.ok
    summary = rows.summary() if not rows.ok else report.summary() if not report.ok else rows.summary()
    check = f"{asset}_truncation_invariance"
    record_check(store, context.partition_key, check, asset, passed, summary, context.run.run_id)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=summary if passed else f"{summary}. Prefixes: {report.summary()}",
        metadata={
            "prefixes": dg.MetadataValue.json(report.prefixes),
            "every_row_from": dg.MetadataValue.int(start),
            "rows_checked": dg.MetadataValue.int(rows.rows_checked),
            "mismatches": dg.MetadataValue.json((rows.mismatches + report.mismatches)[:20]),
            "prefix_seconds": dg.MetadataValue.float(t1 - t0),
            "every_row_seconds": dg.MetadataValue.float(t2 - t1),
        },
    )


@dg.asset_check(
    asset=RAW,
    name="bars_valid",
    **_CHECK,
    description="Schema, unique strictly increasing timestamps, OHLC consistency, no NaN.",
)
def bars_valid(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    key = context.partition_key
    store = lake.get()
    bars = store.read_table(RAW, key)
    calendar = store.get_version(RAW, key).metadata.get("calendar", "24/7")
    _, timeframe = parse_dataset_key(key)
    where = f"lake:{RAW}/{key}"
    try:
        if list(bars.columns) != list(RAW_COLUMNS):
            raise BarValidationError(
                where, None, "schema", f"columns {list(bars.columns)} != {list(RAW_COLUMNS)}"
            )
        report = validate_bars(bars, timeframe=timeframe, file=where, gap_policy="report", calendar=calendar)
        if not np.array_equal(report.gap_before, bars["gap_before"].to_numpy()):
            raise BarValidationError(where, None, "gap", f"gap_before does not match the {calendar} calendar")
    except BarValidationError as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc))
    return dg.AssetCheckResult(passed=True, metadata={"gaps": len(report.gaps), "calendar": calendar})


@dg.asset_check(
    asset=FEATURES_T,
    name="features_schema_no_nan",
    **_CHECK,
    description="timestamp + 44 named features + warmup; no NaN or inf after the warm-up rows.",
)
def features_schema(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    return _no_nan_after_warmup(lake.get().read_table(FEATURES_T, context.partition_key))


@dg.asset_check(
    asset=DENOISED,
    name="denoised_schema_no_nan",
    **_CHECK,
    description="Same schema as features; no NaN or inf after the warm-up rows.",
)
def denoised_schema(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    return _no_nan_after_warmup(lake.get().read_table(DENOISED, context.partition_key))


def _no_nan_after_warmup(table) -> dg.AssetCheckResult:
    expected = ["timestamp", *FEATURE_NAMES, "warmup"]
    if list(table.columns) != expected:
        missing = sorted(set(expected) - set(table.columns))
        extra = sorted(set(table.columns) - set(expected))
        return dg.AssetCheckResult(passed=False, description=f"schema: missing {missing}, unexpected {extra}")
    values = table[list(FEATURE_NAMES)].to_numpy()
    bad = ~np.isfinite(values) & ~table["warmup"].to_numpy()[:, None]
    warm = table["warmup"].to_numpy()
    warm_not_leading = bool(warm.any() and not warm[: int(warm.sum())].all())
    if bad.any():
        r, c = np.argwhere(bad)[0]
        where = f"row {r} ({table['timestamp'].iloc[r]})"
        return dg.AssetCheckResult(passed=False, description=f"non-finite {FEATURE_NAMES[c]} at {where}")
    if warm_not_leading:
        return dg.AssetCheckResult(passed=False, description="warm-up rows are not a leading block")
    return dg.AssetCheckResult(passed=True, metadata={"warmup_rows": int(warm.sum())})


@dg.asset_check(
    asset=FEATURES_T,
    name="features_truncation_invariance",
    **_CHECK,
    description="Every row equals the row computed from the bars up to it alone (its trailing window "
    "and the EWM states before it), and recomputing on several prefixes bars[:k] gives identical rows.",
)
def features_truncation(context, lake: LakeResource, settings: PipelineSettings) -> dg.AssetCheckResult:
    return _truncation(
        context,
        features_mod.compute_features,
        every_row.features_every_row,
        settings,
        lake.get(),
        FEATURES_T,
    )


@dg.asset_check(
    asset=DENOISED,
    name="denoised_truncation_invariance",
    **_CHECK,
    description="Every row equals the EKF continued over the feature rows up to it, one row at a time, "
    "and recomputing features + EKF on several prefixes bars[:k] gives identical rows.",
)
def denoised_truncation(context, lake: LakeResource, settings: PipelineSettings) -> dg.AssetCheckResult:
    store, key = lake.get(), context.partition_key
    params = EKFParams.from_dict(store.get_version(DENOISED, key).metadata["ekf_params"])

    def compute(bars):
        return ekf_mod.denoise_features(features_mod.compute_features(bars), params)

    def step(bars, start):  # the features are proven row by row by their own check
        return every_row.denoised_every_row(store.read_table(FEATURES_T, key), params, start)

    return _truncation(context, compute, step, settings, store, DENOISED)


@dg.asset_check(
    asset=REGIMES,
    name="regimes_truncation_invariance",
    **_CHECK,
    description="Every row's label and confidence equal those computed from the bars up to it (one bar "
    "at a time), and recomputing on several prefixes bars[:k] gives identical rows.",
)
def regimes_truncation(context, lake: LakeResource, settings: PipelineSettings) -> dg.AssetCheckResult:
    store, key = lake.get(), context.partition_key
    _, timeframe = parse_dataset_key(key)
    params = RegimeParams.from_dict(store.get_version(REGIMES, key).metadata["params"])

    def compute(bars):
        return detect_regimes(bars, timeframe, params)

    def step(bars, start):
        return every_row.regimes_every_row(bars, timeframe, params, start)

    return _truncation(context, compute, step, settings, store, REGIMES)


@dg.asset_check(
    asset=REGIMES,
    name="regimes_valid",
    **_CHECK,
    description="Regime ids in range after warm-up, confidences in [0, 1].",
)
def regimes_valid(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    table = lake.get().read_table(REGIMES, context.partition_key)
    ids, conf = table["regime_id"].to_numpy(), table["confidence"].to_numpy()
    live = ids >= 0
    ok = bool(
        ((ids >= -1) & (ids < len(REGIME_NAMES))).all() and np.all((conf[live] >= 0) & (conf[live] <= 1))
    )
    return dg.AssetCheckResult(passed=ok, metadata={"labelled_rows": int(live.sum())})


@dg.asset_check(
    asset=SPLITS,
    name="splits_disjoint_embargo",
    **_CHECK,
    description="Splits are disjoint, time-ordered, separated by the embargo (label horizon + model "
    "context), NaN-free; the .npz loads with allow_pickle=False.",
)
def splits_disjoint(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    store, key = lake.get(), context.partition_key
    v = store.get_version(SPLITS, key)
    ds = split_arrays.load_npz(store.root / v.path)
    needed = split_mod.SplitConfig.from_dict(v.metadata["plan"]["config"]).min_embargo
    problems = split_mod.check_splits(ds, needed)
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems) or "ok",
        metadata={"embargo_bars": int(v.metadata["plan"]["embargo"]), "embargo_needed": needed},
    )


DATA_CHECKS = [
    bars_valid,
    features_schema,
    features_truncation,
    denoised_schema,
    denoised_truncation,
    regimes_truncation,
    regimes_valid,
    splits_disjoint,
]
