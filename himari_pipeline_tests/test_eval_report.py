"""The validation report end to end on a tiny trained run: sections, contract tables, HTML, verdict."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.datasets.splits import DatasetSplits
from himari_pipeline.evaluation.html import render_html, text_to_html
from himari_pipeline.evaluation.report import (
    METRICS_COLUMNS,
    SUMMARY_COLUMNS,
    Plot,
    Replay,
    Section,
    _load,
    build_validation_report,
    replay_greedy,
    resolve_checkpoints,
    store_report,
)
from himari_pipeline.evaluation.report.segments import run_segment
from himari_pipeline.evaluation.significance import probabilistic_sharpe_ratio
from himari_pipeline.rl.env import MarketArrays
from himari_pipeline.rl.experiments import load_experiment
from himari_pipeline.rl.replay import replay_in_env, replay_policies
from himari_pipeline.rl.training import build_synthetic_splits, evaluate_checkpoint, train_experiment
from himari_pipeline.storage.atomic import atomic_write_text
from himari_pipeline.storage.lake import Lake
from himari_pipeline.trading.rules import TradingRules

BPY = 8760.0
TRUNC_OK = {"features": True, "features_denoised": True, "regimes": True}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    splits = build_synthetic_splits("planted", seed=3, start="2024-07-01", end="2025-12-31", context=16)
    exp = load_experiment("smoke")
    out = tmp_path_factory.mktemp("run")
    train_experiment(exp, splits, out, progress=False, max_iterations=3)
    return exp, splits, out


@pytest.fixture(scope="module")
def report(run):
    exp, splits, out = run
    return build_validation_report(
        out, splits, exp, bars_per_year=BPY, truncation_results=TRUNC_OK, n_perm=300, n_shuffles=3
    )


def test_replay_matches_the_env_stepped_bar_by_bar(run):
    """The batched numpy replay makes the env's decisions and earns its returns, greedy and sampled,
    with and without a minimum hold; the trainer's validation and `evaluate_checkpoint` are that replay."""
    _, splits, out = run
    best = json.loads((out / "best.json").read_text())["checkpoint"]
    s = splits["val"]
    series = (s.features_denoised, s.regime_ids, s.returns)
    market = MarketArrays.from_split(s, features_key="features_denoised")
    for name in ("step_000000128", best):
        ck = _load(out / name)
        for env_cfg in (ck.env_cfg, dataclasses.replace(ck.env_cfg, min_hold=5)):
            for temperature in (None, 0.5):
                want = replay_in_env(ck.policy, market, env_cfg, temperature, seed=11)
                got = replay_policies([ck.policy], [series], env_cfg, [temperature], [11], True)[0]
                np.testing.assert_array_equal(got.t, want.t)
                np.testing.assert_array_equal(got.action, want.action)
                np.testing.assert_allclose(got.net_return, want.net_return, rtol=0, atol=1e-15)
                np.testing.assert_allclose(got.entropy, want.entropy, rtol=0, atol=1e-5)
        ev = evaluate_checkpoint(out / name, s)["greedy"]
        rp = replay_greedy([ck.policy], [series], ck.env_cfg)[0]
        np.testing.assert_array_equal(rp.action, ev["action"])
        np.testing.assert_array_equal(rp.net_return, ev["net_return"])


def _held_runs(actions: np.ndarray) -> list[int]:
    """Lengths of the closed runs of a non-flat action."""
    change = np.flatnonzero(np.diff(actions) != 0) + 1
    runs = np.diff(np.r_[0, change, len(actions)])
    return [int(r) for r, a in zip(runs[:-1], actions[np.r_[0, change]][:-1], strict=True) if a != 0]


def test_replay_applies_min_hold(run):
    """A 5-bar minimum hold: positions the free policy holds 1-4 bars now last at least 5."""
    _, splits, out = run
    ck = _load(out / "step_000000128")
    s = splits["val"]
    series = [(s.features_denoised, s.regime_ids, s.returns)]
    free = replay_greedy([ck.policy], series, ck.env_cfg)[0]
    held = replay_greedy([ck.policy], series, dataclasses.replace(ck.env_cfg, min_hold=5))[0]
    assert min(_held_runs(free.action)) < 5
    assert len(_held_runs(held.action)) > 0 and min(_held_runs(held.action)) >= 5


def test_report_end_to_end(run, report, tmp_path):
    exp, splits, out = run
    best = json.loads((out / "best.json").read_text())
    titles = [s.title for s in report.sections]
    for i in range(1, 8):
        assert any(t.startswith(f"{i}.") for t in titles), titles
    # selection is the best pointer (validation), and its replayed validation Sharpe is the recorded one
    assert report.checkpoint_step == best["step"]
    assert math.isclose(report.evidence.validation_sharpe, best["value"], rel_tol=1e-9)
    assert report.n_checkpoints == 3

    tables = report.tables()
    vm, vs = tables["validation_metrics"], tables["validation_summary"]
    assert tuple(vm.columns) == METRICS_COLUMNS and tuple(vs.columns) == SUMMARY_COLUMNS
    assert len(vs) == 1 and vs["verdict"].iloc[0] in ("PASS", "FAIL")
    assert vs["checkpoint_step"].dtype == np.int64 and vs["leak_flags"].dtype == np.int64
    assert set(vm["subject"]) == {"policy", "buy_and_hold", "flat", "ma_crossover", "random_same_turnover"}
    assert {"validation", "test", "live"} <= set(vm["section"])
    assert set(vm["regime"]) <= {"ALL", "LOW_VOL", "TRENDING", "HIGH_VOL", "CRISIS"}
    assert not vm.duplicated(["section", "subject", "regime", "metric"]).any()

    # buy-and-hold on test by hand: the entry cost comes off the first step's return, then ride the rest
    t0 = _load(report.checkpoint_path).env_cfg.context - 1  # the training env's context, not the yaml's
    r = splits["test"].returns[t0 + 1 :]
    hand = (1 + r[0] - exp.env_config().transaction_cost) * np.prod(1 + r[1:]) - 1
    got = vm.query("section=='test' & subject=='buy_and_hold' & regime=='ALL' & metric=='cumulative_return'")
    assert math.isclose(got["value"].iloc[0], hand, rel_tol=1e-9)
    # PSR from the independent env evaluator's validation returns
    ev = evaluate_checkpoint(report.checkpoint_path, splits["val"])["greedy"]
    assert math.isclose(vs["psr"].iloc[0], probabilistic_sharpe_ratio(ev["net_return"]), rel_tol=1e-9)
    assert 0 <= vs["pbo"].iloc[0] <= 1 and 0 < vs["perm_pvalue"].iloc[0] <= 1
    assert report.verdict.reasons or report.verdict.passed
    assert report.verdict.reasons  # the 3-iteration smoke policy cannot pass the gates
    assert vs["reasons"].iloc[0] == "; ".join(report.verdict.reasons)

    html = report.to_html()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") >= 4
    assert "Verdict: FAIL" in html and 'class="verdict fail"' in html
    path = report.write_html(tmp_path / "r" / "report.html")
    assert path.read_text() == html and [p.name for p in path.parent.iterdir()] == ["report.html"]
    assert report.tables()["validation_summary"]["report_path"].iloc[0] == str(path)
    md = report.to_markdown()
    assert md.startswith("# Validation report") and "| buy_and_hold" in md


def _leaky(splits: DatasetSplits, column: int) -> DatasetSplits:
    out = {}
    for name, s in splits.splits.items():
        raw = s.features_raw.copy()
        raw[:-1, column] = s.returns[1:]  # r[t+1] planted into feature `column` at t
        raw[-1, column] = 0.0
        out[name] = dataclasses.replace(s, features_raw=raw)
    return DatasetSplits(out, splits.metadata)


def test_planted_leak_fails_the_verdict(run, report):
    exp, splits, out = run
    name = f"raw_{splits.feature_names[5]}"
    assert report.evidence.leak_suspicious_features == {}  # the honest data has no leak
    leaky = build_validation_report(
        out, _leaky(splits, 5), exp, bars_per_year=BPY, truncation_results=TRUNC_OK, n_perm=100, n_shuffles=2
    )
    assert leaky.verdict.passed is False and leaky.verdict.checks["leakage"] is False
    assert any("leakage" in r and name in r for r in leaky.verdict.reasons)
    assert name in leaky.section("2.").markdown
    assert leaky.evidence.leak_suspicious_features[name] > 0.99
    assert leaky.tables()["validation_summary"]["leak_flags"].iloc[0] == 1
    # the checkpoint was trained on other data: the report says so
    assert any("split version" in w for w in leaky.verdict.warnings)


def test_resolve_checkpoints_from_a_list_selects_on_validation(run):
    _, _, out = run
    dirs = sorted(out.glob("step_*"))
    selected, evaluated, n = resolve_checkpoints(dirs)
    metas = {p: json.loads((p / "checkpoint.json").read_text()) for p in evaluated}
    best = max(evaluated, key=lambda p: metas[p]["metrics"]["greedy_sharpe"])
    assert selected == best and n == 3 and len(evaluated) == 3  # the end-of-run save has no metrics
    assert selected == resolve_checkpoints(out)[0]


def test_html_helpers(tmp_path):
    out = text_to_html("a <b> & **bold** `x`\n\n- one\n- two")
    assert "&lt;b&gt; &amp; <b>bold</b> <code>x</code>" in out and "<ul><li>one</li><li>two</li></ul>" in out
    sec = Section("S", ["text", pd.DataFrame({"x": [1.5]}), Plot("cap", b"\x89PNG")])
    page = render_html("T", True, [], ["careful"], [sec])
    assert 'class="verdict pass"' in page and "data:image/png;base64,iVBORw==" in page and "careful" in page
    p = atomic_write_text(tmp_path / "x.html", page)
    assert p.read_text() == page and len(list(tmp_path.iterdir())) == 1


def test_store_report_writes_the_page_its_markdown_and_tables(report, tmp_path):
    lake = Lake(tmp_path)
    stored = store_report(
        lake,
        report,
        asset="validation_report",
        partition="smoke.SYNTH",
        inputs={"splits": "abc"},
        tables={"validation_metrics": "validation_metrics", "validation_summary": "validation_summary"},
        code_version="v1",
        run_id="r1",
        markdown=True,
    )
    page = stored.html_path(lake)
    assert page.is_relative_to(lake.root) and "Verdict: FAIL" in page.read_text()
    assert (lake.root / stored.markdown.path).read_text().startswith("# Validation report")
    assert stored.markdown.inputs == {"validation_report": stored.html.version}
    summary = lake.read_table("validation_summary", "smoke.SYNTH")
    assert summary["report_path"].iloc[0] == stored.html.path  # the summary points at the stored page
    assert stored.tables["validation_summary"].inputs == {"validation_report": stored.html.version}
    assert len(lake.read_table("validation_metrics", "smoke.SYNTH")) == len(report.metrics)
    plain = store_report(
        lake,
        report,
        asset="validation_report",
        partition="other.SYNTH",
        inputs={},
        tables={},
        code_version="v1",
    )
    assert plain.markdown is None and plain.tables == {}


def test_segment_counts_positions_held_across_missing_bars(run):
    """A long-only replay over test bars with missing bars before three of them: three steps held
    across a gap, their P&L the sum of those steps' net returns; a flat replay holds none."""
    _, splits, _ = run
    gaps = np.zeros(splits["test"].n_samples, dtype=np.int64)
    gaps[[20, 21, 40]] = [3, 1, 2]
    split = dataclasses.replace(splits["test"], gap_before=gaps)
    t0, n = 7, split.n_samples
    t = np.arange(t0, n - 1)
    long_only = Replay(t, np.ones(len(t), dtype=np.int64), np.ones(len(t)), np.zeros(len(t)), False)
    seg = run_segment("test", split, long_only, TradingRules(carry_cost=1e-4), BPY, seed=0)
    steps = np.array([20, 21, 40]) - 1 - t0  # the step into bar i starts at bar i-1
    assert seg.gap_holds.decisions == 3
    assert seg.gap_holds.pnl == pytest.approx(seg.policy.net_returns[steps].sum(), rel=1e-12)
    r = np.asarray(split.returns)[[20, 21, 40]]
    assert seg.gap_holds.pnl == pytest.approx((r - 1e-4 * (1 + gaps[[20, 21, 40]])).sum(), rel=1e-9)
    assert "3 decision(s) held a position across missing bars" in seg.gap_holds.sentence
    flat = Replay(t, np.zeros(len(t), dtype=np.int64), np.zeros(len(t)), np.zeros(len(t)), False)
    assert run_segment("test", split, flat, TradingRules(), BPY, seed=0).gap_holds.decisions == 0


def test_report_states_the_gap_holds_of_each_segment(report):
    for name in ("validation", "test", "live"):
        assert report.evidence.gap_holds[name].decisions == 0  # the synthetic bars miss none
    text = report.section("1.").markdown + report.section("5.").markdown
    assert text.count("held a position across missing bars") == 3
