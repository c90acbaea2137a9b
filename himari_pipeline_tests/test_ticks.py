"""Trades to bars: a hand example, incremental equality, file/row/rule errors, `himari ingest --ticks`.

The trade streams are generated here (no tick data ships in the packages): Poisson arrivals inside
XNYS sessions, a random-walk price, and some pre- and post-market trades the calendar drops.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.market.calendars import expected_closes
from himari_pipeline.market.readers import read_bars_file
from himari_pipeline.market.ticks import aggregate_ticks, read_ticks, read_ticks_files
from himari_pipeline.market.validation import BarValidationError

HIMARI = str(Path(sys.executable).with_name("himari"))


def _utc(*times: str) -> pd.DatetimeIndex:
    return pd.to_datetime(list(times), utc=True)


def test_hand_example_on_24_7_and_on_an_exchange():
    """Three one-minute intervals by hand: OHLC, volume, trades, VWAP; the latest interval is pending;
    on XNYS a pre-market trade is dropped and counted."""
    ticks = pd.DataFrame(
        {
            "timestamp": _utc(
                "2024-03-04 13:05:00",
                "2024-03-04 14:30:05",
                "2024-03-04 14:30:40",
                "2024-03-04 14:30:59",
                "2024-03-04 14:32:10",
                "2024-03-04 14:33:00",
            ),  # fmt: skip
            "price": [90.0, 100.0, 101.0, 99.0, 99.5, 100.2],
            "size": [7.0, 10.0, 30.0, 10.0, 5.0, 1.0],
        }
    )
    nyse = aggregate_ticks(ticks, "1m", "XNYS")
    assert nyse.dropped == 1 and len(nyse.pending) == 1
    want = pd.DataFrame(
        {
            "timestamp": _utc("2024-03-04 14:31", "2024-03-04 14:33"),
            "open": [100.0, 99.5],
            "high": [101.0, 99.5],
            "low": [99.0, 99.5],
            "close": [99.0, 99.5],
            "volume": [50.0, 5.0],
            "trades": [3, 1],
            "vwap": [(1000 + 3030 + 990) / 50, 99.5],
        }  # fmt: skip
    )
    pd.testing.assert_frame_equal(nyse.bars, want)
    crypto = aggregate_ticks(ticks, "1m", "24/7")
    assert crypto.dropped == 0 and crypto.bars["timestamp"].iloc[0] == pd.Timestamp(
        "2024-03-04 13:06", tz="UTC"
    )
    pd.testing.assert_frame_equal(crypto.bars.iloc[1:].reset_index(drop=True), want)
    later = aggregate_ticks(ticks, "1m", "XNYS", as_of=pd.Timestamp("2024-03-04 14:34", tz="UTC"))
    assert len(later.bars) == 3 and later.pending.empty  # its close has passed: final
    weekend = aggregate_ticks(ticks.assign(timestamp=ticks["timestamp"] - pd.Timedelta("1D")), "1m", "XNYS")
    assert weekend.bars.empty and weekend.pending.empty and weekend.dropped == len(ticks)  # a Sunday


def _stream(seed: int, days: tuple[str, str] = ("2024-03-04", "2024-03-08")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start, end = pd.Timestamp(days[0], tz="UTC"), pd.Timestamp(days[1], tz="UTC") + pd.Timedelta("1D")
    closes = expected_closes("XNYS", "1m", start, end)
    opens = (closes - pd.Timedelta("1min")).asi8
    n = rng.poisson(4.0, len(opens))
    n[rng.random(len(opens)) < 0.05] = 0  # some minutes without a trade: gaps
    t = np.repeat(opens, n) + rng.integers(0, 60_000_000, n.sum()) * 1000  # microseconds
    noon = pd.to_datetime(
        [f"{d} 12:00:00" for d in pd.bdate_range(*days).strftime("%Y-%m-%d")], utc=True
    ).asi8
    t = np.sort(np.r_[t, noon, noon + 10 * 3_600_000_000_000])  # pre-market and after-hours trades (UTC)
    price = 500.0 * np.exp(np.cumsum(rng.normal(0, 2e-4, len(t))))
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(t, utc=True),
            "price": price.round(4),
            "size": rng.integers(1, 300, len(t)).astype(float),
        }
    )


def test_aggregating_in_pieces_equals_aggregating_whole_and_never_rewrites_a_bar():
    ticks = _stream(0)
    whole = aggregate_ticks(ticks, "1m", "XNYS")
    cuts = np.sort(np.random.default_rng(1).choice(np.arange(1, len(ticks)), 9, replace=False))
    pending, pieces, dropped = ticks.iloc[:0], [], 0
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(ticks)], strict=True):
        chunk = ticks.iloc[lo:hi]
        out = aggregate_ticks(pd.concat([pending, chunk], ignore_index=True), "1m", "XNYS")
        if pieces and not out.bars.empty:
            assert out.bars["timestamp"].iloc[0] > pieces[-1]["timestamp"].iloc[-1]  # only new bars
        pieces.append(out.bars)
        pending, dropped = out.pending, dropped + out.dropped
    pd.testing.assert_frame_equal(pd.concat(pieces, ignore_index=True), whole.bars)
    pd.testing.assert_frame_equal(pending.reset_index(drop=True), whole.pending.reset_index(drop=True))
    assert dropped == whole.dropped == 10 and len(whole.bars) > 1500
    b = whole.bars
    assert (b["low"] <= b[["open", "close"]].min(axis=1)).all() and (
        b["vwap"] >= b["low"] * (1 - 1e-12)
    ).all()
    assert (b["high"] >= b[["open", "close"]].max(axis=1)).all() and (
        b["vwap"] <= b["high"] * (1 + 1e-12)
    ).all()


@pytest.mark.parametrize(
    ("body", "row", "rule"),
    [
        ("time,price,size\n2024-03-04T14:30:01Z,100,1\n", None, "missing_column"),
        ("timestamp,price,size\n", None, "empty_file"),
        ("timestamp,price,size\n2024-03-04T14:30:01Z,100,1\nyesterday,100,1\n", 3, "unparsable_timestamp"),
        ("timestamp,price,size\n2024-03-04T14:30:01Z,100,1\n2024-03-04T14:30:02Z,,1\n", 3, "nan_value"),
        ("timestamp,price,size\n2024-03-04T14:30:01Z,0,1\n", 2, "non_positive_price"),
        ("timestamp,price,size\n2024-03-04T14:30:01Z,100,-1\n", 2, "negative_size"),
        (
            "timestamp,price,size\n2024-03-04T14:30:02Z,100,1\n2024-03-04T14:30:01Z,100,1\n",
            3,
            "unsorted_timestamp",
        ),
    ],
)
def test_bad_trade_files_are_named_by_file_row_and_rule(tmp_path, body, row, rule):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(BarValidationError) as err:
        read_ticks(path)
    assert (err.value.file, err.value.row, err.value.rule) == (str(path), row, rule)


def test_good_files_read_as_one_stream_and_files_out_of_order_are_refused(tmp_path):
    ticks = _stream(2, ("2024-03-04", "2024-03-05"))
    day1, day2 = ticks[ticks["timestamp"] < "2024-03-05"], ticks[ticks["timestamp"] >= "2024-03-05"]
    day1.to_csv(tmp_path / "d1.csv", index=False)
    day2.assign(timestamp=day2["timestamp"].astype("int64") // 1000).to_parquet(
        tmp_path / "d2.parquet"
    )  # epoch µs
    both = read_ticks_files([tmp_path / "d1.csv", tmp_path / "d2.parquet"])
    np.testing.assert_array_equal(both["timestamp"].to_numpy(), ticks["timestamp"].to_numpy())
    np.testing.assert_array_equal(both["price"].to_numpy(), ticks["price"].to_numpy())
    with pytest.raises(BarValidationError, match=r"d1\.csv, row 2: rule unsorted_timestamp"):
        read_ticks_files([tmp_path / "d2.parquet", tmp_path / "d1.csv"])


@pytest.mark.timeout(300)
def test_cli_ingest_ticks_day_by_day_gives_the_bars_of_all_trades_at_once(tmp_path):
    """`himari ingest --ticks` as a user runs it, one day at a time on XNYS 1m bars: the bars stored
    equal the bars of all trades aggregated at once; a bad file and a file going back in time change
    nothing."""
    env = {**os.environ, "HIMARI_LAKE_ROOT": str(tmp_path / "lake"), "DAGSTER_HOME": str(tmp_path / "home")}
    ticks = _stream(3, ("2024-03-04", "2024-03-06"))
    days = [g for _, g in ticks.groupby(ticks["timestamp"].dt.date)]
    files = []
    for i, day in enumerate(days):
        files.append(tmp_path / f"spy_{i}.csv")
        day.to_csv(files[-1], index=False)

    def ingest(path: Path) -> subprocess.CompletedProcess:
        cmd = [HIMARI, "ingest", str(path), "--ticks", "--symbol", "SPY", "--timeframe", "1m"]
        cmd += ["--calendar", "XNYS", "--no-materialize"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
        return out

    for path in files:
        out = ingest(path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "bars closed" in out.stdout and "trades pending" in out.stdout
    folder = tmp_path / "lake" / "raw" / "SPY" / "1m"
    pending_before = (folder / ".ticks_pending.parquet").read_bytes()
    stored = pd.concat(
        [read_bars_file(p, "1m") for p in sorted(folder.glob("ticks_*.parquet"))], ignore_index=True
    )
    want = aggregate_ticks(ticks, "1m", "XNYS").bars
    np.testing.assert_array_equal(stored["timestamp"].to_numpy(), want["timestamp"].to_numpy())
    np.testing.assert_allclose(
        stored[["open", "high", "low", "close", "volume"]], want[["open", "high", "low", "close", "volume"]]
    )

    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,price,size\n2024-03-07T14:30:01Z,100,1\n2024-03-07T14:30:02Z,-3,1\n")
    out = ingest(bad)
    assert out.returncode != 0 and "bad.csv, row 3: rule non_positive_price" in out.stderr + out.stdout
    out = ingest(files[0])  # trades already ingested
    assert out.returncode != 0 and "rule unsorted_timestamp" in out.stderr + out.stdout
    assert (folder / ".ticks_pending.parquet").read_bytes() == pending_before
    assert len(list(folder.glob("ticks_*.parquet"))) == len(files)
