"""File readers: Binance kline CSV/ZIP (ms and µs, header or not), generic CSV and Parquet, merging."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.market.bars import BAR_COLUMNS
from himari_pipeline.market.readers import (
    BINANCE_COLUMNS,
    canonical,
    detect_format,
    load_bars,
    read_bars_file,
    read_bars_files,
)
from himari_pipeline.market.validation import BarValidationError

# Two 1h klines in the exact layout published on data.binance.vision (values illustrative; opens at
# 2024-01-01 00:00 and 01:00 UTC).
REAL_KLINES = [
    "1704067200000,42283.58000000,42554.57000000,42261.02000000,42475.23000000,1271.68108000,"
    "1704070799999,53957248.97378870,47134,682.57581000,28957416.81949290,0",
    "1704070800000,42475.23000000,42775.00000000,42431.65000000,42613.56000000,1196.37856000,"
    "1704074399999,50984893.13026650,44102,630.46478000,26867165.28378370,0",
]
HEADER = ",".join(BINANCE_COLUMNS)
T0_MS = 1704067200000  # 2024-01-01 00:00 UTC
HOUR_MS = 3_600_000


def binance_lines(n: int, start_ms: int = T0_MS, step_ms: int = HOUR_MS, micro: bool = False) -> list[str]:
    out = []
    for i in range(n):
        ot = start_ms + i * step_ms
        ct = ot + step_ms - 1
        if micro:
            ot, ct = ot * 1000, (ot + step_ms) * 1000 - 1
        p = 100.0 + i
        out.append(f"{ot},{p},{p + 2},{p - 1},{p + 1},{10 + i},{ct},1000.0,50,5.0,500.0,0")
    return out


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_binance_rows_parse(tmp_path):
    f = write(tmp_path / "BTCUSDT-1h-2024-01.csv", REAL_KLINES)
    assert detect_format(f) == "binance_csv"
    df = read_bars_file(f, "1h")
    assert list(df.columns) == [*BAR_COLUMNS, "source_row"]
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    # Labelled by close time: open 00:00 + 1h.
    assert list(df["timestamp"]) == [
        pd.Timestamp("2024-01-01 01:00", tz="UTC"),
        pd.Timestamp("2024-01-01 02:00", tz="UTC"),
    ]
    assert df.loc[0, ["open", "high", "low", "close", "volume"]].tolist() == [
        42283.58,
        42554.57,
        42261.02,
        42475.23,
        1271.68108,
    ]
    assert df["source_row"].tolist() == [1, 2]


def test_binance_ms_and_us_give_the_same_bars(tmp_path):
    ms = read_bars_file(write(tmp_path / "ms.csv", binance_lines(30)), "1h")
    us = read_bars_file(write(tmp_path / "us.csv", binance_lines(30, micro=True)), "1h")
    pd.testing.assert_frame_equal(ms, us)
    assert ms["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 01:00", tz="UTC")


def test_binance_header_and_no_header(tmp_path):
    plain = read_bars_file(write(tmp_path / "a.csv", binance_lines(5)), "1h")
    headed = read_bars_file(write(tmp_path / "b.csv", [HEADER, *binance_lines(5)]), "1h")
    assert detect_format(tmp_path / "b.csv") == "binance_csv"
    pd.testing.assert_frame_equal(canonical(plain), canonical(headed))
    assert plain["source_row"].tolist() == [1, 2, 3, 4, 5]
    assert headed["source_row"].tolist() == [2, 3, 4, 5, 6]  # line numbers, header is line 1


def test_binance_zip(tmp_path):
    csv = write(tmp_path / "BTCUSDT-5m-2024-01.csv", binance_lines(12, step_ms=300_000))
    z = tmp_path / "BTCUSDT-5m-2024-01.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(csv, csv.name)
    assert detect_format(z) == "binance_zip"
    pd.testing.assert_frame_equal(read_bars_file(z, "5m"), read_bars_file(csv, "5m"))
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.write(csv, "a.csv")
        zf.write(csv, "b.csv")
    with pytest.raises(BarValidationError) as e:
        read_bars_file(two, "5m")
    assert e.value.rule == "unknown_format" and e.value.file == str(two) and e.value.row is None


def test_binance_mixed_units_rejected(tmp_path):
    lines = binance_lines(3) + binance_lines(2, start_ms=T0_MS + 3 * HOUR_MS, micro=True)
    with pytest.raises(BarValidationError) as e:
        read_bars_file(write(tmp_path / "mixed.csv", lines), "1h")
    assert (e.value.rule, e.value.row) == ("mixed_timestamp_unit", 4)


def test_binance_timeframe_mismatch(tmp_path):
    f = write(tmp_path / "five.csv", binance_lines(4, step_ms=300_000))
    with pytest.raises(BarValidationError) as e:
        read_bars_file(f, "1h")
    assert (e.value.rule, e.value.row) == ("mixed_timeframe", 1)
    assert "0 days 00:05:00" in str(e.value)


@pytest.mark.parametrize(
    "stamps",
    [
        ["2024-01-01 00:00:00", "2024-01-01 01:00:00", "2024-01-01 02:00:00"],  # naive ISO = UTC
        ["2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"],
        ["2024-01-01T01:00:00+01:00", "2024-01-01T03:00:00+02:00", "2024-01-01T02:00:00+00:00"],
        ["1704067200", "1704070800", "1704074400"],  # epoch seconds
        ["1704067200000", "1704070800000", "1704074400000"],  # ms
        ["1704067200000000", "1704070800000000", "1704074400000000"],  # µs
        ["1704067200000000000", "1704070800000000000", "1704074400000000000"],  # ns
    ],
)
def test_generic_csv_timestamps(tmp_path, stamps):
    lines = ["Timestamp,Open,High,Low,Close,Volume,extra"]
    lines += [f"{s},{100 + i},{102 + i},{99 + i},{101 + i},{5 + i},x" for i, s in enumerate(stamps)]
    f = write(tmp_path / "generic.csv", lines)
    assert detect_format(f) == "generic_csv"
    df = read_bars_file(f, "1h")  # timestamps are open times: close = open + 1h
    expected = pd.date_range("2024-01-01 01:00", periods=3, freq="h", tz="UTC")
    assert list(df["timestamp"]) == list(expected)
    assert df["source_row"].tolist() == [2, 3, 4]
    closed = read_bars_file(f, "1h", timestamp_is="close")
    assert list(closed["timestamp"]) == list(expected - pd.Timedelta(hours=1))


def test_generic_parquet(tmp_path):
    ts = pd.date_range("2024-01-01", periods=4, freq="5min")  # naive = UTC
    data = {
        "open": [1.0, 2, 3, 4],
        "high": [2.0, 3, 4, 5],
        "low": [0.5, 1, 2, 3],
        "close": [1.5, 2.5, 3.5, 4.5],
    }
    base = pd.DataFrame({"timestamp": ts, **data, "volume": [1.0, 1, 1, 1]})
    variants = {
        "naive.parquet": base,
        "aware.parquet": base.assign(timestamp=ts.tz_localize("UTC").tz_convert("Asia/Tokyo")),
        "epoch_ms.parquet": base.assign(timestamp=ts.asi8 // 10**6),
        "iso.parquet": base.assign(timestamp=ts.strftime("%Y-%m-%dT%H:%M:%S")),
    }
    for name, frame in variants.items():
        f = tmp_path / name
        frame.to_parquet(f)
        assert detect_format(f) == "parquet"
        df = read_bars_file(f, "5m", timestamp_is="close")
        assert list(df["timestamp"]) == list(ts.tz_localize("UTC")), name
        assert df["source_row"].tolist() == [1, 2, 3, 4]
        np.testing.assert_array_equal(df["close"], data["close"])


def test_merge_monthly_files_in_time_order(tmp_path):
    jan = write(tmp_path / "jan.csv", binance_lines(744))  # 31 days of hourly bars
    feb = write(tmp_path / "feb.csv", binance_lines(10, start_ms=T0_MS + 744 * HOUR_MS))
    df = read_bars_files([feb, jan], "1h")  # given out of order
    assert len(df) == 754 and df["timestamp"].is_monotonic_increasing
    assert df["source_file"].iloc[0] == str(jan) and df["source_file"].iloc[-1] == str(feb)
    assert df["source_row"].iloc[744] == 1
    bars, report = load_bars([jan, feb], "1h")
    assert report.n_rows == 754 and report.gaps == []
    pd.testing.assert_frame_equal(canonical(bars), canonical(df))


def test_duplicate_across_files_names_both(tmp_path):
    jan = write(tmp_path / "jan.csv", binance_lines(5))
    overlap = write(tmp_path / "overlap.csv", binance_lines(3, start_ms=T0_MS + 4 * HOUR_MS))
    with pytest.raises(BarValidationError) as e:
        read_bars_files([jan, overlap], "1h")
    err = e.value
    assert (err.rule, err.file, err.row) == ("duplicate_timestamp", str(overlap), 1)
    assert f"{jan}, row 5" in str(err)


def test_unknown_and_empty_files(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(BarValidationError) as e:
        detect_format(junk)
    assert e.value.rule == "unknown_format"
    six = write(tmp_path / "six.csv", ["1704067200000,1,2,0.5,1.5,10"])
    with pytest.raises(BarValidationError) as e:
        read_bars_file(six, "1h")
    assert e.value.rule == "unknown_format" and "12-column" in str(e.value)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(BarValidationError) as e:
        read_bars_file(empty, "1h")
    assert e.value.rule == "empty_file"


def test_blank_and_malformed_lines_keep_line_numbers(tmp_path):
    lines = [HEADER, *binance_lines(6)]
    trailing = write(tmp_path / "trailing.csv", [*lines, "", ""])
    assert len(read_bars_file(trailing, "1h")) == 6
    middle = write(tmp_path / "middle.csv", [*lines[:3], "", *lines[3:]])
    with pytest.raises(BarValidationError) as e:
        read_bars_file(middle, "1h")
    assert (e.value.rule, e.value.row) == ("unparsable_timestamp", 4)
    extra = write(tmp_path / "extra.csv", [*lines[:4], lines[4] + ",7", *lines[5:]])
    with pytest.raises(BarValidationError) as e:
        read_bars_file(extra, "1h")
    assert (e.value.rule, e.value.row) == ("unknown_format", 5)
    # Missing trailing columns we do not use are tolerated; a missing close_time is not.
    seven = write(tmp_path / "seven.csv", [*lines[:4], ",".join(lines[4].split(",")[:7]), *lines[5:]])
    assert len(read_bars_file(seven, "1h")) == 6
    short = write(tmp_path / "short.csv", [*lines[:4], ",".join(lines[4].split(",")[:6]), *lines[5:]])
    with pytest.raises(BarValidationError) as e:
        read_bars_file(short, "1h")
    assert (e.value.rule, e.value.row) == ("unparsable_timestamp", 5)
