"""A seed population in the report and the gate: distribution, the population rule, the report section."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from himari_pipeline.evaluation.population import (
    POPULATION_RULE,
    SEED_COLUMNS,
    SeedResult,
    build_population_report,
    interquartile_mean,
    judge_population,
    seed_run_dirs,
    seed_table,
    sharpe_distribution,
)
from himari_pipeline.rl.experiments import Experiment, load_experiment
from himari_pipeline.rl.training import build_synthetic_splits, train_experiment


def _row(seed: int, passed: bool, ruined: bool = False, test: float = 1.0) -> SeedResult:
    return SeedResult(seed, 100 * seed, 1.0, test, 0.5, 0.9, 0.95, passed, ruined, () if passed else ("dsr",))


# --------------------------------------------------------------------------- distribution
def test_interquartile_mean_is_the_mean_of_the_middle_half() -> None:
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert interquartile_mean([0, 0, 10, 10, 1000]) == pytest.approx((0.75 * 0 + 10 + 0.75 * 10) / 2.5)
    assert interquartile_mean([-100, 1, 2, 3, 100]) == pytest.approx(2.0)  # the tails do not move it
    assert np.isnan(interquartile_mean([]))


def test_sharpe_distribution_summarises_the_seeds() -> None:
    d = sharpe_distribution([0.1, 2.7, 1.0, 1.2, float("nan"), 0.8])
    assert d.n == 5 and d.median == pytest.approx(1.0) and (d.min, d.max) == (0.1, 2.7)
    assert d.ci_low <= d.median <= d.ci_high and d.min <= d.ci_low and d.ci_high <= d.max
    assert list(d.table()["statistic"])[:3] == ["seeds", "median", "IQM"]
    assert sharpe_distribution([]).n == 0


# --------------------------------------------------------------------------- the rule
def test_population_passes_when_the_median_seed_passes_and_none_is_ruined() -> None:
    v = judge_population([_row(1, True), _row(2, True), _row(3, False), _row(4, True), _row(5, False)])
    assert v.passed and v.n_passed == 3 and v.rule == POPULATION_RULE and not v.reasons


def test_population_fails_with_a_lucky_seed_or_a_ruined_one() -> None:
    lucky = judge_population([_row(1, True), _row(2, False), _row(3, False), _row(4, False), _row(5, False)])
    assert not lucky.passed and "only 1 of 5 seeds" in lucky.reasons[0]
    ruined = judge_population([_row(1, True), _row(2, True), _row(3, True, ruined=True)])
    assert not ruined.passed and "seed(s) 3 ruined" in ruined.reasons[0]
    assert not judge_population([]).passed


def test_seed_table_has_the_contract_columns() -> None:
    table = seed_table([_row(1, True), _row(2, False)])
    assert tuple(table.columns) == SEED_COLUMNS
    assert list(table["verdict"]) == ["PASS", "FAIL"] and table["reasons"].iloc[1] == "dsr"


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def population(tmp_path_factory):
    torch.set_num_threads(1)
    splits = build_synthetic_splits("planted", seed=3, start="2024-01-01", end="2025-12-31", context=16)
    d = load_experiment("smoke").to_dict()
    d["ppo"]["seeds"] = [3, 4]
    d["selection"]["eval_every"] = 256
    exp = Experiment.from_dict(d)
    out = tmp_path_factory.mktemp("population")
    train_experiment(exp, splits, out, progress=False, max_iterations=4, split_version="v1")
    return exp, splits, out


def test_population_report_judges_every_seed_and_the_whole(population) -> None:
    exp, splits, out = population
    assert sorted(seed_run_dirs(out)) == [3, 4]
    rep = build_population_report(out, splits, exp, bars_per_year=8760.0, split_version="v1", n_perm=50)
    assert [r.seed for r in rep.rows] == [3, 4]
    assert rep.n_trials == 4  # two validations of each of two seeds
    assert all(r.n_checkpoints == 4 for r in rep.reports.values())  # the DSR counts all of them
    assert rep.verdict.passed == judge_population(rep.rows).passed
    merged = rep.as_validation_report()
    assert merged.verdict.passed == rep.verdict.passed
    assert merged.sections[-1].title == "Seed population" and merged.sections[-1].plots
    assert "population_rule" in merged.verdict.checks
    assert "Rule:" in merged.sections[-1].markdown
    with pytest.raises(FileNotFoundError, match="seed_"):
        build_population_report(out / "seed_3", splits, exp, bars_per_year=8760.0)
