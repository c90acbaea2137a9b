"""The synthetic market: determinism, OHLC consistency, stylized facts, and the planted/null controls."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.causality import check_truncation_invariance
from himari_pipeline.market.bars import BAR_COLUMNS
from himari_pipeline.market.synthetic import (
    CALM,
    CHOP,
    CRASH,
    REGIME_MEAN_HOURS,
    REGIME_NAMES,
    TREND_DOWN,
    TREND_UP,
    SyntheticConfig,
    annualized_sharpe,
    generate_synthetic_bars,
    generate_synthetic_market,
    measure_planted_edge,
    reference_rule_positions,
    regime_transition_matrix,
    rule_net_returns,
)
from himari_pipeline.market.validation import validate_bars


@pytest.fixture(scope="module")
def planted():
    return generate_synthetic_market(SyntheticConfig(seed=7, variant="planted"))


@pytest.fixture(scope="module")
def null():
    return generate_synthetic_market(SyntheticConfig(seed=7, variant="null"))


def _returns(bars: pd.DataFrame) -> np.ndarray:
    c = bars["close"].to_numpy()
    return c[1:] / c[:-1] - 1.0


def _digest(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(df["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64).tobytes())
    for col in ("open", "high", "low", "close", "volume"):
        h.update(df[col].to_numpy(dtype=np.float64).tobytes())
    return h.hexdigest()


def test_schema_calendar_and_validation(planted):
    bars = planted.bars
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert str(bars["timestamp"].dtype) == "datetime64[ns, UTC]"
    # 2020-01-01 .. 2025-12-31 inclusive = 2192 days of 24 hourly bars; labelled by close time.
    assert len(bars) == 2192 * 24
    assert bars["timestamp"].iloc[0] == pd.Timestamp("2020-01-01 01:00", tz="UTC")
    assert bars["timestamp"].iloc[-1] == pd.Timestamp("2026-01-01 00:00", tz="UTC")
    report = validate_bars(bars, timeframe="1h", file="synthetic")
    assert report.gaps == [] and report.n_rows == len(bars)
    assert planted.symbol == "SYNTH-PLANTED"
    assert generate_synthetic_market(SyntheticConfig(variant="null", end="2020-01-02")).symbol == "SYNTH-NULL"
    assert planted.true_regime.dtype == np.int8 and len(planted.true_regime) == len(bars)


def test_deterministic_by_seed():
    cfg = SyntheticConfig(seed=11, end="2020-06-30")
    a, b = generate_synthetic_market(cfg), generate_synthetic_market(cfg)
    assert _digest(a.bars) == _digest(b.bars)
    assert np.array_equal(a.true_regime, b.true_regime) and np.array_equal(a.signal, b.signal)
    other = generate_synthetic_bars(SyntheticConfig(seed=12, end="2020-06-30"))
    assert _digest(other) != _digest(a.bars)


def test_ohlc_consistency(planted, null):
    for m in (planted, null):
        b = m.bars
        o, h, lo, c, v = (b[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
        assert (lo > 0).all() and (v > 0).all()
        assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
        assert np.array_equal(o[1:], c[:-1])  # open = previous close
        assert o[0] == 7000.0
        assert (h > lo).mean() > 0.999


def test_null_and_planted_share_everything_but_the_planted_component(planted, null):
    assert np.array_equal(planted.true_regime, null.true_regime)
    assert not null.signal.any()
    # r_planted[t] - r_null[t] is exactly the planted component decided at t-1.
    diff = _returns(planted.bars) - _returns(null.bars)
    np.testing.assert_allclose(diff, planted.signal[:-1], atol=1e-12)
    # Hand-check the planted component: +d in trend-up, -d in trend-down, 0 elsewhere (d = 0.0007 per 1h).
    s, reg = planted.signal, planted.true_regime
    assert np.all(s[reg == TREND_UP] == 0.0007) and np.all(s[reg == TREND_DOWN] == -0.0007)
    assert not s[np.isin(reg, [CALM, CHOP, CRASH])].any()
    # Volume and ranges are the same draws (volume depends on |r|, so compare calm regimes only loosely).
    assert np.corrcoef(planted.bars["volume"], null.bars["volume"])[0, 1] > 0.99


def test_regime_switching_present(planted):
    reg = planted.true_regime.astype(int)
    counts = np.bincount(reg, minlength=len(REGIME_NAMES))
    assert (counts > 0).all()
    switches = np.flatnonzero(np.diff(reg) != 0)
    assert len(switches) > 100
    # Mean sojourn per regime (hours) within a factor 2 of the chain's parameters.
    bounds = np.r_[0, switches + 1, len(reg)]
    seg_regime = reg[bounds[:-1]]
    seg_len = np.diff(bounds)
    for k in range(len(REGIME_NAMES)):
        mean_len = seg_len[seg_regime == k].mean()
        assert REGIME_MEAN_HOURS[k] / 2 < mean_len < REGIME_MEAN_HOURS[k] * 2, (k, mean_len)
    # Realized volatility is ordered calm < chop < crash.
    r = _returns(planted.bars)
    vol = [r[reg[1:] == k].std() for k in (CALM, CHOP, CRASH)]
    assert vol[0] < vol[1] < vol[2]
    # The transition matrix is a proper stochastic matrix.
    p = regime_transition_matrix("1h")
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (np.diag(p) > 0.95).all()


def test_fat_tails_and_volatility_clustering(null):
    r = pd.Series(_returns(null.bars))
    assert r.kurt() > 5  # excess kurtosis; a Gaussian gives ~0
    calm = r[null.true_regime[1:] == CALM]
    assert calm.kurt() > 2  # fat tails within a regime too (Student-t + GARCH)
    a = pd.Series(np.abs(r.to_numpy()))
    assert a.autocorr(1) > 0.1 and a.autocorr(24) > 0.05
    assert abs(r.autocorr(1)) < 0.03  # but returns themselves are not autocorrelated
    ann_vol = r.std() * np.sqrt(8760)
    assert 0.4 < ann_vol < 0.9


def test_volume_follows_volatility(null):
    b, reg = null.bars, null.true_regime
    r = np.abs(np.r_[0.0, _returns(b)])
    v = b["volume"].to_numpy()
    assert np.corrcoef(np.log(v[1:]), r[1:])[0, 1] > 0.3
    assert v[reg == CRASH].mean() > v[reg == CHOP].mean() > v[reg == CALM].mean()


def test_timeframes_show_the_same_market():
    h1 = generate_synthetic_market(SyntheticConfig(seed=3, end="2020-12-31", timeframe="1h"))
    m5 = generate_synthetic_market(SyntheticConfig(seed=3, end="2020-12-31", timeframe="5m"))
    assert len(m5.bars) == 12 * len(h1.bars)
    assert np.array_equal(m5.true_regime[::12], h1.true_regime)
    hourly_from_5m = np.diff(np.log(m5.bars["close"].to_numpy()[11::12]))
    hourly = np.diff(np.log(h1.bars["close"].to_numpy()))
    assert 0.8 < hourly_from_5m.std() / hourly.std() < 1.25
    assert m5.bars["timestamp"].iloc[0] == pd.Timestamp("2020-01-01 00:05", tz="UTC")


def test_5m_profile_is_fast():
    generate_synthetic_market(SyntheticConfig(end="2020-01-10", timeframe="5m"))  # jit warm-up
    t0 = time.perf_counter()
    m = generate_synthetic_market(SyntheticConfig(timeframe="5m"))
    elapsed = time.perf_counter() - t0
    assert len(m.bars) == 2192 * 288
    assert elapsed < 10.0, elapsed


def test_null_is_a_martingale_difference_given_regime(null, planted):
    # E[r[t+1] | regime at t] = 0 for every regime in the null variant (crash jumps are compensated).
    r = _returns(null.bars)
    reg = null.true_regime[:-1]
    for k in range(len(REGIME_NAMES)):
        x = r[reg == k]
        assert abs(x.mean()) < 4 * x.std() / np.sqrt(len(x)), (REGIME_NAMES[k], x.mean())
    # In the planted variant the trend regimes carry the drift (t-stat well above noise).
    rp = _returns(planted.bars)
    up = rp[planted.true_regime[:-1] == TREND_UP]
    assert up.mean() / (up.std() / np.sqrt(len(up))) > 4


def test_reference_rule_is_causal(planted):
    bars = planted.bars.iloc[:3000].reset_index(drop=True)

    def compute(b: pd.DataFrame) -> pd.DataFrame:
        pos = reference_rule_positions(b["close"].to_numpy(), "1h")
        return pd.DataFrame({"timestamp": b["timestamp"], "pos": pos})

    assert check_truncation_invariance(compute, bars).ok


def test_rule_net_returns_hand_computed():
    close = np.array([100.0, 110.0, 99.0, 99.0, 108.9])
    pos = np.array([1.0, 1.0, -1.0, 0.0, 0.0])
    net = rule_net_returns(close, pos, cost=0.01)
    # pos[0]=1 earns +10% minus 1% entry; pos[1]=1 earns -10%; flip to -1 at t=2 costs 2%, earns 0;
    # flat at t=3 costs 1%, earns nothing.
    np.testing.assert_allclose(net, [0.10 - 0.01, -0.10, 0.0 - 0.02, -0.01])
    assert annualized_sharpe(np.zeros(10), "1h") == 0.0


def test_planted_edge_found_and_null_edge_absent():
    m = measure_planted_edge(seed=7, timeframe="1h", cost=0.0015)
    # Numbers documented in the synthetic module docstring.
    assert 1.5 < m["planted_sharpe"] < 3.5, m
    assert m["null_sharpe"] < 0.3, m
    assert abs(m["null_gross_sharpe"]) < 1.0, m
    assert 0.04 < m["corr_signal_next_return"] < 0.1, m
    assert abs(m["null_corr_trailing_mean"]) < 0.015, m
    assert m["planted_sharpe"] - m["null_sharpe"] > 1.5


def test_market_seed_keys_name_other_draws_of_the_built_in_market(tmp_path):
    """`SYNTH-PLANTED-S3_1h` is the planted market drawn with seed 3 (its own dataset); a plain key takes
    the settings' seed; a malformed suffix is not built in (it would need files)."""
    from himari_pipeline import sources

    span = ("2024-01-01", "2024-02-01")
    seeded = sources.load_dataset("SYNTH-PLANTED-S3_1h", tmp_path, seed=7, span=span)
    want = generate_synthetic_bars(SyntheticConfig(seed=3, variant="planted", start=span[0], end=span[1]))
    np.testing.assert_array_equal(seeded.bars["close"].to_numpy(), want["close"].to_numpy())
    assert seeded.provenance["seed"] == 3 and seeded.provenance["variant"] == "planted"
    plain = sources.load_dataset("SYNTH-PLANTED_1h", tmp_path, seed=7, span=span)
    assert plain.provenance["seed"] == 7 and not np.array_equal(plain.bars["close"], seeded.bars["close"])
    null4 = sources.load_dataset("SYNTH-NULL-S4_1h", tmp_path, span=span)
    assert null4.provenance == {**null4.provenance, "variant": "null", "seed": 4}
    for key in ("SYNTH-PLANTED-S_1h", "SYNTH-PLANTED-3_1h", "SYNTH-PLANTEDS3_1h"):
        assert not sources.is_synthetic(key)
        with pytest.raises(FileNotFoundError, match="no files"):
            sources.load_dataset(key, tmp_path)
