"""The versioned lake: atomic partition writes, versions, time travel, identical bytes, files."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

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


def test_expire_takes_a_timestamp_never_sql(tmp_path):
    lake = Lake(tmp_path / "lake")
    v1 = lake.write_table("t", "A_1h", _frame(4))
    v2 = lake.write_table("t", "A_1h", _frame(5))
    crafted = [
        "now()); DROP TABLE lake.himari_versions; --",
        "now()) ; CALL ducklake_expire_snapshots('lake', older_than => now()",
        "2024-01-01'; DROP TABLE lake.t; --",
    ]
    for bad in crafted:
        with pytest.raises(LakeError, match="ISO-8601"):
            lake.expire(bad)
    assert [v.version for v in lake.versions("t")] == [v1.version, v2.version]
    assert frame_hash(lake.read_table("t", "A_1h", v1.version)) == v1.version  # nothing expired
    assert lake.expire("2000-01-01T00:00:00") == 0  # a cutoff before every snapshot removes none
    assert lake.expire() > 0  # now: the old snapshots go, the latest version still reads
    assert frame_hash(lake.read_table("t", "A_1h")) == v2.version
    with pytest.raises(LakeError, match="removed by retention"):
        lake.read_table("t", "A_1h", v1.version)


def test_identifiers_are_quoted_not_pasted(tmp_path):
    lake = Lake(tmp_path / "lake")
    evil = {'x"; DROP TABLE lake.himari_versions; --': [1.0, 2.0], 'a"b': [3.0, 4.0], "plain": [5.0, 6.0]}
    v = lake.write_table("t", "A_1h", pd.DataFrame(evil))
    back = lake.read_table("t", "A_1h")
    pd.testing.assert_frame_equal(back, pd.DataFrame(evil))
    assert frame_hash(back) == v.version and len(lake.versions()) == 1


def _non_canonical_nans() -> np.ndarray:
    x = np.array([1.0, np.nan, 3.0, np.nan, 5.0])
    x[1] = -np.nan  # sign bit set
    x[3:4].view(np.uint64)[:] = 0x7FF8_0000_0000_0001  # a quiet NaN with a payload
    return x


def test_nan_is_canonical_in_content_hashes(tmp_path):
    x = _non_canonical_nans()
    assert np.signbit(x[1]) and x[3:4].view(np.uint64)[0] != np.array([np.nan]).view(np.uint64)[0]
    plain = np.where(np.isnan(x), np.nan, x)
    assert frame_hash(pd.DataFrame({"x": x})) == frame_hash(pd.DataFrame({"x": plain}))
    # values still matter: a real change is a new hash
    assert frame_hash(pd.DataFrame({"x": x})) != frame_hash(pd.DataFrame({"x": np.r_[plain[:4], 6.0]}))
    lake = Lake(tmp_path / "lake")
    df = pd.DataFrame({"x": x, "y": x.astype("float32"), "k": np.arange(5)})
    v = lake.write_table("t", "A_1h", df)
    back = lake.read_table("t", "A_1h")
    assert frame_hash(back) == v.version  # a version holding -NaN reads back with the identical hash
    assert lake.write_table("t", "A_1h", back) == v  # and is not a new version when written again


def test_a_moved_or_copied_lake_opens_at_its_new_place(tmp_path):
    import shutil

    import duckdb

    first = tmp_path / "first" / "lake"
    lake = Lake(first)
    versions = [lake.write_table("t", "A_1h", _frame(n)) for n in (4, 6, 8)]
    src = tmp_path / "a.npz"
    src.write_bytes(b"arrays")
    fv = lake.write_file("splits", "A_1h", src, row_count=3)
    copied = tmp_path / "copy" / "lake"
    shutil.copytree(first, copied)
    moved = tmp_path / "moved" / "lake"
    shutil.move(first, moved)  # the original place is gone: every read must come from the new one
    for root in (moved, copied):
        here = Lake(root)
        for v in versions:
            assert frame_hash(here.read_table("t", "A_1h", v.version)) == v.version
        assert here.file_path("splits", "A_1h") == root.resolve() / fv.path
        assert here.file_path("splits", "A_1h").read_bytes() == b"arrays"
        new = here.write_table("t", "A_1h", _frame(9, shift=len(str(root))))
        assert frame_hash(here.read_table("t", "A_1h")) == new.version
        assert here.get_version("splits", "A_1h").row_count == 3
    # the copy and the moved lake are independent now
    assert Lake(moved).latest("t", "A_1h").version != Lake(copied).latest("t", "A_1h").version
    # the catalog still records where the lake was created: opening it is what rebases the files
    con = duckdb.connect(str(moved / "catalog.ducklake"), read_only=True)
    stored = con.execute("SELECT value FROM ducklake_metadata WHERE key = 'data_path'").fetchone()[0]
    con.close()
    assert str(first) in stored and not Path(stored).exists()


def test_a_lake_folder_holding_only_its_readme_is_a_fresh_lake(tmp_path):
    root = tmp_path / "data_lake"
    root.mkdir()
    (root / "README.md").write_text("what lands here\n")
    lake = Lake(root)
    v = lake.write_table("t", "A_1h", _frame(3))
    assert lake.versions() == [lake.get_version("t", "A_1h")] and v.row_count == 3
    assert (root / "README.md").read_text() == "what lands here\n"
    src = tmp_path / "report.html"
    src.write_text("<html></html>")
    assert lake.write_file("report", "A_1h", src).row_count is None  # a document has no rows


def test_versions_command_shows_real_row_counts(tmp_path):
    import os
    import subprocess
    import sys

    lake = Lake(tmp_path / "lake")
    lake.write_table("t", "A_1h", _frame(7))
    for name, rows in (("report.html", None), ("splits.npz", 42)):
        src = tmp_path / name
        src.write_bytes(name.encode())
        lake.write_file(name.split(".")[0], "A_1h", src, row_count=rows)
    himari = Path(sys.executable).parent / "himari"
    out = subprocess.run(
        [str(himari), "versions"],
        env={**os.environ, "HIMARI_LAKE_ROOT": str(lake.root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[4] for line in out.stdout.splitlines()[1:]}
    assert rows == {"t": "7", "report": "-", "splits": "42"}  # a document has no rows, not "1"
