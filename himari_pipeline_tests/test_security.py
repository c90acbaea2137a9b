"""Security: no pickle anywhere, names validated before they become paths or SQL, loopback UI."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import himari_pipeline
from himari_pipeline import cli
from himari_pipeline.market.bars import dataset_key, parse_dataset_key
from himari_pipeline.rl.experiments import load_experiment

PACKAGE = Path(himari_pipeline.__file__).parent
FORBIDDEN = [
    (
        re.compile(r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|joblib|shelve)\b", re.M),
        "pickle-family import",
    ),
    (re.compile(r"\btorch\.save\("), "torch.save (pickle)"),
    (re.compile(r"\bread_pickle\(|\.to_pickle\("), "pandas pickle"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load with allow_pickle=True"),
]


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("pattern,what", FORBIDDEN, ids=[w for _, w in FORBIDDEN])
def test_no_pickle_in_the_package(pattern, what):
    offenders = [f"{p.relative_to(PACKAGE)}" for p in _sources() if pattern.search(p.read_text())]
    assert not offenders, f"{what} in {offenders}"


def test_every_np_load_and_torch_load_refuses_pickles():
    for path in _sources():
        text = path.read_text()
        for m in re.finditer(r"\bnp\.load\(([^)]*)\)", text):
            assert "allow_pickle=False" in m.group(1), f"{path.name}: {m.group(0)}"
        for m in re.finditer(r"\btorch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in m.group(1), f"{path.name}: {m.group(0)}"


BAD_NAMES = ["../etc", "..", "a/b", "a'b", 'a"b', "x; DROP TABLE t", "a b", "", "-rf", "a\\b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_dataset_and_experiment_names_are_validated(name):
    with pytest.raises(ValueError):
        dataset_key(name, "1h")
    with pytest.raises(ValueError):
        parse_dataset_key(f"{name}_1h")
    with pytest.raises((ValueError, FileNotFoundError)):
        load_experiment(name)


def test_unknown_timeframe_is_rejected():
    with pytest.raises(ValueError, match="unknown timeframe"):
        dataset_key("BTCUSDT", "1h; rm -rf /")


def test_webserver_binds_loopback_by_default():
    host = inspect.signature(cli.ui).parameters["host"].default
    assert getattr(host, "default", host) == "127.0.0.1"
    workspace = (PACKAGE.parent / "workspace.yaml").read_text()
    assert "0.0.0.0" not in workspace
