"""The causal EKF denoiser: numba path vs filterpy reference, continuation, causality, bounds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.causality import check_truncation_invariance
from himari_pipeline.ekf import EKFParams, EKFState, denoise_features, denoise_features_with_state, ekf_filter
from himari_pipeline.ekf.reference import ekf_filter_reference
from himari_pipeline.features import FEATURE_NAMES, compute_features
from himari_pipeline.features.catalog import FEATURE_BY_NAME

MIXED = [
    "logret_1", "close_sma_50", "rv_12", "volume_z_48", "macd_hist_norm",  # linear
    "rsi_14", "aroon_up_25", "williams_r_14", "obv_change_24", "stoch_rsi_14",  # bounded (logit space)
    "hour_sin",  # passthrough
]  # fmt: skip


def random_walk_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(0.002 * rng.standard_t(4, n)))
    open_ = np.r_[30_000.0, close[:-1]][:n]
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 1e-3, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 1e-3, n)))
    ts = pd.date_range("2022-06-01 00:05", periods=n, freq="5min", tz="UTC")
    volume = rng.lognormal(3.0, 1.0, n)
    return pd.DataFrame(
        {"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return random_walk_bars(1200, seed=7)


@pytest.fixture(scope="module")
def feats(bars: pd.DataFrame) -> pd.DataFrame:
    return compute_features(bars)


@pytest.fixture(scope="module")
def mixed_with_holes(feats: pd.DataFrame) -> np.ndarray:
    X = feats[MIXED].to_numpy().copy()
    X[600:615, :] = np.nan  # a hole across all features
    X[900, 1] = np.nan  # a single missing value in one feature
    return X


def test_vectorized_equals_filterpy_reference(mixed_with_holes: np.ndarray) -> None:
    params = EKFParams.for_features(MIXED)
    out, _ = ekf_filter(mixed_with_holes, params)
    ref = ekf_filter_reference(mixed_with_holes, params)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    assert np.isnan(out[:288, MIXED.index("rv_12")]).sum() == 12  # NaN until the first value
    assert not np.isnan(out[600:615, :-1]).any()  # holes after initialisation: predict only (not passthrough)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)


def test_reference_agreement_when_pinned_at_bounds() -> None:
    """Long runs at a bound exercise the clipping and state projection in both implementations."""
    z = np.r_[
        np.full(5, np.nan),
        np.full(150, 100.0),
        np.full(60, 0.0),
        np.linspace(0, 100, 80),
        [np.nan] * 5,
        [50.0] * 20,
    ]
    X = np.c_[z, z / 100.0 - 1.0]
    params = EKFParams(names=("a", "b"), bounds=((0.0, 100.0), (-1.0, 0.0)), q_level=0.2)
    out, _ = ekf_filter(X, params)
    np.testing.assert_allclose(out, ekf_filter_reference(X, params), rtol=0, atol=1e-9)
    np.testing.assert_allclose(out[:, 1], out[:, 0] / 100.0 - 1.0, rtol=0, atol=1e-12)  # affine equivariant
    assert out[154, 0] > 95 and out[214, 0] < 5  # follows the pinned runs and recovers after 60 bars


def test_bounded_outputs_stay_inside_bounds(feats: pd.DataFrame) -> None:
    out = denoise_features(feats)
    rng = np.random.default_rng(3)
    wild = rng.normal(50, 400, size=(500, 1))  # measurements far outside (0, 100)
    w_out, _ = ekf_filter(wild, EKFParams(names=("x",), bounds=((0.0, 100.0),)))
    assert 0.0 <= w_out.min() and w_out.max() <= 100.0
    for name in FEATURE_NAMES:
        b = FEATURE_BY_NAME[name].bounds
        if b is not None:
            v = out[name].dropna()
            assert b[0] <= v.min() and v.max() <= b[1], name


def test_continuation_from_stored_state_equals_one_pass(mixed_with_holes: np.ndarray) -> None:
    params = EKFParams.for_features(MIXED)
    full, full_state = ekf_filter(mixed_with_holes, params)
    for k in (5, 290, 605, 901, 1199):
        a, st = ekf_filter(mixed_with_holes[:k], params)
        st = EKFState.from_dict(json.loads(json.dumps(st.to_dict())))  # stored as JSON with the table
        b, st2 = ekf_filter(mixed_with_holes[k:], params, st)
        np.testing.assert_array_equal(np.vstack([a, b]), full)
        np.testing.assert_array_equal(st2.x, full_state.x)
        np.testing.assert_array_equal(st2.P, full_state.P)


def test_denoised_table_is_truncation_invariant(bars: pd.DataFrame) -> None:
    def pipeline(b: pd.DataFrame) -> pd.DataFrame:
        return denoise_features(compute_features(b))

    report = check_truncation_invariance(pipeline, bars, prefixes=[10, 289, 500, 1001])
    assert report.ok, report.summary()


def test_linear_filter_is_scale_free_and_matches_hand_recursion() -> None:
    """Gains depend on Q/R and P0/R only: filtering a*z gives a*filter(z); checked by hand too."""
    rng = np.random.default_rng(0)
    z = np.cumsum(rng.normal(size=300))
    params = EKFParams(names=("z",), bounds=(None,), q_level=0.3, q_slope=0.01, p0=2.0)
    out, _ = ekf_filter(z[:, None], params)
    scaled, _ = ekf_filter(1e-4 * z[:, None], params)
    np.testing.assert_allclose(scaled[:, 0], 1e-4 * out[:, 0], rtol=1e-10, atol=1e-18)
    x, P = np.array([z[0], 0.0]), 2.0 * np.eye(2)
    F, Q, H = np.array([[1.0, 1.0], [0.0, 1.0]]), np.diag([0.3, 0.01]), np.array([1.0, 0.0])
    expected = [z[0]]
    for t in range(1, len(z)):
        x, P = F @ x, F @ P @ F.T + Q
        k = P @ H / (H @ P @ H + 1.0)
        x = x + k * (z[t] - x[0])
        P = P - np.outer(k, H @ P)
        expected.append(x[0])
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-10)
    const, _ = ekf_filter(np.full((50, 1), 3.25), params)
    assert (const == 3.25).all()


def test_nan_measurement_predicts_along_the_trend() -> None:
    z = np.r_[np.arange(40.0), [np.nan] * 10, 50.0]
    out, _ = ekf_filter(z[:, None], EKFParams(names=("z",), bounds=(None,)))
    hole = out[39:50, 0]
    np.testing.assert_allclose(np.diff(hole, 2), 0.0, atol=1e-9)  # straight line through the hole
    assert out[45, 0] == pytest.approx(45.0, abs=0.1)


def test_denoise_features_table(feats: pd.DataFrame) -> None:
    out, state = denoise_features_with_state(feats)
    assert list(out.columns) == list(feats.columns)
    assert (out["warmup"] == feats["warmup"]).all() and (out["timestamp"] == feats["timestamp"]).all()
    for cal in ("hour_sin", "hour_cos", "dow_sin", "dow_cos"):
        np.testing.assert_array_equal(out[cal], feats[cal])
    x = out[list(FEATURE_NAMES)].to_numpy()
    np.testing.assert_array_equal(np.isnan(x), np.isnan(feats[list(FEATURE_NAMES)].to_numpy()))
    assert state.initialised[:40].all() and not state.initialised[40:].any()  # calendar: passthrough
    r = feats["logret_1"].to_numpy()[300:]
    assert np.std(np.diff(out["logret_1"].to_numpy()[300:])) < 0.5 * np.std(np.diff(r))  # it smooths


def test_params_json_round_trip() -> None:
    p = EKFParams.for_features(q_level=0.1, clip_eps=0.02)
    back = EKFParams.from_dict(json.loads(json.dumps(p.to_dict())))
    assert back == p
    assert p.passthrough.count(True) == 4
    with pytest.raises(ValueError, match="not in the feature catalog"):
        EKFParams.for_features(["close"])
    with pytest.raises(ValueError, match="X must be"):
        ekf_filter(np.zeros((3, 2)), p)
