"""Leak detection at every cut point: a look-ahead confined to one row is caught and named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from himari_pipeline import every_row
from himari_pipeline.causality import check_every_row, check_truncation_invariance, default_prefixes
from himari_pipeline.ekf import EKFParams, denoise_features
from himari_pipeline.ekf import vectorized as ekf_vectorized
from himari_pipeline.features import compute as features_compute
from himari_pipeline.features.catalog import FEATURE_NAMES
from himari_pipeline.features.compute import compute_features
from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars
from himari_pipeline.regimes import detect as regimes_detect
from himari_pipeline.regimes.detect import detect_regimes

LEAK_ROW = 800  # the one row whose value peeks at the next bar (after every warm-up)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    cfg = SyntheticConfig(seed=3, variant="planted", start="2024-01-01", end="2024-02-08", timeframe="1h")
    return generate_synthetic_bars(cfg)


def _data_check_prefixes(n: int) -> list[int]:
    """The prefixes the Dagster truncation checks draw (6 by default)."""
    return default_prefixes(n, count=6, min_rows=min(500, n // 2))


def plant_feature_leak(monkeypatch, when: pd.Timestamp, column: str = "rsi_14") -> None:
    """The shared feature code, with the row closing at ``when`` reading the next bar's close."""
    real = features_compute.feature_arrays

    def leaky(cols, ewm, first=0):
        f = real(cols, ewm, first)
        rows, pos = np.nonzero(np.atleast_2d(cols["ns"])[:, :-1] == when.value)  # has a next bar
        if len(pos):
            c = np.atleast_2d(cols["close"])
            x = np.atleast_2d(f[column]).copy()
            x[rows, pos] = 100.0 * (c[rows, pos + 1] > c[rows, pos])  # tomorrow's direction
            f[column] = x.reshape(np.shape(f[column]))
        return f

    monkeypatch.setattr(features_compute, "feature_arrays", leaky)


@pytest.mark.timeout(120)
def test_one_row_feature_leak_is_missed_by_prefixes_and_caught_at_its_row(bars, monkeypatch):
    leak_ts = bars["timestamp"].iloc[LEAK_ROW]
    plant_feature_leak(monkeypatch, leak_ts)
    full = compute_features(bars)  # the stored table, computed with the leak
    assert full["rsi_14"].iloc[LEAK_ROW] in (0.0, 100.0)
    ks = _data_check_prefixes(len(bars))
    assert check_truncation_invariance(
        compute_features, bars, full=full, prefixes=ks
    ).ok  # 6 prefixes miss it

    report = check_every_row(every_row.features_every_row(bars), full)
    assert not report.ok and report.rows_checked == len(bars)
    assert [(m["column"], m["row"], m["n_diff"]) for m in report.mismatches] == [("rsi_14", LEAK_ROW, 1)]
    summary = report.summary()
    assert f"column 'rsi_14' at row {LEAK_ROW} ({leak_ts})" in summary, summary

    monkeypatch.undo()
    clean = compute_features(bars)
    ok = check_every_row(every_row.features_every_row(bars), clean)
    assert ok.ok and ok.rows_checked == len(bars) and "identical rows on every row from row 0" in ok.summary()
    # only the newest rows
    tail = check_every_row(every_row.features_every_row(bars, start=LEAK_ROW), clean, start=LEAK_ROW)
    assert tail.ok and tail.rows_checked == len(bars) - LEAK_ROW


@pytest.mark.parametrize(
    "row", [0, 5, every_row.FEATURE_WINDOW - 2, every_row.FEATURE_WINDOW - 1, LEAK_ROW + 50]
)
def test_a_leak_on_any_row_is_caught_whether_its_window_is_a_prefix_or_trailing(bars, monkeypatch, row):
    plant_feature_leak(monkeypatch, bars["timestamp"].iloc[row], "hour_sin")
    full = compute_features(bars)
    report = check_every_row(every_row.features_every_row(bars), full)
    assert [(m["column"], m["row"], m["n_diff"]) for m in report.mismatches] == [("hour_sin", row, 1)]


def test_a_tampered_stored_value_is_caught_even_one_ulp_off(bars):
    full = compute_features(bars)
    bad = full.copy()
    bad.loc[LEAK_ROW, "cci_20"] = np.nextafter(bad.loc[LEAK_ROW, "cci_20"], np.inf)
    report = check_every_row(every_row.features_every_row(bars, start=LEAK_ROW - 3), bad, start=LEAK_ROW - 3)
    assert [(m["column"], m["row"]) for m in report.mismatches] == [("cci_20", LEAK_ROW)]


def test_one_row_denoiser_leak_is_caught_at_its_row(bars, monkeypatch):
    feats = compute_features(bars)
    params = EKFParams.for_features(FEATURE_NAMES)
    real = ekf_vectorized.ekf_filter

    def leaky(x, p, state=None):  # a filter that, on one row, averages in the next feature row
        out, st = real(x, p, state)
        if len(x) > LEAK_ROW + 1:
            out[LEAK_ROW, 2] = 0.5 * (out[LEAK_ROW, 2] + x[LEAK_ROW + 1, 2])
        return out, st

    monkeypatch.setattr(ekf_vectorized, "ekf_filter", leaky)
    full = denoise_features(feats, params)
    report = check_every_row(every_row.denoised_every_row(feats, params), full)
    assert [(m["column"], m["row"]) for m in report.mismatches] == [(FEATURE_NAMES[2], LEAK_ROW)]

    monkeypatch.undo()
    assert check_every_row(every_row.denoised_every_row(feats, params), denoise_features(feats, params)).ok


@pytest.mark.timeout(180)
@pytest.mark.parametrize("row", [LEAK_ROW, 300])
def test_one_row_regime_leak_is_caught_at_its_row(bars, monkeypatch, row):
    real = regimes_detect.indicator_arrays
    leak_close = bars["close"].iloc[row]  # the regime code sees prices only; closes are unique here
    assert (bars["close"] == leak_close).sum() == 1

    def leaky(close, high, low, *args, **kwargs):  # the drawdown of one bar against the next close
        ind = real(close, high, low, *args, **kwargs)
        c = np.atleast_2d(close)
        rows, pos = np.nonzero(c[:, :-1] == leak_close)
        dd = np.atleast_2d(ind["drawdown"]).copy()
        dd[rows, pos] = np.minimum(c[rows, pos + 1] / c[rows, pos] - 1.0, 0.0) - 0.5
        ind["drawdown"] = dd.reshape(np.shape(ind["drawdown"]))
        return ind

    monkeypatch.setattr(regimes_detect, "indicator_arrays", leaky)
    full = detect_regimes(bars, "1h")
    assert full["drawdown"].iloc[row] < -0.4
    report = check_every_row(every_row.regimes_every_row(bars, "1h"), full)
    cols = {m["column"]: m["row"] for m in report.mismatches}
    assert cols.get("drawdown") == row and min(cols.values()) == row

    monkeypatch.undo()
    assert check_every_row(every_row.regimes_every_row(bars, "1h"), detect_regimes(bars, "1h")).ok


def test_a_one_bar_input_gives_the_full_tables_first_row(bars):
    params = EKFParams.for_features(FEATURE_NAMES)
    full = compute_features(bars)
    full_den = denoise_features(full, params)
    full_reg = detect_regimes(bars, "1h")
    for k in (1, 2, 3):
        part = compute_features(bars.iloc[:k])
        pd.testing.assert_frame_equal(part, full.iloc[:k], check_exact=True)
        pd.testing.assert_frame_equal(denoise_features(part, params), full_den.iloc[:k], check_exact=True)
        pd.testing.assert_frame_equal(
            detect_regimes(bars.iloc[:k], "1h"), full_reg.iloc[:k], check_exact=True
        )
    first = compute_features(bars.iloc[:1])
    defined = [c for c in FEATURE_NAMES if np.isfinite(first[c].iloc[0])]
    # a single bar defines its own candle and calendar features; the rest wait for their windows
    assert set(defined) == {"logret_oc", "hl_range", "hour_sin", "hour_cos", "dow_sin", "dow_cos"}
    assert bool(first["warmup"].iloc[0]) and bool(full["warmup"].iloc[0])


def test_rows_setting_all_newest_n_or_a_clear_error(monkeypatch):
    from himari_pipeline.defs.data_checks import _every_row_start

    monkeypatch.setenv("HIMARI_TRUNCATION_ROWS", "all")
    assert _every_row_start(1000) == 0
    monkeypatch.setenv("HIMARI_TRUNCATION_ROWS", "300")
    assert (_every_row_start(1000), _every_row_start(200)) == (700, 0)
    monkeypatch.setenv("HIMARI_TRUNCATION_ROWS", "many")
    with pytest.raises(ValueError, match="HIMARI_TRUNCATION_ROWS='many': expected 'all' or a whole number"):
        _every_row_start(1000)
