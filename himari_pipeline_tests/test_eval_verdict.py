"""The verdict on a reconstructed leak-driven policy (Sharpe 44 on validation, ruined live) must be
FAIL; a sound policy passes; the leakage gate both ways."""

from __future__ import annotations

import numpy as np
import pytest

from himari_pipeline.evaluation import Gates, TradingRules, backtest, compute_stats, judge, total_variation
from himari_pipeline.evaluation.verdict import suspicious_features

BARS_5M = 105_120
HONEST_CORR = {"raw_rsi": {"pearson": 0.01, "spearman": -0.02}, "den_rsi": {"pearson": 0.0, "spearman": 0.03}}


def _leaky_policy_live_year() -> dict:
    """The 2025 live year, rebuilt: a strong bull market (5m bars) traded by a policy that is 64 %
    SHORT, 22 % LONG, 14 % FLAT, changing position about every 2 bars, at 0.15 % per change.
    "$0 of $10,000" is a balance below a cent: ``ruin_fraction=1e-6``."""
    rng = np.random.default_rng(2025)
    n = 108_750
    noise = rng.normal(0.0, 0.0015, n - 1)
    ret = np.r_[np.nan, noise - noise.mean() + 1.0 / n]  # drift exactly 1/n per bar: ~ +140 %
    segments = rng.choice([1.0, -1.0, 0.0], size=n // 2 + 1, p=[0.22, 0.64, 0.14])
    pos = np.repeat(segments, 2)[:n]
    costs = TradingRules(transaction_cost=0.0015)  # a carry term in the reward is shaping, not a fee
    live = compute_stats(backtest(pos, ret, costs, BARS_5M, ruin_fraction=1e-6), BARS_5M)
    bh = compute_stats(backtest(np.ones(n), ret, costs, BARS_5M), BARS_5M)
    return {
        "live_ruined": bool(live["ruined"]),
        "live_max_drawdown": live["max_drawdown"],
        "live_sharpe": live["sharpe"],
        "live_buy_and_hold_sharpe": bh["sharpe"],
        "live_action_shares": {
            "long": live["long_share"],
            "short": live["short_share"],
            "flat": live["flat_share"],
        },
    }


def test_a_leak_driven_policy_fails_for_the_right_reasons() -> None:
    live = _leaky_policy_live_year()
    assert live["live_ruined"] and live["live_max_drawdown"] == -1.0  # final capital $0
    assert live["live_buy_and_hold_sharpe"] > 1.5  # a strong bull year
    evidence = {
        "truncation_invariant": True,  # the look-ahead bug had been fixed
        "train_action_shares": {"long": 54, "short": 34, "flat": 12},
        "validation_action_shares": {"long": 46.8, "short": 41.4, "flat": 11.8},
        "test_action_shares": {"long": 54.4, "short": 33.8, "flat": 11.7},
        "dsr": 1.0,  # a leak-driven Sharpe of 44 survives deflation: the live gates must catch it
        "permutation_p": 0.001,
        "validation_sharpe": 43.79,
        "test_sharpe": 51.68,
        **live,
    }
    v = judge(evidence, Gates())
    assert not v.passed
    text = " | ".join(v.reasons)
    assert "ruin" in text
    assert "drawdown" in text
    assert "buy-and-hold" in text
    assert "drift" in text
    assert not v.checks["live_not_ruined"] and not v.checks["action_drift"]
    assert v.checks["deflated_sharpe"] and v.checks["permutation"] and v.checks["truncation_invariance"]
    warnings = " | ".join(v.warnings)
    assert "beats validation" in warnings and "implausible" in warnings


def test_a_sound_policy_passes() -> None:
    evidence = {
        "truncation_invariant": True,
        "train_action_shares": {"long": 0.40, "short": 0.35, "flat": 0.25},
        "validation_action_shares": {"long": 0.42, "short": 0.30, "flat": 0.28},
        "live_action_shares": {"long": 0.45, "short": 0.30, "flat": 0.25},
        "dsr": 0.97,
        "permutation_p": 0.01,
        "live_ruined": False,
        "live_max_drawdown": -0.18,
        "live_sharpe": 1.5,
        "live_buy_and_hold_sharpe": 1.2,
        "validation_sharpe": 1.4,
        "test_sharpe": 1.2,
        "leak_correlations": HONEST_CORR,
        "truncation_results": {"features": True, "regimes": True},
    }
    v = judge(evidence)
    assert v.passed, v.reasons
    assert v.reasons == [] and v.warnings == []
    assert all(v.checks.values())


def test_fails_closed_on_missing_or_bad_evidence() -> None:
    v = judge({})
    assert not v.passed
    assert any("missing" in r and "dsr" in r for r in v.reasons)
    assert len(v.reasons) == 9  # every gate fails without evidence (the leakage gate included)
    v = judge({"dsr": float("nan")})
    assert any("dsr" in r and "missing or non-finite" in r for r in v.reasons)


def test_collapse_and_drift_by_hand() -> None:
    # the leak-driven policy: 0.5 * (|54-22| + |34-64| + |12-14|) / 100 = 0.32
    assert total_variation({"long": 54, "short": 34, "flat": 12}, {"long": 22, "short": 64, "flat": 14}) == (
        pytest.approx(0.32)
    )
    assert total_variation([1, 0], [0, 1]) == 1.0
    # 99.8 % LONG is a collapse
    v = judge({"validation_action_shares": {"long": 99.8, "short": 0.2, "flat": 0.0}})
    assert not v.checks["no_collapse[validation_action_shares]"]
    assert any("collapse" in r and "long" in r for r in v.reasons)
    # a looser drift gate lets that 0.32 through: the default must not
    assert Gates().max_action_drift_tvd < 0.32


def test_leakage_gate_on_a_correlated_feature() -> None:
    corr = {**HONEST_CORR, "raw_next": {"pearson": -0.62, "spearman": -0.55}}
    v = judge({"leak_correlations": corr})
    assert v.checks["leakage"] is False
    assert "leakage: 1 feature(s) correlate with r[t+1] beyond |corr| 0.3: raw_next (-0.62)" in v.reasons
    assert judge({"leak_correlations": HONEST_CORR}).checks["leakage"] is True
    # the bar is a gate setting: a looser one lets the feature through
    assert judge({"leak_correlations": corr}, Gates(max_leak_abs_corr=0.7)).checks["leakage"] is True


def test_leakage_gate_on_truncation_failure() -> None:
    v = judge({"leak_correlations": HONEST_CORR, "truncation_results": {"features": True, "regimes": False}})
    assert v.checks["leakage"] is False
    assert "leakage: truncation invariance failed for regimes" in v.reasons
    ok = judge({"leak_correlations": HONEST_CORR, "truncation_results": {"features": True}})
    assert ok.checks["leakage"] is True and not any("leakage" in r for r in ok.reasons)


def test_suspicious_features_largest_first_by_either_correlation() -> None:
    corr = {
        "a": {"pearson": 0.2, "spearman": 0.5},
        "b": {"pearson": -0.9, "spearman": -0.8},
        "c": {"pearson": 0.1, "spearman": 0.1},
    }
    assert suspicious_features(corr, 0.3) == {"b": -0.9, "a": 0.2}
    assert suspicious_features(corr, 0.95) == {}


def test_judge_reads_a_gate_view() -> None:
    class Typed:
        def gate_view(self) -> dict:
            return {"dsr": 0.2}

    v = judge(Typed())
    assert v.checks["deflated_sharpe"] is False and "Deflated Sharpe Ratio 0.200 < 0.95" in v.reasons
