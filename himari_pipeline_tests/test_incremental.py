"""Appending bars continues features, EKF and regimes exactly as the full recompute would."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.ekf import EKFParams, denoise_features
from himari_pipeline.ekf.vectorized import EKFState, denoise_features_with_state
from himari_pipeline.features import WARMUP_BARS, compute_features
from himari_pipeline.features.append import TAIL_LENGTH, FeatureState, append_features
from himari_pipeline.features.compute import (
    EWMRunner,
    ewm_alpha,
    rolling_corr,
    rolling_mad,
    rolling_mean,
    rolling_std,
    rolling_sum,
    rolling_var,
)
from himari_pipeline.regimes import RegimeParams, detect_regimes, regime_warmup
from himari_pipeline.regimes.append import RegimeState, append_regimes
from himari_pipeline.regimes.detect import indicator_arrays
from himari_pipeline_tests.test_features import random_walk_bars
from himari_pipeline_tests.test_regimes import switching_walk

N_BARS = 3000


def assert_same(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    """Bit-for-bit equality (NaN matching NaN), same columns and dtypes."""
    pd.testing.assert_frame_equal(got.reset_index(drop=True), ref.reset_index(drop=True), check_exact=True)


@pytest.fixture(scope="module")
def walk() -> pd.DataFrame:
    return switching_walk(N_BARS, seed=3)


@pytest.fixture(scope="module")
def full(walk: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    feats = compute_features(walk)
    return feats, denoise_features(feats, EKFParams.for_features()), detect_regimes(walk, "1h")


def _reload(state):
    """What a daily job stores (JSON in the version metadata) and reads back."""
    return type(state).from_dict(json.loads(json.dumps(state.to_dict())))


def run_chunks(bars: pd.DataFrame, k: int, chunks: list[int], timeframe: str, regime_params=None):
    """Each table from its empty state on ``bars[:k]``, then the rest appended in chunks (cycled)."""
    params = EKFParams.for_features()
    f, fs = append_features(FeatureState(), bars.iloc[:k])
    r, rs = append_regimes(RegimeState.empty(timeframe, regime_params), bars.iloc[:k])
    d, ekf = denoise_features_with_state(f, params)
    out = [[f], [d], [r]]
    i, j = k, 0
    while i < len(bars):
        size = chunks[j % len(chunks)]
        new = bars.iloc[i : i + size]
        f, fs = append_features(_reload(fs), new)
        r, rs = append_regimes(_reload(rs), new)
        d, ekf = denoise_features_with_state(
            f, params, EKFState.from_dict(json.loads(json.dumps(ekf.to_dict())))
        )
        for lst, rows in zip(out, (f, d, r), strict=True):
            lst.append(rows)
        i, j = i + size, j + 1
    return [pd.concat(lst, ignore_index=True) for lst in out], (fs, rs)


def test_ewm_runner_is_pandas_ewm_bit_for_bit_and_resumes() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=3000)
    x[:3] = np.nan  # leading NaN, a gap, a constant run
    x[100:105] = np.nan
    x[200:230] = 1.5
    for kw, minp in (
        ({"span": 12}, 12),
        ({"span": 100}, 100),
        ({"alpha": 1 / 14}, 14),
        ({"alpha": 1 / 168}, 1),
    ):
        ref = pd.Series(x).ewm(**kw, adjust=False, min_periods=minp).mean().to_numpy()
        whole = EWMRunner().mean("k", x, ewm_alpha(**kw), minp)
        np.testing.assert_array_equal(whole, ref)
        for k in (0, 2, 102, 1500, 3000):  # stop before row k, resume from the stored state
            first = EWMRunner(snapshot=k)
            first.mean("k", x[:k], ewm_alpha(**kw), minp)
            state = json.loads(json.dumps(first.recorded))
            rest = EWMRunner(state).mean("k", x[k:], ewm_alpha(**kw), minp)
            np.testing.assert_array_equal(rest, ref[k:])
    with pytest.raises(KeyError, match="no stored state"):
        EWMRunner({"other": [1.0, 1.0, 5.0]}).mean("k", x, 0.1, 1)


def test_rolling_kernels_match_numpy_and_depend_on_the_window_only() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.lognormal(3, 1, 700), rng.normal(size=700)
    x[10] = np.nan
    t, n = 400, 48
    w, wy = x[t - n + 1 : t + 1], y[t - n + 1 : t + 1]
    assert rolling_sum(x, n)[t] == pytest.approx(w.sum(), rel=1e-13)
    assert rolling_mean(x, n)[t] == pytest.approx(w.mean(), rel=1e-13)
    assert rolling_var(x, n)[t] == pytest.approx(w.var(ddof=1), rel=1e-12)
    assert rolling_std(x, n, ddof=0)[t] == pytest.approx(w.std(), rel=1e-12)
    assert rolling_corr(x, y, n)[t] == pytest.approx(np.corrcoef(w, wy)[0, 1], rel=1e-12)
    assert rolling_mad(x, n)[t] == pytest.approx(np.abs(w - w.mean()).mean(), rel=1e-12)
    # NaN until the window is full, and while it holds a NaN
    assert np.isnan(rolling_mean(x, n)[: n - 1]).all() and np.isnan(rolling_mean(x, n)[10 : 10 + n]).all()
    # a constant window has exactly zero variance (pandas' convention), so a z-score is NaN, not noise
    assert rolling_var(np.full(60, 0.1), 48)[-1] == 0.0
    assert np.isnan(rolling_corr(np.full(60, 0.1), y[:60], 48)[-1])
    # window-only: the values on a suffix are bit-identical to the full series' (pandas' are not)
    for f in (
        rolling_sum,
        rolling_mean,
        rolling_var,
        rolling_mad,
        lambda a, m: rolling_corr(a, y[-len(a) :], m),
    ):
        np.testing.assert_array_equal(f(x[333:], n)[n:], f(x, n)[333 + n :])


@pytest.mark.parametrize("k", [40, WARMUP_BARS + 1, 744, 2200, N_BARS - 5])
def test_append_in_one_chunk_equals_full_recompute(walk, full, k: int) -> None:
    """k: inside the warm-up, right after the feature warm-up, right after the regime warm-up
    (743 rows at 1h), past the stored-tail length (EWM states carried), near the end."""
    tables, (fs, rs) = run_chunks(walk, k, [N_BARS], "1h")
    for got, ref in zip(tables, full, strict=True):
        assert_same(got, ref)
    assert fs.n_bars == rs.n_bars == N_BARS
    assert len(fs.tail) == min(N_BARS, TAIL_LENGTH) and len(rs.tail) == min(N_BARS, rs.tail_length)
    assert regime_warmup(tables[2]["regime_id"]) == 743


def test_append_day_by_day_and_uneven_chunks_equals_full_recompute(walk, full) -> None:
    tables, (fs, rs) = run_chunks(walk, 2250, [24, 1, 7, 24, 61], "1h")
    for got, ref in zip(tables, full, strict=True):
        assert_same(got, ref)
    assert fs.ewm is not None and rs.ewm is not None
    # the state machine really was carried: the last label and how long it has been held
    ids = full[2]["regime_id"].to_numpy()
    run = len(ids) - np.flatnonzero(ids != ids[-1])[-1] - 1
    assert rs.label == ids[-1] and rs.held >= run


def test_append_5m_with_custom_regime_params() -> None:
    bars = random_walk_bars(2600, seed=5)
    params = RegimeParams(pct_window_days=4, pct_min_days=1, dd_window_days=1, adx_window_hours=2)
    feats = compute_features(bars)
    ref = (feats, denoise_features(feats, EKFParams.for_features()), detect_regimes(bars, "5m", params))
    tables, (_, rs) = run_chunks(bars, 1700, [288, 100], "5m", regime_params=params)
    for got, r in zip(tables, ref, strict=True):
        assert_same(got, r)
    assert rs.params == params and rs.timeframe == "5m"
    assert (tables[2]["regime_id"].iloc[-500:] >= 0).all()


def test_state_json_round_trip_is_exact_and_strict(walk) -> None:
    for empty, step in ((FeatureState(), append_features), (RegimeState.empty("1h"), append_regimes)):
        _, state = step(empty, walk.iloc[:2500])
        text = json.dumps(state.to_dict(), allow_nan=False)  # strict JSON: no NaN constants
        again = type(state).from_dict(json.loads(text))
        assert json.dumps(again.to_dict(), allow_nan=False) == text
        assert_same(again.tail, state.tail)
        a, _ = step(state, walk.iloc[2500:2524])
        b, _ = step(again, walk.iloc[2500:2524])
        assert_same(a, b)
        with pytest.raises(ValueError, match="version"):
            type(state).from_dict({**state.to_dict(), "version": 99})
        # stored without its tail, the state takes it from the bars it was computed from
        compact = state.to_dict(with_tail=False)
        assert "tail" not in compact and len(json.dumps(compact)) < len(text) / 10
        again = type(state).from_dict(compact, walk)
        assert_same(again.tail, state.tail)
        assert_same(step(again, walk.iloc[2500:2524])[0], a)
        with pytest.raises(ValueError, match="needs the 2500 bars"):
            type(state).from_dict(compact, walk.iloc[:100])


def test_append_rejects_bad_input(walk) -> None:
    for empty, step in ((FeatureState(), append_features), (RegimeState.empty("1h"), append_regimes)):
        _, state = step(empty, walk.iloc[:300])
        with pytest.raises(ValueError, match="not after the last stored bar"):
            step(state, walk.iloc[299:310])
        with pytest.raises(ValueError, match="strictly increase"):
            step(state, walk.iloc[[300, 302, 301]])
        with pytest.raises(ValueError, match="lack column"):
            step(state, walk.iloc[300:310].drop(columns="volume"))
        _, ok = step(state, walk.iloc[300:310])  # and good bars still go on
        assert ok.n_bars == 310 and state.n_bars == 300  # the given state is not modified
    with pytest.raises(ValueError):
        RegimeState.empty("7x")


def test_regime_rank_and_peak_kernels_are_pandas_rolling_rank_and_max() -> None:
    rng = np.random.default_rng(4)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 3000)))
    close[1200:1230] = close[1199]  # a flat run: tied ranks and a flat peak
    params = RegimeParams()
    ind = indicator_arrays(close, close * 1.001, close * 0.999, "1h", params, EWMRunner())
    w = params.window_bars("1h")
    vol = pd.Series(ind["vol"])
    ref_rank = vol.rolling(w["pct"], min_periods=w["pct_min"]).rank(pct=True).to_numpy()
    np.testing.assert_array_equal(ind["vol_pct"], ref_rank)
    ref_dd = close / pd.Series(close).rolling(w["dd"], min_periods=1).max().to_numpy() - 1.0
    np.testing.assert_array_equal(ind["drawdown"], ref_dd)
    assert np.isfinite(ref_rank[-100:]).all() and (ind["vol_pct"][1200:1260] > 0).all()
    # a rank that is computed only from a position on equals the whole computation there
    late = indicator_arrays(close, close * 1.001, close * 0.999, "1h", params, EWMRunner(), first=2900)
    np.testing.assert_array_equal(late["vol_pct"][2900:], ind["vol_pct"][2900:])
    assert np.isnan(late["vol_pct"][:2900]).all()


def test_features_computed_from_a_position_on_equal_the_full_computation_there(walk) -> None:
    from himari_pipeline.features.compute import WINDOW_CHAIN, bar_arrays, feature_arrays

    cols = bar_arrays(walk.iloc[:1200])
    full = feature_arrays(cols, EWMRunner())
    k = 900
    part = feature_arrays(cols, EWMRunner(), first=k)
    for name, x in full.items():
        np.testing.assert_array_equal(part[name][k + WINDOW_CHAIN :], x[k + WINDOW_CHAIN :], err_msg=name)
    assert np.isnan(part["rv_288"][:k]).all() and np.isfinite(full["rv_288"][k - 10 : k]).all()
    # one window per row (2-D) gives each row's own values, as the 1-D computation of that window
    stack = {key: np.stack([a[100:400], a[500:800]]) for key, a in cols.items()}
    two = feature_arrays(stack, EWMRunner(), first=290)
    for r, lo in enumerate((100, 500)):
        one = feature_arrays({key: a[lo : lo + 300] for key, a in cols.items()}, EWMRunner())
        for name in ("rsi_14", "cci_20", "volume_ret_corr_48", "aroon_up_25", "stoch_d_14"):
            np.testing.assert_array_equal(two[name][r, -1], one[name][-1], err_msg=name)


def test_a_shifted_ewm_runner_gives_the_same_values_on_a_suffix() -> None:
    x = np.random.default_rng(7).normal(size=200)
    state = {"k": [0.3, 1.0, 40.0]}
    whole = EWMRunner(state, start=50, snapshot=120)
    ref = whole.mean("k", x, 0.1, 5)
    runner = EWMRunner(state, start=50, snapshot=120)
    part = runner.shifted(49).mean("k", x[49:], 0.1, 5)
    np.testing.assert_array_equal(part, ref[49:])
    assert runner.recorded == whole.recorded  # the snapshot lands in the original runner
    assert runner.shifted(0) is runner
    with pytest.raises(ValueError, match="cannot shift"):
        runner.shifted(51)  # past the start: a position the EWMs run over would be lost
    with pytest.raises(ValueError, match="cannot shift"):
        EWMRunner(trajectory=True, start=3).shifted(2)
