"""Drift-neutral training: mirror image of the bars, segmented envs, the demeaned-return reward."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from himari_pipeline.datasets.mirror import mirror_bars, mirrored_splits
from himari_pipeline.rl.checkpoints import META_FILE, best_checkpoint
from himari_pipeline.rl.env import EnvConfig, MarketArrays
from himari_pipeline.rl.experiments import Experiment, load_experiment
from himari_pipeline.rl.rewards import StepContext, make_reward
from himari_pipeline.rl.segments import SegmentedEnv, concat_markets
from himari_pipeline.rl.training import build_synthetic_splits, synthetic_bars, train_experiment

SPAN = {"variant": "planted", "seed": 3, "start": "2024-01-01", "end": "2025-12-31"}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    bars = synthetic_bars(**SPAN)
    splits = build_synthetic_splits(**SPAN, context=16)
    return bars, splits, mirrored_splits(bars, "1h", splits)


def _bars(close: np.ndarray) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=len(close), freq="h", tz="UTC")
    return pd.DataFrame(
        {"timestamp": ts, "open": close * 0.999, "high": close * 1.01, "low": close * 0.98, "close": close,
         "volume": np.arange(len(close), dtype=float)}
    )  # fmt: skip


# --------------------------------------------------------------------------- mirror
def test_mirror_of_the_mirror_is_the_original() -> None:
    bars = synthetic_bars(**SPAN)[:500]
    twice = mirror_bars(mirror_bars(bars))
    for col in ("open", "high", "low", "close"):
        np.testing.assert_allclose(twice[col], bars[col], rtol=1e-12)
    assert twice["volume"].equals(bars["volume"]) and twice["timestamp"].equals(bars["timestamp"])


def test_mirror_negates_log_returns_and_swaps_high_and_low() -> None:
    bars = _bars(np.array([100.0, 110.0, 99.0, 120.0]))
    m = mirror_bars(bars)
    np.testing.assert_allclose(np.diff(np.log(m["close"])), -np.diff(np.log(bars["close"])))
    assert m["close"].iloc[0] == 100.0
    np.testing.assert_allclose(m["high"], 100.0**2 / bars["low"])
    assert (m["high"] >= m["close"]).all() and (m["low"] <= m["close"]).all() and (m["high"] > m["low"]).all()
    assert m["volume"].equals(bars["volume"])


def test_mirror_refuses_bars_it_cannot_mirror() -> None:
    with pytest.raises(ValueError, match="missing"):
        mirror_bars(_bars(np.array([1.0, 2.0])).drop(columns="high"))
    with pytest.raises(ValueError, match="positive"):
        mirror_bars(_bars(np.array([1.0, -2.0])))


def test_mirrored_splits_recompute_features_on_the_same_rows(data) -> None:
    bars, splits, mirror = data
    for name in ("train", "val"):
        a, b = splits[name], mirror[name]
        assert np.array_equal(a.timestamps, b.timestamps)
        np.testing.assert_allclose(np.log1p(b.returns[1:]), -np.log1p(a.returns[1:]), atol=1e-12)
    # recomputed, not copied: the features of a falling market differ from the rising one's
    assert not np.allclose(splits["train"].features_raw, mirror["train"].features_raw)
    with pytest.raises(ValueError, match="planned over"):
        mirrored_splits(bars[:-5], "1h", splits)


# --------------------------------------------------------------------------- segments
def test_segmented_env_keeps_every_episode_inside_its_segment(data) -> None:
    _, splits, mirror = data
    a, b = MarketArrays.from_split(splits["train"]), MarketArrays.from_split(mirror["train"])
    joined, offsets = concat_markets([a, b])
    cfg = EnvConfig(episode_length=40, context=8)
    env = SegmentedEnv([a, b], cfg, 6, seed=1)
    obs = env.reset()
    gen = torch.Generator().manual_seed(0)
    seen = torch.zeros(6, 2, dtype=torch.long)
    for _ in range(300):
        seg = (obs.t >= offsets[1]).long()
        assert torch.equal(seg, torch.tensor([0, 0, 0, 1, 1, 1]))  # envs 0-2 on the market, 3-5 on the mirror
        local = obs.t - torch.tensor(offsets)[seg]
        assert bool((local >= cfg.context - 1).all()) and bool((local <= a.num_bars - 2).all())
        obs, _, done, info = env.step(torch.randint(0, 3, (6,), generator=gen))
        assert torch.equal(info["final_obs"].t >= offsets[1], seg.bool())  # an episode ends where it ran
        seen[torch.arange(6), seg] += done.long()
    assert int(seen.sum()) > 6 and joined.num_bars == a.num_bars + b.num_bars
    state = env.state_dict()
    other = SegmentedEnv([a, b], cfg, 6, seed=99)
    other.load_state_dict(state)
    act = torch.randint(0, 3, (6,), generator=gen)
    assert torch.equal(env.step(act)[1], other.step(act)[1])


def test_segmented_env_needs_an_env_per_segment(data) -> None:
    _, splits, _ = data
    a = MarketArrays.from_split(splits["train"])
    with pytest.raises(ValueError, match="cannot cover"):
        SegmentedEnv([a, a, a], EnvConfig(context=8), 2)


# --------------------------------------------------------------------------- demeaned reward
def test_demeaned_reward_pays_nothing_for_holding_a_pure_drift() -> None:
    """Always long on a market that only drifts: plain PnL pays the drift, the demeaned reward ~0."""
    drift, n = 5e-4, 50_000
    r_next = torch.as_tensor(drift + 0.01 * np.random.default_rng(0).standard_normal(n))
    mean_drift = float(r_next.mean())  # what training takes from its train segment
    ones, zeros = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    ctx = StepContext(
        position=ones, new_position=ones, r_next=r_next, pnl=ones * r_next, costs=zeros,
        transaction_cost=zeros, carry_cost=zeros, borrow_cost=zeros, regime=torch.zeros(n, dtype=torch.long),
        bars_held=torch.ones(n, dtype=torch.long), after_close=torch.zeros(n, dtype=torch.bool),
    )  # fmt: skip
    plain = float(make_reward("pnl", n)(ctx).double().mean())
    demeaned = float(make_reward("demeaned_pnl", n, drift=mean_drift)(ctx).double().mean())
    assert plain == pytest.approx(100 * drift, rel=0.2)
    assert abs(demeaned) < 1e-3 * 100 * drift
    short = StepContext(**{**vars(ctx), "new_position": -ones, "pnl": -r_next})
    assert (
        abs(float(make_reward("demeaned_pnl", n, drift=mean_drift)(short).double().mean()))
        < 1e-3 * 100 * drift
    )
    with pytest.raises(ValueError, match="finite"):
        make_reward("demeaned_pnl", n, drift=float("nan"))


def test_demeaned_drift_comes_from_the_train_segment(tmp_path, data) -> None:
    _, splits, _ = data
    d = load_experiment("smoke").to_dict()
    d["env"]["reward"] = "demeaned_pnl"
    exp = Experiment.from_dict(d)
    out = tmp_path / "demeaned"
    summary = train_experiment(exp, splits, out, progress=False, max_iterations=1, split_version="v1")
    meta = json.loads((best_checkpoint(out) / META_FILE).read_text())
    want = float(np.mean(splits["train"].returns[1:]))
    assert meta["env_config"]["reward_kwargs"]["drift"] == pytest.approx(want)
    assert meta["drift_neutral"] == {
        "mirror": False,
        "demeaned_reward": True,
        "drift_per_bar": pytest.approx(want),
    }
    assert summary.global_step > 0


def test_mirror_training_runs_and_needs_the_mirror(tmp_path, data) -> None:
    _, splits, mirror = data
    d = load_experiment("smoke").to_dict()
    d["ppo"]["mirror"] = True
    exp = Experiment.from_dict(d)
    with pytest.raises(ValueError, match="mirror image"):
        train_experiment(exp, splits, tmp_path / "x", progress=False, max_iterations=1)
    out = tmp_path / "mirror"
    summary = train_experiment(exp, splits, out, progress=False, max_iterations=1, mirror=mirror)
    meta = json.loads((best_checkpoint(out) / META_FILE).read_text())
    assert meta["drift_neutral"]["mirror"] is True and meta["ppo_config"]["mirror"] is True
    assert summary.global_step > 0
