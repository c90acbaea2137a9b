"""Atomic writes: the target changes only when the write succeeds, and nothing temporary is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from himari_pipeline.storage.atomic import (
    atomic_copy,
    atomic_directory,
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    is_temp_name,
)


class Boom(Exception):
    pass


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_text_bytes_and_copy_write_the_target_and_nothing_else(tmp_path):
    assert atomic_write_text(tmp_path / "sub" / "a.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    assert atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    src = atomic_write_bytes(tmp_path / "big.bin", bytes(range(256)) * 10_000)
    assert atomic_copy(src, tmp_path / "copy.bin").read_bytes() == src.read_bytes()
    atomic_write_text(tmp_path / "b.bin", "replaced")
    assert (tmp_path / "b.bin").read_text() == "replaced"
    assert _names(tmp_path) == ["b.bin", "big.bin", "copy.bin", "sub"]


def test_a_failed_file_write_keeps_the_old_contents_and_leaves_no_temp_file(tmp_path):
    target = atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(Boom), atomic_open(target, "w", encoding="utf-8") as f:
        f.write("half")
        raise Boom
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["a.txt"]
    with pytest.raises(FileNotFoundError):
        atomic_copy(tmp_path / "missing", tmp_path / "a.txt")
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["a.txt"]


def test_directory_replaces_the_old_one_only_on_success(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as d:
        (d / "model").write_text("v1")
    assert (target / "model").read_text() == "v1"
    with atomic_directory(target) as d:
        (d / "model").write_text("v2")
    assert _names(target) == ["model"] and (target / "model").read_text() == "v2"
    with pytest.raises(Boom), atomic_directory(target) as d:
        (d / "model").write_text("v3")
        raise Boom
    assert (target / "model").read_text() == "v2"
    assert _names(tmp_path) == ["ckpt"]


def test_temp_names_are_recognised_and_ordinary_names_are_not(tmp_path):
    seen = []
    with atomic_open(tmp_path / "a.parquet"):
        seen += _names(tmp_path)
    with atomic_directory(tmp_path / "run") as d:
        seen.append(d.name)
    assert len(seen) == 2 and all(is_temp_name(n) for n in seen), seen
    assert not any(is_temp_name(n) for n in ["a.parquet", ".gitignore", "x.tmp", "run", ".settings.json"])
