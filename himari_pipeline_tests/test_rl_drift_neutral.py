"""Drift-neutral training: mirror image of the bars as a second segment, the demeaned-return reward."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from himari_pipeline.datasets.mirror import mirror_bars, mirrored_splits
from himari_pipeline.evaluation.report import build_validation_report
from himari_pipeline.rl.checkpoints import META_FILE, best_checkpoint
from himari_pipeline.rl.env import EnvConfig, MarketArrays, VecTradingEnv
from himari_pipeline.rl.experiments import Experiment, load_experiment
from himari_pipeline.rl.ppo import make_train_env
from himari_pipeline.rl.rewards import StepContext, make_reward
from himari_pipeline.rl.runtime import describe_runtime, runtime_info
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
def test_market_and_mirror_train_as_two_segments_of_one_env(data) -> None:
    """Every episode starts, runs and ends inside the market or inside its mirror; both are played."""
    _, splits, mirror = data
    a, b = MarketArrays.from_split(splits["train"]), MarketArrays.from_split(mirror["train"])
    cfg = EnvConfig(episode_length=40, context=8)
    joined, env = make_train_env([a, b], cfg, 6, torch.device("cpu"), seed=1)
    assert isinstance(env, VecTradingEnv) and joined.segments == [
        (0, a.num_bars),
        (a.num_bars, 2 * a.num_bars),
    ]
    torch.testing.assert_close(joined.returns[a.num_bars + 1 :], b.returns[1:])
    obs = env.reset()
    gen = torch.Generator().manual_seed(0)
    episodes = torch.zeros(2, dtype=torch.long)  # finished episodes on the market, on the mirror
    for _ in range(400):
        seg = (obs.t >= a.num_bars).long()
        local = obs.t - a.num_bars * seg
        assert bool((local >= cfg.context - 1).all()) and bool((local <= a.num_bars - 2).all())
        obs, _, done, info = env.step(torch.randint(0, 3, (6,), generator=gen))
        final_seg = (info["final_obs"].t >= a.num_bars).long()
        assert torch.equal(final_seg[done], seg[done])  # an episode ends where it ran
        episodes += torch.bincount(seg[done], minlength=2)
    assert bool((episodes > 10).all())  # starts are drawn across both segments
    state = env.state_dict()
    _, other = make_train_env([a, b], cfg, 6, torch.device("cpu"), seed=99)
    other.load_state_dict(state)
    act = torch.randint(0, 3, (6,), generator=gen)
    assert torch.equal(env.step(act)[1], other.step(act)[1])


def test_concatenated_markets_keep_gaps_and_refuse_mismatches(data) -> None:
    _, splits, _ = data
    a = MarketArrays.from_split(splits["train"])
    assert MarketArrays.concat([a]) is a
    gaps = torch.zeros(a.num_bars, dtype=torch.long)
    gaps[50] = 3
    gapped = MarketArrays(a.features, a.regime_ids, a.returns, a.prices, gaps, (0, 100))
    joined = MarketArrays.concat([a, gapped])
    assert joined.segment_starts == (0, a.num_bars, a.num_bars + 100)  # a market's own segments stay
    assert int(joined.gap_before[a.num_bars + 50]) == 3 and int(joined.gap_before.sum()) == 3
    plain = MarketArrays(a.features, a.regime_ids, a.returns, a.prices)  # no gap record
    assert MarketArrays.concat([plain, plain]).gap_before is None
    assert int(MarketArrays.concat([plain, gapped]).gap_before.sum()) == 3
    with pytest.raises(ValueError, match="at least one"):
        MarketArrays.concat([])
    narrow = MarketArrays(a.features[:, :2], a.regime_ids, a.returns, a.prices)
    with pytest.raises(ValueError, match="number of features"):
        MarketArrays.concat([a, narrow])


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
    assert meta["runtime"] == runtime_info()  # what another machine's numbers would differ by
    assert meta["runtime"]["torch"] == torch.__version__ and meta["runtime"]["cpu_capability"]

    # the report says which options and which runtime trained the judged checkpoint
    report = build_validation_report(out, splits, exp, bars_per_year=8760.0, n_perm=20, n_shuffles=1,
                                     pbo_blocks=4)  # fmt: skip
    md = report.to_markdown()
    assert "Drift-neutral training options: mirror augmentation (half the training envs on the mirror" in md
    assert f"Trained on {describe_runtime(meta['runtime'])}; training is deterministic" in md
    assert f"torch {torch.__version__}, numpy {np.__version__}" in describe_runtime(meta["runtime"])
