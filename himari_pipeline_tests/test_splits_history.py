"""Splits for any history length: live segment modes, embargo = horizon + context, errors that add up."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.datasets import SplitConfig, build_splits, check_splits, plan_splits, required_warmup
from himari_pipeline.datasets.splits import bar_years
from himari_pipeline.ekf import EKFParams, denoise_features
from himari_pipeline.features.catalog import FEATURE_NAMES
from himari_pipeline.features.compute import compute_features
from himari_pipeline.regimes import detect_regimes
from himari_pipeline_tests.builders import walk_bars


def walk(ts: pd.DatetimeIndex, seed: int = 0) -> pd.DataFrame:
    """Random-walk OHLCV bars closing at ``ts``."""
    return walk_bars(ts, seed, spread=0.003)


def split_real(bars: pd.DataFrame, timeframe: str, cfg: SplitConfig | None = None):
    """The pipeline's own features, EKF and regimes, then plan + build + check."""
    feats = compute_features(bars)
    den = denoise_features(feats, EKFParams.for_features(FEATURE_NAMES))
    regs = detect_regimes(bars, timeframe)
    warmup = required_warmup(feats, den, regs)
    plan = plan_splits(bars["timestamp"], warmup, cfg or SplitConfig())
    ds = build_splits(bars, feats, den, regs, list(FEATURE_NAMES), plan)
    return plan, ds


def hourly(start: str, end: str) -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="1h", tz="UTC")


def weekdays(first: str, last: str) -> pd.DatetimeIndex:
    """Daily bars of weekdays only (open at midnight, close 24 h later), as an exchange has them."""
    return pd.bdate_range(first, last, tz="UTC") + pd.Timedelta("1D")


def test_one_year_of_hourly_bars_falls_back_to_a_fraction():
    bars = walk(hourly("2017-01-01 01:00", "2018-01-01 00:00"))
    plan, ds = split_real(bars, "1h")
    sizes = plan.sizes()
    print(f"\n1 year of 1h bars ({len(bars)}): warm-up {plan.warmup}, embargo {plan.embargo}, {sizes}")
    assert len(bars) == 8760 and plan.live == "fraction" and plan.live_year is None
    assert "only 0 rows" in plan.live_reason and "2017" in plan.live_reason
    assert plan.embargo == 101  # label horizon 1 + context 100, not the warm-up again
    assert sizes["live"] == int(np.ceil(0.2 * (len(bars) - plan.warmup)))
    assert plan.ranges["live"][1] == len(bars)
    # every row is accounted for: warm-up once, three embargo gaps, four splits
    assert plan.warmup + 3 * plan.embargo + sum(sizes.values()) == len(bars)
    assert min(sizes.values()) > 100 and sizes["train"] > 3000
    assert check_splits(ds, SplitConfig().min_embargo) == []
    assert check_splits(ds, SplitConfig().min_embargo + 1) != []


def test_nine_years_of_daily_weekday_bars_keep_the_last_calendar_year_live():
    bars = walk(weekdays("2016-01-04", "2024-12-31"), seed=1)
    plan, ds = split_real(bars, "1d")
    sizes = plan.sizes()
    print(
        f"\n9 years of weekday 1d bars ({len(bars)}): warm-up {plan.warmup}, embargo {plan.embargo}, {sizes}"
    )
    assert plan.live == "year" and plan.live_year == 2024
    assert sizes["live"] == 262  # the weekdays of 2024
    assert plan.embargo == 101 and plan.warmup == 288  # features' longest window; regimes need less
    assert plan.warmup + 3 * plan.embargo + sum(sizes.values()) == len(bars)
    assert sizes["train"] > 850  # was 429 with three embargo gaps of warm-up + context
    assert check_splits(ds, 101) == []
    years = (pd.to_datetime(ds["test"].timestamps, utc=True) - pd.Timedelta(1, "ns")).year
    assert years.max() == 2023


def _terms(message: str) -> tuple[int, list[int], int, int]:
    """``(need, terms, have, short)`` parsed from a "data too short" error."""
    need = int(re.search(r"need (\d+) bars = ", message).group(1))
    body = message.split(" bars = ", 1)[1].split("; the data have")[0]
    terms = [int(x) for x in re.findall(r"(?:^| \+ )(-?\d+) ", body)]
    have, short = (int(x) for x in re.search(r"the data have (\d+), (-?\d+) short", message).groups())
    return need, terms, have, short


@pytest.mark.parametrize(
    ("cfg", "n_bars"),
    [
        (SplitConfig(), 1500),
        (SplitConfig(live="fraction", live_fraction=0.3), 1200),
        (SplitConfig(live_year=2020), 3000),
    ],
)
def test_too_short_dataset_error_shows_every_term_and_they_add_up(cfg, n_bars):
    ts = hourly("2020-01-01 01:00", "2021-12-31 00:00")
    with pytest.raises(ValueError, match="data too short to split") as err:
        plan_splits(ts[:n_bars], 743, cfg)
    message = str(err.value)
    print("\n" + message)
    need, terms, have, short = _terms(message)
    assert len(terms) == 5  # warm-up, embargo, train/val/test, live, after the live segment
    assert sum(terms) == need and have == n_bars and need - have == short > 0
    assert terms[0] == 743 and terms[1] == 3 * 101
    assert "warm-up" in message and "label horizon 1 + context 100" in message
    if cfg.live_mode == "fraction" or cfg.live_year is None:
        plan = plan_splits(ts[:need], 743, cfg)  # the number it asks for is enough, and no fewer would do
        assert plan.warmup + 3 * plan.embargo + sum(plan.sizes().values()) == need
        with pytest.raises(ValueError, match="data too short"):
            plan_splits(ts[: need - 1], 743, cfg)


def test_live_segment_modes_and_their_errors():
    ts = hourly("2020-01-01 01:00", "2026-01-01 00:00")  # six calendar years
    auto = plan_splits(ts, 743)
    assert auto.live == "year" and auto.live_year == 2025 and auto.sizes()["live"] == 8760
    fr = plan_splits(ts, 743, SplitConfig(live="fraction", live_fraction=0.1))
    assert fr.live == "fraction" and fr.sizes()["live"] == int(np.ceil(0.1 * (len(ts) - 743)))
    date = plan_splits(ts, 743, SplitConfig(live_start="2025-07-01"))
    assert date.live == "date" and date.bounds["live"][0] == "2025-07-01T01:00:00+00:00"
    assert date.ranges["live"][1] == len(ts)
    year = plan_splits(ts, 743, SplitConfig(live="year", live_year=2023))
    assert year.bounds["live"] == ("2023-01-01T01:00:00+00:00", "2024-01-01T00:00:00+00:00")
    for plan in (auto, fr, date, year):
        r = plan.ranges
        assert r["train"][0] == 743 and r["val"][0] - r["train"][1] == r["test"][0] - r["val"][1] == 101
        assert r["live"][0] - r["test"][1] == 101
    assert SplitConfig.from_dict(date.config.to_dict()) == date.config
    # five years of weekday daily bars: the last year would leave train/val/test too short, a fraction fits
    days = weekdays("2020-01-01", "2024-12-31")
    with pytest.raises(ValueError, match="data too short"):
        plan_splits(days, 288, SplitConfig(live="year"))
    five = plan_splits(days, 288)
    assert five.live == "fraction" and "keeping it needs 808" in five.live_reason, five.live_reason
    with pytest.raises(ValueError, match="live_year=2020 applies to live='year'"):
        SplitConfig(live="fraction", live_year=2020)
    with pytest.raises(ValueError, match="unknown live mode 'last'"):
        SplitConfig(live="last")
    with pytest.raises(ValueError, match="live='date' needs live_start"):
        SplitConfig(live="date")
    with pytest.raises(ValueError, match="not an ISO date"):
        SplitConfig(live_start="next tuesday")
    with pytest.raises(ValueError, match="live_fraction must be in"):
        SplitConfig(live="fraction", live_fraction=1.5)
    with pytest.raises(ValueError, match="after the last bar"):
        plan_splits(ts, 743, SplitConfig(live_start="2027-01-01"))


def test_auto_falls_back_when_the_last_year_is_a_stub() -> None:
    """Daily bars ending in early February (like GOOG's test file): the last year holds too few rows for
    a live segment, so ``auto`` takes the last fraction; forcing that year is a clear error."""
    ts = weekdays("2004-08-19", "2013-02-28")
    stub = int((bar_years(ts) == 2013).sum())
    assert stub < 101
    plan = plan_splits(ts, 400)
    assert plan.live == "fraction"
    assert f"holds only {stub} rows" in plan.live_reason
    with pytest.raises(ValueError, match=rf"live segment too short: .* holds {stub} bars, fewer than 101"):
        plan_splits(ts, 400, SplitConfig(live="year"))
