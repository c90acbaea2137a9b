"""The 44 causal features: catalog, warm-up, truncation invariance, leak detection, scale invariance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ta.momentum import StochasticOscillator, WilliamsRIndicator
from ta.trend import AroonIndicator, CCIIndicator
from ta.volume import MFIIndicator

from himari_pipeline.causality import check_truncation_invariance
from himari_pipeline.features import FEATURE_NAMES, FEATURES, GROUPS, WARMUP_BARS, compute_features
from himari_pipeline.features.catalog import FEATURE_BY_NAME, features_in_group


def random_walk_bars(n: int, seed: int = 0, start: str = "2021-03-01 00:05") -> pd.DataFrame:
    """Random-walk OHLCV bars (5-minute, UTC close times) with fat-tailed returns."""
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(0.002 * rng.standard_t(4, n)))
    open_ = np.r_[30_000.0, close[:-1]][:n] * np.exp(rng.normal(0, 3e-4, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 1e-3, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 1e-3, n)))
    volume = rng.lognormal(3.0, 1.0, n)
    ts = pd.date_range(start, periods=n, freq="5min", tz="UTC")
    return pd.DataFrame(
        {"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return random_walk_bars(1500, seed=1)


@pytest.fixture(scope="module")
def feats(bars: pd.DataFrame) -> pd.DataFrame:
    return compute_features(bars)


def test_catalog_has_44_unique_described_features_spread_over_groups() -> None:
    assert len(FEATURES) == 44 == len(set(FEATURE_NAMES))
    for spec in FEATURES:
        assert spec.group in GROUPS
        assert len(spec.description) > 10, spec.name
        if spec.bounds is not None:
            assert spec.bounds[0] < spec.bounds[1]
    counts = {g: len(features_in_group(g)) for g in GROUPS}
    assert all(c >= 4 for c in counts.values()), counts
    assert sum(counts.values()) == 44


def test_schema_and_dtypes(feats: pd.DataFrame, bars: pd.DataFrame) -> None:
    assert list(feats.columns) == ["timestamp", *FEATURE_NAMES, "warmup"]
    assert (feats["timestamp"] == bars["timestamp"]).all()
    assert all(feats[n].dtype == np.float64 for n in FEATURE_NAMES)
    assert feats["warmup"].dtype == bool


def test_warmup_is_tight_and_no_nan_after_it(feats: pd.DataFrame) -> None:
    x = feats[list(FEATURE_NAMES)].to_numpy()
    any_nan = np.isnan(x).any(axis=1)
    # exactly the first WARMUP_BARS rows have a NaN: the constant is neither too small nor too large
    assert any_nan[:WARMUP_BARS].all()
    assert not any_nan[WARMUP_BARS:].any()
    np.testing.assert_array_equal(feats["warmup"].to_numpy(), any_nan)
    # NaN is never back-filled: each feature's NaNs form a leading block
    for j, name in enumerate(FEATURE_NAMES):
        first_valid = int(np.argmin(np.isnan(x[:, j])))
        assert not np.isnan(x[first_valid:, j]).any(), name


def test_bounded_features_stay_in_bounds(feats: pd.DataFrame) -> None:
    for spec in FEATURES:
        if spec.bounds is None:
            continue
        v = feats[spec.name].dropna().to_numpy()
        assert v.min() >= spec.bounds[0] and v.max() <= spec.bounds[1], spec.name


def test_truncation_invariance_exact(bars: pd.DataFrame, feats: pd.DataFrame) -> None:
    ks = [3, 30, 150, WARMUP_BARS - 1, WARMUP_BARS + 1, 640, 999, 1377]
    report = check_truncation_invariance(compute_features, bars, full=feats, prefixes=ks)
    assert report.ok, report.summary()


def test_checker_catches_planted_leaks(bars: pd.DataFrame) -> None:
    def leaky(b: pd.DataFrame) -> pd.DataFrame:
        out = compute_features(b)
        out["leak_centred"] = (b["close"].rolling(5, center=True).mean() / b["close"]).to_numpy()
        gappy = out["rsi_14"].where(np.arange(len(out)) % 7 != 0)  # a feature with holes ...
        out["leak_bfill"] = gappy.bfill()  # ... filled from the next bar
        return out

    # k = 400: the prefix ends on a hole (399 % 7 == 0), which only the full table can fill
    report = check_truncation_invariance(leaky, bars, prefixes=[20, 400, 901])
    assert not report.ok
    assert {m["column"] for m in report.mismatches} == {"leak_centred", "leak_bfill"}
    assert "leak_" in report.summary()


@pytest.mark.parametrize("factor", [10.0, 1024.0])
def test_price_scale_invariance(bars: pd.DataFrame, feats: pd.DataFrame, factor: float) -> None:
    scaled = bars.copy()
    scaled[["open", "high", "low", "close"]] *= factor
    other = compute_features(scaled)
    for name in FEATURE_NAMES:
        a, b = feats[name].to_numpy(), other[name].to_numpy()
        if factor == 1024.0:  # a power of two scales exactly in binary floating point
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-12, err_msg=name)


def test_volume_features_are_volume_scale_invariant(bars: pd.DataFrame, feats: pd.DataFrame) -> None:
    scaled = bars.copy()
    scaled["volume"] *= 1000.0
    other = compute_features(scaled)
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(other[name], feats[name], rtol=1e-7, atol=1e-12, err_msg=name)


def test_hand_computed_values(bars: pd.DataFrame, feats: pd.DataFrame) -> None:
    c, h, lo, o = (bars[k].to_numpy() for k in ("close", "high", "low", "open"))
    t = 700
    assert feats["logret_12"][t] == pytest.approx(np.log(c[t] / c[t - 12]), rel=1e-12)
    r = np.log(c[1:] / c[:-1])
    assert feats["rv_12"][t] == pytest.approx(np.std(r[t - 12 : t], ddof=1), rel=1e-9)
    assert feats["close_sma_50"][t] == pytest.approx(c[t] / c[t - 49 : t + 1].mean() - 1, rel=1e-9, abs=1e-15)
    hl = np.log(h / lo)[t - 23 : t + 1]
    assert feats["parkinson_24"][t] == pytest.approx(np.sqrt(np.mean(hl**2) / (4 * np.log(2))), rel=1e-9)
    assert feats["hl_range"][t] == pytest.approx(np.log(h[t] / lo[t]), rel=1e-12)
    assert feats["logret_oc"][t] == pytest.approx(np.log(c[t] / o[t]), rel=1e-12)
    w = slice(t - 13, t + 1)
    assert feats["stoch_k_14"][t] == pytest.approx(100 * (c[t] - lo[w].min()) / (h[w].max() - lo[w].min()))
    signs = np.where(c[t - 23 : t + 1] < c[t - 24 : t], -1.0, 1.0)
    v = bars["volume"].to_numpy()[t - 23 : t + 1]
    assert feats["obv_change_24"][t] == pytest.approx(np.sum(signs * v) / v.sum(), rel=1e-9)


def test_calendar_uses_close_time() -> None:
    b = random_walk_bars(3, start="2024-01-01 06:00")  # Monday 06:00 UTC
    f = compute_features(b)
    assert f["hour_sin"][0] == pytest.approx(1.0) and f["hour_cos"][0] == pytest.approx(0.0, abs=1e-12)
    assert f["dow_sin"][0] == pytest.approx(0.0, abs=1e-12) and f["dow_cos"][0] == pytest.approx(1.0)
    assert f["hour_sin"][1] == pytest.approx(np.sin(2 * np.pi * (6 + 5 / 60) / 24))


def _wilder_loop(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder smoothing written out by hand; ``x[0]`` is NaN (no previous bar)."""
    out = np.full(len(x), np.nan)
    s = np.nan
    for i in range(1, len(x)):
        s = x[i] if i == 1 else s + (x[i] - s) / n
        if i >= n:
            out[i] = s
    return out


def test_reimplemented_indicators_match_ta_and_hand_loops(bars: pd.DataFrame, feats: pd.DataFrame) -> None:
    h, lo, c, v = (bars[k] for k in ("high", "low", "close", "volume"))
    cci = CCIIndicator(h, lo, c, 20, fillna=False).cci().to_numpy()
    np.testing.assert_allclose(feats["cci_20"], cci, rtol=1e-9, atol=1e-9)
    aroon = AroonIndicator(h, lo, 25, fillna=False)
    np.testing.assert_array_equal(feats["aroon_up_25"], aroon.aroon_up().to_numpy())
    np.testing.assert_array_equal(feats["aroon_down_25"], aroon.aroon_down().to_numpy())
    stoch = StochasticOscillator(h, lo, c, window=14, smooth_window=3, fillna=False).stoch().to_numpy()
    np.testing.assert_array_equal(feats["stoch_k_14"], stoch)  # bit for bit
    wr = WilliamsRIndicator(h, lo, c, lbp=14, fillna=False).williams_r().to_numpy()
    np.testing.assert_array_equal(feats["williams_r_14"], wr)
    rsi = feats["rsi_14"]
    np.testing.assert_array_equal(
        feats["stoch_rsi_14"],
        ((rsi - rsi.rolling(14).min()) / (rsi.rolling(14).max() - rsi.rolling(14).min())).to_numpy(),
    )
    mfi = MFIIndicator(h, lo, c, v, 14, fillna=False).money_flow_index().to_numpy()
    np.testing.assert_allclose(feats["mfi_14"][14:], mfi[14:], rtol=1e-9)  # ta's row 13 uses bar 0
    # ATR and +DI / -DI / ADX against hand-written Wilder loops
    hn, ln, cn = h.to_numpy(), lo.to_numpy(), c.to_numpy()
    cp = np.r_[np.nan, cn[:-1]]
    tr = np.maximum(hn - ln, np.maximum(np.abs(hn - cp), np.abs(ln - cp)))
    atr = _wilder_loop(tr, 14)
    np.testing.assert_allclose(feats["atr_14_ratio"], atr / cn, rtol=1e-9)
    up, down = np.r_[np.nan, np.diff(hn)], np.r_[np.nan, -np.diff(ln)]
    pdm = np.where((up > down) & (up > 0), up, 0.0)
    ndm = np.where((down > up) & (down > 0), down, 0.0)
    dip, din = 100 * _wilder_loop(pdm, 14) / atr, 100 * _wilder_loop(ndm, 14) / atr
    np.testing.assert_allclose(feats["di_pos_14"], dip, rtol=1e-9)
    np.testing.assert_allclose(feats["di_neg_14"], din, rtol=1e-9)
    dx = 100 * np.abs(dip - din) / (dip + din)
    adx = np.full(len(dx), np.nan)
    s = np.nan
    for i in range(14, len(dx)):
        s = dx[i] if i == 14 else s + (dx[i] - s) / 14
        if i >= 27:
            adx[i] = s
    np.testing.assert_allclose(feats["adx_14"], adx, rtol=1e-9)


def test_no_raw_price_levels(feats: pd.DataFrame, bars: pd.DataFrame) -> None:
    """No feature correlates with the price level itself more than a stationary transform can."""
    assert set(FEATURE_BY_NAME) == set(FEATURE_NAMES)
    valid = feats.iloc[WARMUP_BARS:]
    for name in FEATURE_NAMES:
        assert np.nanmax(np.abs(valid[name].to_numpy())) < 1_000, name


def test_short_inputs_do_not_crash() -> None:
    for n in (0, 1, 2, 20, 30):
        f = compute_features(random_walk_bars(n))
        assert len(f) == n and f["warmup"].all()
