"""Validation: every rule, on small bad files, names the file, the first offending row and the rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.market.readers import load_bars
from himari_pipeline.market.validation import RULES, BarValidationError, validate_bars

HEADER = "timestamp,open,high,low,close,volume"


def good_rows(n: int = 6) -> list[list[str]]:
    """Hourly bars opening 2024-01-01 00:00 UTC; row i of the list is line i+2 of the file."""
    rows = []
    for i in range(n):
        ts = (pd.Timestamp("2024-01-01") + pd.Timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([ts, f"{100 + i}.0", f"{102 + i}.0", f"{99 + i}.0", f"{101 + i}.0", "10.0"])
    return rows


def write_csv(path: Path, rows: list[list[str]], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    return path


def error_for(path: Path, timeframe: str = "1h", **kwargs) -> BarValidationError:
    with pytest.raises(BarValidationError) as e:
        load_bars(path, timeframe, **kwargs)
    return e.value


def bad_file(tmp_path: Path, index: int, column: int, value: str, name: str = "bad.csv") -> Path:
    rows = good_rows()
    rows[index][column] = value
    return write_csv(tmp_path / name, rows)


def assert_error(err: BarValidationError, file: Path, row: int | None, rule: str) -> None:
    assert (err.file, err.row, err.rule) == (str(file), row, rule), str(err)
    assert rule in RULES
    prefix = f"{file}, row {row}: rule {rule}: " if row is not None else f"{file}: rule {rule}: "
    assert str(err).startswith(prefix), str(err)


def test_good_file_passes(tmp_path):
    bars, report = load_bars(write_csv(tmp_path / "ok.csv", good_rows()), "1h")
    assert report.n_rows == 6 and report.gaps == []
    assert report.first_timestamp == "2024-01-01 01:00:00+00:00"


def test_message_format(tmp_path):
    rows = good_rows(20)
    rows[15][2], rows[15][3] = "101.0", "102.5"  # line 17
    rows[15][1], rows[15][4] = "101.5", "101.5"
    f = write_csv(tmp_path / "x.csv", rows)
    err = error_for(f)
    assert str(err) == f"{f}, row 17: rule high_below_low: high 101.0 < low 102.5"


def test_missing_column(tmp_path):
    f = write_csv(tmp_path / "m.csv", [r[:5] for r in good_rows()], header="timestamp,open,high,low,close")
    err = error_for(f)
    assert_error(err, f, None, "missing_column")
    assert "volume" in str(err)


def test_misnamed_column(tmp_path):
    f = write_csv(tmp_path / "m.csv", good_rows(), header="time,open,high,low,close,volume")
    assert_error(error_for(f), f, None, "missing_column")


def test_unparsable_timestamp(tmp_path):
    f = bad_file(tmp_path, 3, 0, "2024-13-45 99:00")
    err = error_for(f)
    assert_error(err, f, 5, "unparsable_timestamp")
    assert "2024-13-45 99:00" in str(err)


def test_mixed_timestamp_unit(tmp_path):
    rows = good_rows()
    for i, r in enumerate(rows):
        r[0] = str(1704067200000 + i * 3_600_000)
    rows[2][0] = str((1704067200000 + 2 * 3_600_000) * 1000)  # µs among ms
    f = write_csv(tmp_path / "u.csv", rows)
    assert_error(error_for(f), f, 4, "mixed_timestamp_unit")


def test_duplicate_timestamp(tmp_path):
    f = bad_file(tmp_path, 4, 0, good_rows()[3][0])
    err = error_for(f)
    assert_error(err, f, 6, "duplicate_timestamp")
    assert "row 5" in str(err)


def test_unsorted_timestamp(tmp_path):
    rows = good_rows()
    rows[2], rows[3] = rows[3], rows[2]
    f = write_csv(tmp_path / "s.csv", rows)
    assert_error(error_for(f), f, 5, "unsorted_timestamp")


def test_non_positive_price(tmp_path):
    rows = good_rows()
    rows[2][3] = "0"  # low = 0
    f = write_csv(tmp_path / "p.csv", rows)
    err = error_for(f)
    assert_error(err, f, 4, "non_positive_price")
    assert "low 0.0 <= 0" in str(err)


@pytest.mark.parametrize(
    ("index", "column", "value", "row", "rule", "message"),
    [
        (1, 2, "98.0", 3, "high_below_low", ""),
        (4, 4, "150.0", 6, "close_outside_range", "close 150.0 outside [low 103.0, high 106.0]"),
        (0, 1, "90.0", 2, "open_outside_range", ""),
        (5, 5, "-1.0", 7, "negative_volume", ""),
    ],
)
def test_ohlc_and_volume_rules(tmp_path, index, column, value, row, rule, message):
    f = bad_file(tmp_path, index, column, value)
    err = error_for(f)
    assert_error(err, f, row, rule)
    assert message in str(err)


@pytest.mark.parametrize("value", ["", "abc", "nan"])
def test_nan_value(tmp_path, value):
    f = bad_file(tmp_path, 2, 4, value)
    err = error_for(f)
    assert_error(err, f, 4, "nan_value")
    assert "close" in str(err)


def test_gap_error_and_report(tmp_path):
    rows = good_rows(8)
    del rows[3:5]  # bars opening 03:00 and 04:00 are missing
    f = write_csv(tmp_path / "g.csv", rows)
    err = error_for(f)
    assert_error(err, f, 5, "gap")
    assert "2 missing 1h bar(s)" in str(err)
    _, report = load_bars(f, "1h", gap_policy="report")
    assert len(report.gaps) == 1 and report.missing_bars == 2
    gap = report.gaps[0]
    assert (gap.file, gap.row, gap.missing_bars) == (str(f), 5, 2)
    assert gap.before == "2024-01-01 03:00:00+00:00" and gap.after == "2024-01-01 06:00:00+00:00"


def test_mixed_timeframe(tmp_path):
    rows = good_rows()
    rows[3][0] = "2024-01-01 02:30:00"  # 30 min after the previous bar: not a multiple of 1h
    f = write_csv(tmp_path / "t.csv", rows)
    assert_error(error_for(f), f, 5, "mixed_timeframe")
    # 90-minute spacing is above the timeframe but not a multiple of it: also mixed, not a gap.
    rows = good_rows()
    for r in rows[3:]:
        r[0] = (pd.Timestamp(r[0]) + pd.Timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M:%S")
    f = write_csv(tmp_path / "t2.csv", rows)
    assert_error(error_for(f, gap_policy="report"), f, 5, "mixed_timeframe")


def test_unknown_format(tmp_path):
    f = tmp_path / "notes.csv"
    f.write_text("1,2,3\n4,5,6\n")
    assert_error(error_for(f), f, None, "unknown_format")


def test_first_offending_row_wins(tmp_path):
    rows = good_rows()
    rows[4][5] = "-3"  # negative volume at line 6
    rows[2][2] = "50.0"  # high below low at line 4: earlier, so reported
    f = write_csv(tmp_path / "two.csv", rows)
    assert_error(error_for(f), f, 4, "high_below_low")


def test_error_in_second_file_names_that_file(tmp_path):
    jan = write_csv(tmp_path / "jan.csv", good_rows(3))
    rows = good_rows(6)[3:]
    rows[1][5] = "-1"
    feb = write_csv(tmp_path / "feb.csv", rows)
    with pytest.raises(BarValidationError) as e:
        load_bars([jan, feb], "1h")
    assert (e.value.file, e.value.row, e.value.rule) == (str(feb), 3, "negative_volume")


def test_validate_frame_without_source_rows():
    ts = pd.date_range("2024-01-01 01:00", periods=5, freq="h", tz="UTC")
    df = pd.DataFrame(
        {"timestamp": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": np.arange(5.0)}
    )
    assert validate_bars(df, timeframe="1h", file="frame").n_rows == 5
    df.loc[3, "close"] = 2.5
    with pytest.raises(BarValidationError) as e:
        validate_bars(df, timeframe="1h", file="frame")
    assert (e.value.file, e.value.row, e.value.rule) == ("frame", 4, "close_outside_range")
    with pytest.raises(BarValidationError) as e:
        validate_bars(df.drop(columns="volume"), timeframe="1h", file="frame")
    assert (e.value.row, e.value.rule) == (None, "missing_column")
    assert str(e.value).startswith("frame: rule missing_column: ")
