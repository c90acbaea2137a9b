"""Return attribution on constructed cases, and the optional timing gate."""

from __future__ import annotations

import numpy as np
import pytest

from himari_pipeline.evaluation.attribution import attribute_returns
from himari_pipeline.evaluation.verdict import Gates, judge

N = 4000


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, N)


def test_split_is_exact():
    """exposure + timing is the gross P&L to rounding, for any positions and returns."""
    rng = np.random.default_rng(1)
    e, r = rng.uniform(-2, 1, N), rng.normal(0.0005, 0.01, N)
    a = attribute_returns(e, r)
    assert a.exposure_pnl + a.timing_pnl == pytest.approx(a.gross_pnl, abs=1e-12)
    assert a.gross_pnl == pytest.approx(float(e @ r), abs=1e-12)


def test_pure_exposure_short_bias_in_a_rising_market():
    """A constant short position in a drifting-up market: all exposure (negative, significant), no timing."""
    r = _noise(2) + 0.002
    a = attribute_returns(np.full(N, -0.6), r)
    assert a.timing_pnl == pytest.approx(0.0, abs=1e-12)
    assert a.exposure_pnl == pytest.approx(a.gross_pnl) and a.exposure_pnl < 0
    assert a.exposure_share == pytest.approx(-1.0)
    assert a.timing_p == 1.0  # a constant position cannot time
    # the drift is real, but it runs against the short position: not significant in its favour
    assert a.exposure_p > 0.99
    long_bias = attribute_returns(np.full(N, 0.6), r)
    assert long_bias.exposure_p < 0.01


def test_pure_timing():
    """Positions that follow a planted predictable sign with zero average: all timing, significant."""
    s = np.repeat(np.tile([1.0, -1.0], N // 100), 50)  # week-long +-1 blocks, mean exactly 0
    r = _noise(3) + 0.001 * s
    a = attribute_returns(s, r)
    assert a.mean_exposure == 0.0 and a.exposure_pnl == 0.0
    assert a.timing_share == pytest.approx(1.0)
    assert a.timing_p < 0.001 and a.timing_t > 3
    assert a.exposure_p == 1.0


def test_no_timing_on_noise():
    """The same positions on returns they cannot predict: timing not significant."""
    s = np.repeat(np.tile([1.0, -1.0], N // 100), 50)
    a = attribute_returns(s, _noise(4))
    assert a.timing_p > 0.05


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="equal length"):
        attribute_returns(np.zeros(5), np.zeros(6))
    with pytest.raises(ValueError, match="finite"):
        attribute_returns(np.array([0.0, np.nan, 1.0]), np.zeros(3))


def test_timing_gate_is_off_by_default_and_blocks_when_on():
    evidence = {"timing_p": 0.30}
    assert "timing" not in judge(evidence).checks
    v = judge(evidence, Gates(max_timing_p=0.05))
    assert v.checks["timing"] is False
    assert any("timing not significant on test: p-value 0.3" in r for r in v.reasons)
    assert judge({"timing_p": 0.01}, Gates(max_timing_p=0.05)).checks["timing"] is True
    missing = judge({}, Gates(max_timing_p=0.05))
    assert missing.checks["timing"] is False and any("'timing_p'" in r for r in missing.reasons)
