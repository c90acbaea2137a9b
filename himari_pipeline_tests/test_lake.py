"""The versioned lake: atomic partition writes, versions, time travel, identical bytes, files."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.storage.hashing import frame_hash
from himari_pipeline.storage.lake import Lake, LakeError


def _frame(n: int, shift: float = 0.0) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    x = np.arange(n, dtype=float) + shift
    x[1] = np.nan
    return pd.DataFrame(
        {"timestamp": ts, "x": x, "flag": np.arange(n) % 2 == 0, "k": np.arange(n, dtype="int8")}
    )


def test_versions_time_travel_and_identical_bytes(tmp_path):
    lake = Lake(tmp_path / "lake")
    v1 = lake.write_table(
        "features", "A_1h", _frame(10), inputs={"raw_ohlcv": "abc"}, code_version="c1", run_id="r1"
    )
    v2 = lake.write_table(
        "features", "A_1h", _frame(12, shift=1.0), inputs={"raw_ohlcv": "def"}, code_version="c1", run_id="r2"
    )
    other = lake.write_table("features", "B_1h", _frame(5), run_id="r3")
    assert v1.version != v2.version and v2.snapshot_id > v1.snapshot_id
    old = lake.read_table("features", "A_1h", v1.version[:12])
    assert frame_hash(old) == v1.version
    pd.testing.assert_frame_equal(old, _frame(10))
    assert frame_hash(lake.read_table("features", "A_1h")) == v2.version
    assert len(lake.read_table("features", "B_1h")) == 5
    hist = lake.versions("features", "A_1h")
    assert [v.run_id for v in hist] == ["r1", "r2"]
    assert hist[0].inputs == {"raw_ohlcv": "abc"} and hist[1].code_version == "c1"
    assert lake.partitions("features") == ["A_1h", "B_1h"]
    assert other.partition == "B_1h"


def test_identical_content_is_not_a_new_version(tmp_path):
    lake = Lake(tmp_path / "lake")
    v1 = lake.write_table("t", "A_1h", _frame(4), inputs={"x": "1"})
    v2 = lake.write_table("t", "A_1h", _frame(4), inputs={"x": "1"})
    assert v1 == v2 and len(lake.versions("t")) == 1


def test_failed_write_changes_nothing(tmp_path):
    lake = Lake(tmp_path / "lake")
    lake.write_table("t", "A_1h", _frame(4))
    bad = _frame(4).assign(x=["a", "b", "c", "d"])  # incompatible column type
    with pytest.raises(LakeError, match="column 'x'"):
        lake.write_table("t", "A_1h", bad)
    assert len(lake.versions("t")) == 1
    pd.testing.assert_frame_equal(lake.read_table("t", "A_1h"), _frame(4))


def test_file_versions_are_content_addressed(tmp_path):
    lake = Lake(tmp_path / "lake")
    src = tmp_path / "a.npz"
    src.write_bytes(b"first")
    v1 = lake.write_file("splits", "A_1h", src, inputs={"regimes": "x"})
    src.write_bytes(b"second")
    v2 = lake.write_file("splits", "A_1h", src)
    assert lake.file_path("splits", "A_1h", v1.version).read_bytes() == b"first"
    assert lake.file_path("splits", "A_1h").read_bytes() == b"second"
    assert v2.kind == "file" and not src.exists()


@pytest.mark.parametrize("name", ["../evil", "a'b", 'x"; DROP TABLE t; --', "a b", ""])
def test_names_are_validated_before_they_become_paths_or_sql(tmp_path, name):
    lake = Lake(tmp_path / "lake")
    with pytest.raises(ValueError):
        lake.write_table("t", name, _frame(2))
    with pytest.raises(ValueError):
        lake.write_table(name, "A_1h", _frame(2))


def _writer(root: str, part: str) -> None:
    Lake(root).write_table("t", part, _frame(50, shift=float(len(part))))


def test_two_processes_write_without_lock_errors(tmp_path):
    root = str(tmp_path / "lake")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(root, p)) for p in ("A_1h", "BB_1h", "CCC_1h")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert Lake(root).partitions("t") == ["A_1h", "BB_1h", "CCC_1h"]
