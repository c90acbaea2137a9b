"""Trading calendars, gap policies and bad values: bars per year, closures vs gaps, file/row/rule errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from himari_pipeline.market import calendars
from himari_pipeline.market.bars import dataset_key
from himari_pipeline.market.readers import load_bars
from himari_pipeline.market.settings import DatasetSettings, SettingsError, read_settings, write_settings
from himari_pipeline.market.validation import BarValidationError, validate_bars

HEADER = "timestamp,open,high,low,close,volume"


def frame(opens: pd.DatetimeIndex, step: str = "1h") -> pd.DataFrame:
    """Valid bars opening at ``opens`` (close time = open + step), prices drifting up."""
    n = len(opens)
    close = 100.0 + np.arange(n) * 0.01
    return pd.DataFrame(
        {
            "timestamp": pd.DatetimeIndex(opens) + pd.Timedelta(step),
            "open": close,
            "high": close + 0.5,
            "low": close - 0.5,
            "close": close,
            "volume": np.full(n, 10.0),
        }
    )


def fx_week_hours(start: str, end: str) -> pd.DatetimeIndex:
    """Hourly bar opens between start and end that the FX market trades (no weekend close)."""
    opens = pd.date_range(start, end, freq="1h", tz="UTC", inclusive="left")
    return opens[calendars.fx_open(opens)]


def write_csv(path: Path, lines: list[str], header: str = HEADER, encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join([header, *lines]) + "\n").encode(encoding))
    return path


def good_lines(n: int = 4) -> list[str]:
    return [f"2024-01-01 {h:02d}:00:00,100,101,99,100.5,10" for h in range(n)]


def rejected(path: Path, **kwargs) -> BarValidationError:
    with pytest.raises(BarValidationError) as e:
        load_bars(path, kwargs.pop("timeframe", "1h"), **kwargs)
    return e.value


# --- calendars and bars per year --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "timeframe", "low", "high"),
    [
        ("24/7", "1h", 8760, 8760),
        ("24/7", "30m", 17520, 17520),
        ("24/5", "1h", 6200, 6300),
        ("XNYS", "1d", 250, 253),
        ("XNYS", "1h", 1740, 1770),
    ],
)
def test_bars_per_year_from_the_calendar(calendar, timeframe, low, high):
    assert low <= calendars.bars_per_year(calendar, timeframe) <= high


def test_bars_in_a_leap_year_and_an_exchange_year():
    assert calendars.bars_in_year("24/7", "1h", 2024) == 8784
    assert calendars.bars_in_year("24/7", "1h", 2023) == 8760
    assert calendars.bars_in_year("XNYS", "1d", 2023) == 250  # the NYSE's 2023 trading days


def test_fx_week_closes_at_17_new_york_winter_and_summer():
    winter = calendars.expected_closes("24/5", "1h", "2024-01-05 21:00", "2024-01-08 00:00")
    summer = calendars.expected_closes("24/5", "1h", "2024-07-05 19:00", "2024-07-08 00:00")
    # last bar opens Friday 21:00 UTC in winter (16:00 EST), first Sunday 22:00 UTC (17:00 EST)
    assert [str(t) for t in winter] == [
        "2024-01-05 21:00:00+00:00",
        "2024-01-05 22:00:00+00:00",
        "2024-01-07 23:00:00+00:00",
        "2024-01-08 00:00:00+00:00",
    ]
    # under US daylight saving the same New York hours are one hour earlier in UTC
    assert str(summer[2]) == "2024-07-05 21:00:00+00:00" and str(summer[3]) == "2024-07-07 22:00:00+00:00"


def test_exchange_holidays_and_early_closes_are_closures():
    daily = calendars.expected_closes("XNYS", "1d", "2023-07-02", "2023-07-08")
    opens = [str((t - pd.Timedelta("1d")).date()) for t in daily]
    assert opens == ["2023-07-03", "2023-07-05", "2023-07-06", "2023-07-07"]  # July 4 is a holiday
    hourly = calendars.expected_closes("XNYS", "1h", "2023-11-24", "2023-11-25")
    # the day after Thanksgiving closes at 13:00 New York (18:00 UTC): 09:30, 10:30, 11:30, 12:30 (cut)
    assert [t.strftime("%H:%M") for t in hourly - pd.Timedelta("1h")] == ["14:30", "15:30", "16:30", "17:30"]


def test_unknown_calendar_or_gap_policy_is_a_clear_error(tmp_path):
    for bad in ("FOO", "xnys", "24/6", "XNYS\n"):
        with pytest.raises(calendars.CalendarError, match="unknown calendar"):
            calendars.validate_calendar(bad)
    with pytest.raises(SettingsError, match="unknown gap policy 'foo'"):
        DatasetSettings(gap_policy="foo")
    with pytest.raises(SettingsError, match="max_gap_bars"):
        DatasetSettings(max_gap_bars=-1)
    stored = DatasetSettings("XNYS", "short", 3)
    write_settings(tmp_path, stored, "1d")
    assert read_settings(tmp_path) == stored
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(SettingsError, match="dataset.json"):
        read_settings(tmp_path)


# --- closures versus gaps -----------------------------------------------------------------------------


def test_weekend_closed_hourly_bars_pass_24_5_and_fail_24_7():
    bars = frame(fx_week_hours("2024-01-08", "2024-01-29"))
    report = validate_bars(bars, timeframe="1h", calendar="24/5")
    assert report.gaps == [] and report.gap_before.sum() == 0
    with pytest.raises(BarValidationError) as e:
        validate_bars(bars, timeframe="1h", calendar="24/7", gap_policy="short")
    err = e.value
    assert err.rule == "gap" and err.row == 119  # the first bar after the first weekend (row 1-based)
    assert "48 missing 1h bar(s) of calendar 24/7" in str(err) and "accepts up to 24" in str(err)


def test_short_outage_is_accepted_flagged_and_a_long_one_rejected():
    opens = fx_week_hours("2024-01-08", "2024-01-20")
    short = frame(opens.delete([30, 31, 32]))
    report = validate_bars(short, timeframe="1h", calendar="24/5", gap_policy="short")
    assert [g.missing_bars for g in report.gaps] == [3] and report.gaps[0].row == 31
    assert report.gap_before[30] == 3 and report.gap_before.sum() == 3
    long = frame(opens.delete(range(30, 60)))
    with pytest.raises(BarValidationError, match="30 missing 1h bar"):
        validate_bars(long, timeframe="1h", calendar="24/5", gap_policy="short")
    assert validate_bars(long, timeframe="1h", calendar="24/5", gap_policy="any").longest_gap == 30
    assert validate_bars(long, timeframe="1h", calendar="24/5", gap_policy="short", max_gap_bars=30).gaps
    with pytest.raises(BarValidationError, match="no gap is accepted"):
        validate_bars(short, timeframe="1h", calendar="24/5", gap_policy="none")


def test_bar_inside_the_fx_weekend_is_rejected_but_a_late_print_is_kept():
    opens = fx_week_hours("2024-01-08", "2024-01-16")
    saturday = frame(opens.append(pd.DatetimeIndex(["2024-01-13 12:00"], tz="UTC")).sort_values())
    with pytest.raises(BarValidationError) as e:
        validate_bars(saturday, timeframe="1h", calendar="24/5")
    assert e.value.rule == "outside_session" and "2024-01-13 12:00" in str(e.value)
    late = frame(opens.append(pd.DatetimeIndex(["2024-01-12 22:00"], tz="UTC")).sort_values())
    report = validate_bars(late, timeframe="1h", calendar="24/5")
    assert report.gaps == [] and [x[2] for x in report.late_prints] == ["2024-01-12 23:00:00+00:00"]


def test_exchange_bars_off_the_calendar_are_rejected():
    sessions = calendars.expected_closes("XNYS", "1d", "2023-06-01", "2023-07-31") - pd.Timedelta("1d")
    assert validate_bars(frame(sessions, "1d"), timeframe="1d", calendar="XNYS").gaps == []
    july4 = frame(sessions.append(pd.DatetimeIndex(["2023-07-04"], tz="UTC")).sort_values(), "1d")
    with pytest.raises(BarValidationError) as e:
        validate_bars(july4, timeframe="1d", calendar="XNYS")
    assert e.value.rule == "off_calendar" and "2023-07-05" in str(e.value)
    missing = frame(sessions.delete(5), "1d")
    report = validate_bars(missing, timeframe="1d", calendar="XNYS", gap_policy="short")
    assert [g.missing_bars for g in report.gaps] == [1]


# --- bad values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "line", "rule"),
    [
        (2, "2024-01-01 02:00:00,inf,101,99,100.5,10", "non_finite_value"),
        (2, "2024-01-01 02:00:00,100,101,99,100.5,-inf", "non_finite_value"),
        (2, "2024-01-01 02:00:00,100,1e308,99,100.5,10", "absurd_value"),
        (2, "2024-01-01 02:00:00,100,101,99,100.5,1e308", "absurd_value"),
        (0, "1960-01-01 02:00:00,100,101,99,100.5,10", "timestamp_out_of_range"),
        (3, "2150-01-01 02:00:00,100,101,99,100.5,10", "timestamp_out_of_range"),
    ],
)
def test_non_finite_and_absurd_values_are_rejected(tmp_path, index, line, rule):
    lines = good_lines()
    lines[index] = line
    f = write_csv(tmp_path / "bad.csv", lines)
    err = rejected(f)
    assert (err.file, err.row, err.rule) == (str(f), index + 2, rule), str(err)
    assert validate_bars(load_bars(write_csv(tmp_path / "ok.csv", good_lines()), "1h")[0], timeframe="1h")


def test_epoch_seconds_beyond_the_nanosecond_range_do_not_wrap(tmp_path):
    lines = [f"{1704067200 + 3600 * i},100,101,99,100.5,10" for i in range(3)]
    assert len(load_bars(write_csv(tmp_path / "ok.csv", lines), "1h")[0]) == 3
    lines[1] = "99999999999,100,101,99,100.5,10"  # epoch seconds in the year 5138: int64 ns would wrap
    err = rejected(write_csv(tmp_path / "far.csv", lines))
    assert (err.row, err.rule) == (3, "timestamp_out_of_range") and "outside 1970..2100" in str(err)
    lines = [f"{99_000_000_000 + 3600 * i},100,101,99,100.5,10" for i in range(3)]  # all in seconds
    err = rejected(write_csv(tmp_path / "far2.csv", lines))
    assert (err.row, err.rule) == (2, "timestamp_out_of_range") and "epoch seconds" in str(err)


def test_latin1_binary_and_duplicate_columns_are_errors_not_tracebacks(tmp_path):
    lines = good_lines()
    lines[1] = lines[1] + ",café"
    latin = write_csv(tmp_path / "latin.csv", lines, header=HEADER + ",note", encoding="latin-1")
    assert rejected(latin).rule == "encoding"
    assert len(load_bars(write_csv(tmp_path / "utf8.csv", lines, header=HEADER + ",note"), "1h")[0]) == 4
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 10)
    assert rejected(binary).rule in ("unknown_format", "encoding")
    dup = write_csv(tmp_path / "dup.csv", [line + ",1" for line in good_lines()], header=HEADER + ",Close")
    err = rejected(dup)
    assert (err.row, err.rule) == (1, "duplicate_column") and "close" in str(err)
    table = pa.table([pa.array([1.0])] * 2, names=["Open", "open"])
    pq.write_table(table, tmp_path / "dup.parquet")
    assert rejected(tmp_path / "dup.parquet").rule in ("duplicate_column", "unreadable_file")


def test_names_are_full_matched():
    assert dataset_key("BTCUSDT", "1h") == "BTCUSDT_1h"
    for symbol in ("BTCUSDT\n", "BTC USDT", "-BTC", "BTC/USDT"):
        with pytest.raises(ValueError, match="invalid symbol"):
            dataset_key(symbol, "1h")
    with pytest.raises(ValueError, match="unknown timeframe"):
        dataset_key("BTCUSDT", "1h\n")


def test_intraday_exchange_bars_gaps_and_after_hours():
    closes = calendars.expected_closes("XNYS", "1h", "2024-03-01", "2024-03-31")
    bars = frame(closes - pd.Timedelta("1h"))
    assert validate_bars(bars, timeframe="1h", calendar="XNYS", gap_policy="short").gaps == []
    day = frame(closes.delete(range(20, 27)) - pd.Timedelta("1h"))  # one whole session: 7 bars
    report = validate_bars(day, timeframe="1h", calendar="XNYS", gap_policy="short")
    assert [g.missing_bars for g in report.gaps] == [7] and report.gap_limit == 7
    more = frame(closes.delete(range(20, 28)) - pd.Timedelta("1h"))
    with pytest.raises(BarValidationError, match="8 missing 1h bar"):
        validate_bars(more, timeframe="1h", calendar="XNYS", gap_policy="short")
    after_hours = frame(
        (closes - pd.Timedelta("1h")).append(pd.DatetimeIndex(["2024-03-05 21:00"], tz="UTC"))
    )
    after_hours = after_hours.sort_values("timestamp", ignore_index=True)
    with pytest.raises(BarValidationError) as e:
        validate_bars(after_hours, timeframe="1h", calendar="XNYS", gap_policy="short")
    assert e.value.rule == "off_calendar" and "2024-03-05 22:00" in str(e.value)
