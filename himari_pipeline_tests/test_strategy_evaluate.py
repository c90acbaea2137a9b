"""Any strategy's positions through the report and gate: a good rule passes, null and a drifting profile fail.

The market is the built-in synthetic one (2020-2025, 1h) with seed 1: its planted trend component is
what the trailing-mean rule (``reference_rule_positions``, past bars only) exploits; the null twin
has none. Seed 7 (the default datasets) is not used for PASS: there the same rule's validation Sharpe
is 0.53 and the Deflated Sharpe gate (0.70 < 0.95) blocks it (README, "Evaluate your own strategy").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.evaluation.strategy import PositionsError, evaluate_positions, read_positions
from himari_pipeline.market.synthetic import (
    SyntheticConfig,
    generate_synthetic_bars,
    reference_rule_positions,
)
from himari_pipeline.rl.training import build_synthetic_splits
from himari_pipeline.trading.rules import TradingRules

SEED, BPY = 1, 8760.0
TRUNC_OK = {"features": True, "features_denoised": True, "regimes": True}
HIMARI = str(Path(sys.executable).with_name("himari"))


def _market(variant: str):
    splits = build_synthetic_splits(variant, seed=SEED)
    bars = generate_synthetic_bars(SyntheticConfig(seed=SEED, variant=variant))
    return splits, bars


def _write(path: Path, timestamps, positions) -> Path:
    pd.DataFrame({"timestamp": pd.to_datetime(timestamps, utc=True), "position": positions}).to_csv(
        path, index=False
    )
    return path


def _trend_file(bars: pd.DataFrame, path: Path) -> Path:
    return _write(path, bars["timestamp"], reference_rule_positions(bars["close"].to_numpy(), "1h"))


def _drifting_profile_file(bars: pd.DataFrame, live_start: int, path: Path) -> Path:
    """Held 48-bar blocks, 54/34/12 long/short/flat before the live year, 22/64/14 in it: a short bias
    that appears in a rising live year."""
    rng = np.random.default_rng(9)
    n_blocks = len(bars) // 48 + 1
    ts = pd.DatetimeIndex(pd.to_datetime(bars["timestamp"], utc=True)).asi8
    live = np.repeat(ts[np.minimum(np.arange(n_blocks) * 48, len(ts) - 1)] >= live_start, 48)[: len(ts)]
    before = np.repeat(rng.choice([1.0, -1.0, 0.0], n_blocks, p=[0.54, 0.34, 0.12]), 48)[: len(ts)]
    during = np.repeat(rng.choice([1.0, -1.0, 0.0], n_blocks, p=[0.22, 0.64, 0.14]), 48)[: len(ts)]
    return _write(path, bars["timestamp"], np.where(live, during, before))


def _evaluate(path: Path, splits, name: str = "trend"):
    return evaluate_positions(
        read_positions(path),
        splits,
        name=name,
        dataset="SYNTH",
        costs=TradingRules(),
        bars_per_year=BPY,
        truncation_results=TRUNC_OK,
        source=path,
        n_perm=500,
    )


@pytest.fixture(scope="module")
def planted():
    return _market("planted")


@pytest.mark.timeout(120)
def test_trend_rule_passes_on_the_planted_market(planted, tmp_path):
    splits, bars = planted
    rep = _evaluate(_trend_file(bars, tmp_path / "trend.csv"), splits)
    assert rep.verdict.passed, rep.verdict.reasons
    test_attr = rep.evidence.attribution["test"]
    assert test_attr["timing_share"] > 0.6 and test_attr["timing_p"] < 0.05  # mostly timing, not drift
    md = rep.to_markdown()
    assert "Not applicable: a positions file has no model" in md
    assert "6b. Return attribution" in md and "**Verdict: PASS**" in md
    assert "<html" in rep.to_html().lower()


@pytest.mark.timeout(120)
def test_trend_rule_fails_on_the_null_market(tmp_path):
    splits, bars = _market("null")
    rep = _evaluate(_trend_file(bars, tmp_path / "trend.csv"), splits)
    assert not rep.verdict.passed
    assert rep.verdict.checks["deflated_sharpe"] is False and rep.verdict.checks["permutation"] is False


@pytest.mark.timeout(120)
def test_drifting_profile_fails_with_its_reasons(planted, tmp_path):
    splits, bars = planted
    live_start = int(np.asarray(splits["live"].timestamps)[0])
    rep = _evaluate(_drifting_profile_file(bars, live_start, tmp_path / "exp9.csv"), splits, "exp9")
    assert not rep.verdict.passed
    reasons = " | ".join(rep.verdict.reasons)
    assert "underperforms buy-and-hold in the live year" in reasons
    assert "action distribution drift" in reasons
    live = rep.evidence.attribution["live"]
    assert live["mean_exposure"] < -0.2 and live["exposure_pnl"] < 0  # short bias in a rising year


@pytest.mark.parametrize(
    ("edit", "rule", "row"),
    [
        (lambda f: f.drop(columns="position"), "missing_column", None),
        (lambda f: f.assign(position=f.position.where(f.index != 9000, np.nan)), "non_finite", 9001),
        (lambda f: f.assign(position=f.position.where(f.index != 9001, 1.5)), "out_of_range", 9002),
        (lambda f: f.assign(timestamp=f.timestamp.where(f.index != 17, "not a date")), "bad_timestamp", 18),
        (
            lambda f: f.assign(timestamp=f.timestamp.where(f.index != 5, "2019-06-01 00:30:00+00:00")),
            "unknown_timestamp",
            6,
        ),
        (lambda f: f.drop(index=40000), "missing_bar", None),
        (lambda f: pd.concat([f, f.iloc[[3]]]), "duplicate_timestamp", None),
    ],
)
def test_bad_files_name_file_row_and_rule(planted, tmp_path, edit, rule, row):
    splits, bars = planted
    good = pd.read_csv(_trend_file(bars, tmp_path / "trend.csv"), dtype={"timestamp": str})
    path = tmp_path / "bad.csv"
    edit(good).to_csv(path, index=False)
    with pytest.raises(PositionsError, match=rf"bad\.csv{f', row {row}' if row else ''}.*rule {rule}"):
        _evaluate(path, splits)


@pytest.mark.timeout(600)
def test_cli_evaluate_exit_codes(tmp_path):
    """As a user on a file dataset: `himari evaluate` exits 0 on PASS, 3 on the drifting profile's
    FAIL and 2 on a bad file."""
    env = {
        **os.environ,
        "HIMARI_LAKE_ROOT": str(tmp_path / "lake"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "HIMARI_TRUNCATION_PREFIXES": "2",
    }

    def himari(*args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([HIMARI, *args], env=env, capture_output=True, text=True, timeout=400)
        assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
        return out

    bars = generate_synthetic_bars(SyntheticConfig(seed=SEED, variant="planted"))
    raw = tmp_path / "lake" / "raw" / "PLANTED1" / "1h"
    raw.mkdir(parents=True)
    ohlcv = bars[["timestamp", "open", "high", "low", "close", "volume"]].copy()
    ohlcv["timestamp"] = pd.to_datetime(ohlcv["timestamp"], utc=True) - pd.Timedelta("1h")  # open time
    ohlcv.to_csv(raw / "bars.csv", index=False)
    out = himari("run", "-d", "PLANTED1_1h", "--data-only")
    assert out.returncode == 0, out.stdout + out.stderr

    trend = _trend_file(bars, tmp_path / "trend.csv")
    out = himari("evaluate", "PLANTED1_1h", "--positions", str(trend))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verdict: PASS" in out.stdout and "--trials not given" in out.stderr
    html = Path(out.stdout.split("report: ")[1].split()[0])
    assert "6b. Return attribution" in html.read_text()

    from himari_pipeline.storage.lake import Lake

    summary = Lake(env["HIMARI_LAKE_ROOT"]).read_table("strategy_summary", "strategy-trend.PLANTED1_1h")
    assert summary["verdict"].tolist() == ["PASS"] and summary["experiment"].tolist() == ["strategy:trend"]

    split_ts = pd.to_datetime(bars["timestamp"], utc=True)
    live_start = int(pd.Timestamp("2025-01-01 01:00", tz="UTC").value)  # the live year of this dataset
    exp9 = _drifting_profile_file(bars, live_start, tmp_path / "exp9.csv")
    out = himari("evaluate", "PLANTED1_1h", "--positions", str(exp9), "--trials", "5")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "verdict: FAIL" in out.stdout and "underperforms buy-and-hold" in out.stdout

    bad = _write(tmp_path / "bad.csv", split_ts, np.full(len(split_ts), 2.0))
    out = himari("evaluate", "PLANTED1_1h", "--positions", str(bad), "--trials", "1")
    assert out.returncode == 2
    assert "bad.csv, row 1: rule out_of_range: position 2 outside [-1, +1]" in out.stderr
