"""End to end on the synthetic controls: the report finds the planted signal and not the null one.

Runs the main command's path (`himari run`) for the `default` experiment on the planted market and
`default_null` on the null market: about 4 minutes on 2 cores, the longest test of the suite
(`make test-e2e` runs it alone). Both trainings are seeded and deterministic on CPU.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from himari_pipeline.cli import app
from himari_pipeline.defs.partitions import lake_partition
from himari_pipeline.storage.lake import Lake

# measured: 407 s under load from other work (about 4 minutes idle); the fixture counts toward the first test
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def summaries(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    mp.setenv("HIMARI_LAKE_ROOT", str(tmp / "lake"))
    mp.setenv("DAGSTER_HOME", str(tmp / "dagster_home"))
    try:
        out = CliRunner().invoke(app, ["run", "-e", "default", "-e", "default_null"])
    finally:
        mp.undo()
    assert out.exit_code == 0, out.output[-3000:]
    lake = Lake(tmp / "lake")
    markets = {"default": "SYNTH-PLANTED_1h", "default_null": "SYNTH-NULL_1h"}  # each YAML's default dataset
    return {
        e: lake.read_table("validation_summary", lake_partition(e, d)).iloc[-1] for e, d in markets.items()
    }


def test_planted_signal_is_significant(summaries):
    planted = summaries["default"]
    assert planted["perm_pvalue"] < 0.05, planted.to_dict()
    assert planted["val_sharpe"] > 1.0 and planted["psr"] > 0.95


def test_null_market_shows_no_significant_edge(summaries):
    null = summaries["default_null"]
    assert null["perm_pvalue"] > 0.05, null.to_dict()
    assert null["dsr"] < 0.95
    assert null["verdict"] == "FAIL"


def test_planted_beats_null_on_every_significance_measure(summaries):
    planted, null = summaries["default"], summaries["default_null"]
    assert planted["perm_pvalue"] < null["perm_pvalue"]
    assert planted["dsr"] > null["dsr"] and planted["psr"] > null["psr"]
