"""The exit optimizer judged end to end in the domain code: a smart exit rule is found significant on
the planted market and not on the null one; a rule or an observation that sees the next bar fails the
gate; PPO keeps its masks in rollout and update; a trained policy is selected, judged and reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from himari_pipeline.evaluation.verdict import judge
from himari_pipeline.exits.configs import EntryRule, ExitConfig
from himari_pipeline.exits.data import synthetic_data
from himari_pipeline.exits.env import EXIT, HOLD, exit_observation
from himari_pipeline.exits.experiments import ExitExperiment, load_exit_experiment
from himari_pipeline.exits.training import rule_subject, train_exit_experiment
from himari_pipeline.exits.verdict import (
    BASELINES,
    ExitSubject,
    evaluate_exits,
    observation_leak_correlations,
    observation_truncation_invariant,
)

CFG = ExitConfig(stop_loss=0.03, take_profit=0.06, max_hold=96, min_exit_bar=3)


@pytest.fixture(scope="module")
def planted():
    data = synthetic_data("planted", 7)
    return data, EntryRule().entries(data.bars)


@pytest.mark.timeout(120)
def test_a_smart_exit_rule_is_significant_on_the_planted_market_and_not_on_the_null(planted):
    """The trend-reversal rule beats random exits of its own lengths on the planted market's trends
    (measured p 0.005 on seed 7) and passes; on the null market the same rule fails (p 0.58)."""
    data, entries = planted
    good = evaluate_exits(data, entries, CFG, rule_subject(data))
    assert good.verdict.passed, good.verdict.reasons
    assert good.evidence["permutation_p"] <= 0.05 and good.evidence["dsr"] >= 0.95
    assert set(BASELINES) <= set(good.table.loc["test"].index)
    test = good.table.loc["test"]
    assert test.loc["trend_exit", "mean_return"] > test.loc["random_exit", "mean_return"]
    assert good.evidence["truncation_invariant"] is True
    null = synthetic_data("null", 7)
    bad = evaluate_exits(null, EntryRule().entries(null.bars), CFG, rule_subject(null))
    assert not bad.verdict.passed
    assert bad.evidence["permutation_p"] > 0.05
    assert any("permutation" in r for r in bad.verdict.reasons)


def _peeking_rule(bars):
    """EXIT when the NEXT bar moves against the trade: log 002's v3 look-ahead as a rule."""
    c = torch.as_tensor(bars["close"].to_numpy())

    def policy(env):
        t = env.e + env.k
        return torch.where(env.side * (c[(t + 1).clamp(max=len(c) - 1)] - c[t]) < 0, EXIT, HOLD)

    return policy


@pytest.mark.timeout(120)
def test_a_rule_that_sees_the_next_bar_fails_the_gate(planted):
    data, entries = planted
    ev = evaluate_exits(data, entries, CFG, ExitSubject("peek", _peeking_rule), n_perm=19)
    assert ev.evidence["truncation_invariant"] is False
    assert not ev.verdict.passed
    assert any("truncation invariance failed" in r for r in ev.verdict.reasons)


def _leaky_observation(close, t, side, entry, k, remaining, stop, take, cfg, features=None):
    """The env's observation with the next bar's return in place of the current one (the v3 bug)."""
    obs = exit_observation(close, t, side, entry, k, remaining, stop, take, cfg, features)
    nxt = (t + 1).clamp(max=len(close) - 1)
    obs[:, 0] = (side * torch.log(close[nxt] / close[t])).float()
    return obs


def test_an_observation_that_sees_the_next_bar_is_caught_both_ways(planted):
    data, entries = planted
    test = data.segment_entries(entries, CFG.max_hold)["test"]
    market = data.market(test)
    close = torch.as_tensor(data.bars["close"].to_numpy())
    honest = observation_leak_correlations(close, market, CFG)
    leaky = observation_leak_correlations(close, market, CFG, observe=_leaky_observation)
    assert max(abs(c["pearson"]) for c in honest.values()) < 0.1
    assert leaky["ret_lag0"]["pearson"] > 0.9
    assert observation_truncation_invariant(close, market, CFG)
    assert not observation_truncation_invariant(close, market, CFG, observe=_leaky_observation)
    verdict = judge({"leak_correlations": leaky})
    assert any("leakage" in r and "ret_lag0" in r for r in verdict.reasons)
    assert not any("leakage" in r for r in judge({"leak_correlations": honest}).reasons)


@pytest.mark.timeout(120)
def test_ppo_masks_hold_in_rollout_and_update(planted):
    """Masks are applied at the distribution level in both phases: the env never has to block an
    action, the rollout's masks really forbid actions, and the updated policy gives them 0."""
    from himari_pipeline.exits.policy import ExitPolicy, ExitPolicyConfig
    from himari_pipeline.exits.ppo import ExitPPOTrainer
    from himari_pipeline.rl.ppo_math import gae

    data, entries = planted
    exp = load_exit_experiment("smoke_exit")
    segs = data.segment_entries(entries, CFG.max_hold)
    torch.manual_seed(0)
    trainer = ExitPPOTrainer(ExitPolicy(ExitPolicyConfig(n_obs=CFG.n_obs)), data.market(segs["train"]), CFG,
                             exp.ppo_config())  # fmt: skip
    r = trainer.collect_rollout()
    assert r.blocked == 0 and trainer.env.blocked_total == 0
    assert (~r.masks).any(dim=-1).float().mean() > 0.05  # EXIT/PARTIAL/TRAIL_BE were really forbidden
    r.advantages, r.returns = gae(r.rewards, r.values, r.dones, r.next_value, r.next_done, 0.99, 0.95)
    stats = trainer.update(r, 0.05)
    assert stats["masked_prob"] == 0.0
    with torch.no_grad():
        logits, _ = trainer.policy(r.obs.reshape(-1, CFG.n_obs), r.masks.reshape(-1, 5))
        probs = torch.softmax(logits, -1)
    assert float(probs[~r.masks.reshape(-1, 5)].max()) == 0.0
    # without the masks the same policy proposes blocked actions: the env replaces and counts them
    env = trainer.env
    before = env.blocked_total
    for _ in range(8):
        with torch.no_grad():
            logits, _ = trainer.policy(env.observe())
        env.step(torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1))
    assert env.blocked_total > before


@pytest.mark.timeout(180)
def test_a_trained_exit_policy_is_selected_judged_and_reported(planted, tmp_path):
    from himari_pipeline.exits.report import exit_html, exit_markdown, exit_tables

    data, entries = planted
    training, ev = train_exit_experiment(data, load_exit_experiment("smoke_exit"), tmp_path)
    assert (tmp_path / "best.json").is_file() and training.checkpoint.is_dir()
    assert len(training.eval_history) == 3  # 24,576 steps, one validation every 8,192
    assert ev.subject == "ppo_smoke_exit" and ev.extra["train_blocked_rate"] == 0.0
    assert ev.blocked_rate["test"] == 0.0
    # the trend scores are in the observation, causal (truncation) and not a leak (correlation)
    assert ev.evidence["truncation_invariant"] is True
    assert abs(ev.evidence["leak_correlations"]["trend_120"]["pearson"]) < 0.1
    assert len(ev.trials) == 3
    md = exit_markdown(ev)
    for section in ("Per-trade metrics", "Holding lengths", "Actions and masks", "Significance",
                    "Look-ahead checks", "Training"):  # fmt: skip
        assert f"## {section}" in md
    html = exit_html(ev)
    assert "Verdict: " in html and "http" not in html.lower().replace("http-equiv", "")
    metrics, summary = exit_tables(ev, "smoke_exit.X")
    assert len(metrics) == 4 * 5 and metrics["is_subject"].sum() == 4
    assert summary["verdict"].iloc[0] in ("PASS", "FAIL") and np.isfinite(summary["dsr"].iloc[0])


def test_exit_experiments_are_validated_naming_file_and_key(tmp_path):
    assert load_exit_experiment("exit_default").exit_config().max_hold == 96
    base = {"name": "x", "dataset": "SYNTH-PLANTED_1h"}
    with pytest.raises(ValueError, match="x.yaml: unknown key 'stop' in exit"):
        ExitExperiment.from_dict({**base, "exit": {"stop": 0.1}}, source="x.yaml")
    with pytest.raises(ValueError, match="unknown key .seeds. in ppo"):
        ExitExperiment.from_dict({**base, "ppo": {"seeds": [1, 2]}}, source="x.yaml")
    with pytest.raises(ValueError, match="max_hold"):
        ExitExperiment.from_dict({**base, "exit": {"min_exit_bar": 10, "max_hold": 5}}, source="x.yaml")
    a = ExitExperiment.from_dict({**base, "exit": {"max_hold": 48}})
    b = ExitExperiment.from_dict({**base, "exit": {"max_hold": 48, "stop_loss": 0.01}})  # the default
    assert a.config_hash() == b.config_hash()


def test_entries_from_a_users_file_or_positions_file_through_the_experiment(planted, tmp_path):
    """An experiment's entries may come from a user's `timestamp,side` file or a positions file; a
    bad row is refused with file, row and rule."""
    import pandas as pd

    from himari_pipeline.evaluation.strategy import PositionsError
    from himari_pipeline.exits.entries import EntriesError

    data, entries = planted
    when = pd.to_datetime(data.timestamps[entries["entry_bar"]], utc=True)
    sides = entries["side"].map({1: "long", -1: "short"})
    pd.DataFrame({"timestamp": when, "side": sides}).to_csv(tmp_path / "entries.csv", index=False)
    rule = ExitExperiment.from_dict(
        {"name": "x", "dataset": "D_1h", "entries": {"rule": "file", "path": str(tmp_path / "entries.csv")}}
    ).entry_rule()
    got = rule.entries(data.bars, data.timestamps)
    assert got["entry_bar"].tolist() == entries["entry_bar"].tolist()
    assert got["side"].tolist() == entries["side"].tolist()
    # a strategy's positions: long 10 bars from bar 500, then short from bar 510, flat after 520
    pos = np.zeros(len(data.timestamps))
    pos[500:510], pos[510:520] = 1.0, -0.5
    frame = pd.DataFrame({"timestamp": pd.to_datetime(data.timestamps, utc=True), "position": pos})
    frame.to_parquet(tmp_path / "positions.parquet")
    from_positions = EntryRule(rule="positions", path=str(tmp_path / "positions.parquet"))
    got = from_positions.entries(data.bars, data.timestamps)
    assert got["entry_bar"].tolist() == [500, 510] and got["side"].tolist() == [1, -1]
    # bad rows: a side that is not one, a timestamp that is a bar's open time
    bad = pd.DataFrame({"timestamp": when[:3], "side": ["long", "up", "short"]})
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(EntriesError, match=r"bad\.csv.*row 2.*bad_side"):
        EntryRule(rule="file", path=str(tmp_path / "bad.csv")).entries(data.bars, data.timestamps)
    off = frame.iloc[:5].assign(timestamp=frame["timestamp"].iloc[:5] - pd.Timedelta(minutes=30))
    off.to_csv(tmp_path / "off.csv", index=False)
    with pytest.raises(PositionsError, match=r"off\.csv.*row 1.*unknown_timestamp"):
        EntryRule(rule="positions", path=str(tmp_path / "off.csv")).entries(data.bars, data.timestamps)
    with pytest.raises(ValueError, match="path"):
        EntryRule(rule="file")


@pytest.mark.timeout(120)
def test_real_hourly_eurusd_bars_are_judged_with_reasons():
    """Real bars shipped in a package (`backtesting`'s EURUSD 1h, 5,000 bars 2017-2018, 24/5): the
    whole evaluation runs on them; the breakout entries lose there (29 test trades, measured -0.13 %
    a trade with the trend exit, -0.11 % holding with the stops) and the gate says FAIL with reasons,
    while the look-ahead checks pass."""
    import pandas as pd
    from backtesting.test import EURUSD

    from himari_pipeline.exits.data import data_from_bars
    from himari_pipeline.market.calendars import bars_per_year

    bars = EURUSD.rename(columns=str.lower).rename_axis("open_time").reset_index()
    bars["timestamp"] = pd.to_datetime(bars["open_time"], utc=True) + pd.Timedelta(hours=1)  # bar close
    data = data_from_bars("EURUSD_1h", bars, bars_per_year("24/5", "1h"), warmup=50)
    cfg = ExitConfig(stop_loss=0.005, take_profit=0.01, max_hold=24, min_exit_bar=2)
    entries = EntryRule(lookback=24, min_gap=12).entries(data.bars)
    ev = evaluate_exits(data, entries, cfg, rule_subject(data, window=48))
    assert ev.table.loc[("test", "trend_exit"), "trades"] >= 20
    assert ev.evidence["truncation_invariant"] is True
    assert max(abs(c["pearson"]) for c in ev.evidence["leak_correlations"].values()) < 0.3
    assert not ev.verdict.passed
    assert any(r.startswith("Deflated Sharpe") for r in ev.verdict.reasons)
