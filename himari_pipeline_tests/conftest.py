"""Suite-wide settings and fixtures shared by every test module."""

import os
from pathlib import Path

import pytest

# The every-row truncation check recomputes each row from its own prefix (a few ms per row and asset).
# Many tests materialize multi-year datasets only to test something else, so the suite checks every row
# of the newest 300 rows (plus the whole-prefix checks); the tests of the check itself set "all".
os.environ.setdefault("HIMARI_TRUNCATION_ROWS", "300")

# Test-only experiments (`smoke*`) are partitions of the training assets only when this is set, and it
# must be set before the definitions are first imported (any test module may be collected first).
os.environ.setdefault("HIMARI_TEST_EXPERIMENTS", "1")


@pytest.fixture
def lake_env(tmp_path, monkeypatch) -> Path:
    """This process on its own lake (``tmp_path/lake``) and Dagster home (``tmp_path/dagster_home``)."""
    monkeypatch.setenv("HIMARI_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return tmp_path


# The longest modules first (measured with `--durations`, slowest first), so that `-n 2 --dist loadfile`
# starts them while the many short modules fill the other worker, instead of one of them running alone
# at the end. Other modules keep their collection order after these.
LONGEST_FIRST = (
    "test_e2e_controls.py",
    "test_ingest_real_data.py",
    "test_concurrency.py",
    "test_strategy_evaluate.py",
    "test_daemon.py",
    "test_cli_run.py",
    "test_scaleout.py",
    "test_ui_browser.py",
    "test_faults.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
