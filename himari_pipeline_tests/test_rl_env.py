"""VecTradingEnv: reward alignment (causality), every cost term by hand, masks, ruin, resets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from himari_pipeline.rl.env import EnvConfig, MarketArrays, VecTradingEnv
from himari_pipeline.vocabulary import FLAT, LONG, SHORT


def market(returns, regimes=None, n_features: int = 2, seed: int = 0) -> MarketArrays:
    ret = np.asarray(returns, dtype=np.float64)
    n = len(ret)
    rng = np.random.default_rng(seed)
    prices = 100.0 * np.cumprod(1.0 + np.nan_to_num(ret))
    reg = np.zeros(n, dtype=np.int8) if regimes is None else np.asarray(regimes, dtype=np.int8)
    feats = rng.standard_normal((n, n_features)).astype(np.float32)
    return MarketArrays.from_numpy(feats, reg, ret, prices)


def act(*actions: int) -> torch.Tensor:
    return torch.tensor(actions, dtype=torch.long)


# ---------------------------------------------------------------- causality / alignment
def test_reward_alignment_iid_returns_informed_policy_earns_nothing_oracle_earns():
    """On i.i.d. returns, acting on returns[t] (known at t) earns ~0; acting on returns[t+1] does not.

    50 envs each cover a disjoint block of 60 decisions, so every bar's return is earned exactly
    once per policy and the samples are independent.
    """
    n_env, length = 50, 60
    rng = np.random.default_rng(123)
    ret = rng.standard_normal(n_env * length + 1) * 0.01
    ret[0] = np.nan
    m = market(ret)
    cfg = EnvConfig(transaction_cost=0.0, episode_length=length, reward="pnl", reward_kwargs={"scale": 1.0})
    starts = torch.arange(n_env) * length
    results = {}
    for name, lookahead in (("causal", 0), ("oracle", 1)):
        env = VecTradingEnv(m, cfg, n_env)
        obs = env.reset(start=starts)
        rewards = []
        for step in range(length):
            r_seen = m.returns[obs.t + lookahead]
            a = torch.where(r_seen > 0, LONG, SHORT)
            obs, rew, done, info = env.step(a)
            # the reward is exactly position * returns[t+1]
            expected = torch.where(a == LONG, 1.0, -1.0).double() * m.returns[starts + step + 1]
            torch.testing.assert_close(info["pnl"], expected)
            rewards.append(rew.double())
            assert bool(done.all()) == (step == length - 1)
        results[name] = torch.stack(rewards).flatten()
    causal, oracle = results["causal"], results["oracle"]
    assert causal.numel() == n_env * length
    se = float(causal.std()) / math.sqrt(causal.numel())
    assert abs(float(causal.mean())) < 4 * se, (float(causal.mean()), se)
    e_abs = float(np.nanmean(np.abs(ret)))
    assert float(oracle.mean()) == pytest.approx(e_abs, rel=1e-6)  # oracle earns E|r| exactly
    assert float(oracle.mean()) > 20 * se


def test_obs_t_advances_and_window_is_available():
    m = market(np.r_[np.nan, np.full(199, 0.001)])
    cfg = EnvConfig(context=10, episode_length=20)
    env = VecTradingEnv(m, cfg, 64, seed=3)
    obs = env.reset()
    assert bool((obs.t >= 9).all()) and bool((obs.t <= 198 - 19).all())
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        prev_t = obs.t
        obs, _, done, info = env.step(torch.randint(0, 3, (64,), generator=g))
        assert bool((obs.t[~done] == prev_t[~done] + 1).all())
        assert bool((info["final_obs"].t == prev_t + 1).all())
        assert bool((obs.t >= cfg.context - 1).all()) and bool((obs.t <= m.num_bars - 2).all())
        assert bool((info["episode_length"][done] == 20).all())
        assert bool((info["episode_length"][~done] == 0).all())
        torch.testing.assert_close(obs.regime, m.regime_ids[obs.t])


def test_same_seed_same_trajectory():
    m = market(np.r_[np.nan, np.random.default_rng(0).standard_normal(500) * 0.01])
    cfg = EnvConfig(episode_length=30, min_hold=2, cooldown=3)
    outs = []
    for _ in range(2):
        env = VecTradingEnv(m, cfg, 16, seed=7)
        env.reset()
        g = torch.Generator().manual_seed(1)
        rs = [env.step(torch.randint(0, 3, (16,), generator=g))[1] for _ in range(80)]
        outs.append(torch.stack(rs))
    torch.testing.assert_close(outs[0], outs[1])


# ---------------------------------------------------------------- costs by hand
def test_every_cost_term_and_compounding_by_hand():
    ret = [math.nan, 0.01, -0.02, 0.03, 0.005, -0.01]
    cfg = EnvConfig(
        transaction_cost=0.001,
        carry_cost=0.0002,
        borrow_rate_annual=0.0876,
        bars_per_year=8760,  # borrow 1e-5 per bar per unit short
        leverage=2.0,
        episode_length=None,
        reward="pnl",
        reward_kwargs={"scale": 1.0},
    )
    env = VecTradingEnv(market(ret), cfg, 1)
    obs = env.reset(start=0)
    assert obs.t.tolist() == [0]
    # (action, pos, tx, carry, borrow, pnl) worked out by hand
    plan = [
        (LONG, 2.0, 0.001 * 2, 0.0002 * 2, 0.0, 2 * 0.01),
        (LONG, 2.0, 0.0, 0.0002 * 2, 0.0, 2 * -0.02),
        (SHORT, -2.0, 0.001 * 4, 0.0002 * 2, 1e-5 * 2, -2 * 0.03),
        (FLAT, 0.0, 0.001 * 2, 0.0, 0.0, 0.0),
        (LONG, 2.0, 0.001 * 2, 0.0002 * 2, 0.0, 2 * -0.01),
    ]
    equity = 1.0
    for i, (a, pos, tx, carry, borrow, pnl) in enumerate(plan):
        obs, rew, done, info = env.step(act(a))
        cost = tx + carry + borrow
        equity *= 1.0 + pnl - cost
        assert info["position"].item() == pos
        assert info["transaction_cost"].item() == pytest.approx(tx, abs=1e-15)
        assert info["carry_cost"].item() == pytest.approx(carry, abs=1e-15)
        assert info["borrow_cost"].item() == pytest.approx(borrow, abs=1e-15)
        assert info["cost"].item() == pytest.approx(cost, abs=1e-15)
        assert info["pnl"].item() == pytest.approx(pnl, abs=1e-15)
        assert info["equity"].item() == pytest.approx(equity, rel=1e-12)
        assert rew.item() == pytest.approx(pnl - cost, rel=1e-6)
        assert bool(done[0]) == (i == 4)
        if i == 1:  # LONG held 2 bars since the decision at t=0 (equity 1.0 then)
            assert obs.position_state[0].tolist() == pytest.approx(
                [1.0, math.log1p(2) / math.log1p(100), equity - 1.0], rel=1e-6
            )
        if i == 3:
            assert obs.position_state[0, 0].item() == 0.0 and obs.position_state[0, 2].item() == 0.0
    assert equity == pytest.approx(
        (1 + 0.02 - 0.0024) * (1 - 0.04 - 0.0004) * (1 - 0.06 - 0.00442) * (1 - 0.002) * (1 - 0.02 - 0.0024),
        rel=1e-12,
    )
    assert info["truncated"].item() and not info["terminated"].item()
    assert info["episode_return"].item() == pytest.approx(equity - 1.0, rel=1e-12)
    assert info["final_obs"].t.item() == 5
    assert obs.t.item() == 0  # auto-reset to the pinned start
    assert env.equity.item() == 1.0 and env.position.item() == 0.0


def test_default_transaction_cost_and_reversal_costs_twice():
    env = VecTradingEnv(market([math.nan, 0.0, 0.0, 0.0]), EnvConfig(episode_length=None), 1)
    env.reset(start=0)
    assert env.step(act(LONG))[3]["transaction_cost"].item() == pytest.approx(0.0015)
    assert env.step(act(SHORT))[3]["transaction_cost"].item() == pytest.approx(0.003)


# ---------------------------------------------------------------- ruin and leverage
def test_ruin_with_leverage_5_and_a_minus_25_percent_bar():
    cfg = EnvConfig(leverage=5.0, max_leverage=5.0, episode_length=None)
    env = VecTradingEnv(market([math.nan, 0.01, -0.25, 0.01, 0.01, 0.01]), cfg, 2)
    env.reset(start=0)
    _, _, done, info = env.step(act(LONG, FLAT))
    eq0 = 1 + 5 * 0.01 - 0.0015 * 5
    assert not bool(done.any()) and info["equity"][0].item() == pytest.approx(eq0)
    obs, _, done, info = env.step(act(LONG, FLAT))
    assert done.tolist() == [True, False]
    assert info["terminated"].tolist() == [True, False] and not bool(info["truncated"].any())
    assert info["equity"][0].item() == pytest.approx(eq0 * (1 - 1.25))
    assert info["equity"][0].item() <= 0.0
    assert info["episode_return"][0].item() == -1.0
    assert math.isnan(info["episode_return"][1].item())
    assert obs.t.tolist() == [0, 2] and env.equity[0].item() == 1.0


def test_leverage_validation():
    with pytest.raises(ValueError, match="leverage"):
        EnvConfig(leverage=6.0, max_leverage=5.0)
    with pytest.raises(ValueError, match="leverage"):
        EnvConfig(leverage=0.0)
    with pytest.raises(ValueError, match="transaction_cost"):
        EnvConfig(transaction_cost=-0.001)
    with pytest.raises(ValueError, match="unknown reward"):
        EnvConfig(reward="sharpe_times_1e6")


# ---------------------------------------------------------------- masks
def test_min_hold_blocks_changes_and_counts_blocked_attempts():
    cfg = EnvConfig(min_hold=3, episode_length=None, transaction_cost=0.001)
    env = VecTradingEnv(market(np.r_[np.nan, np.full(20, 0.001)]), cfg, 2)
    env.reset(start=0)
    assert env.action_mask().all()
    env.step(act(LONG, FLAT))
    assert env.action_mask().tolist() == [[False, True, False], [True, True, True]]
    for _ in range(2):  # held 1 and 2 bars < 3: SHORT attempts blocked, position kept, no cost
        _, _, _, info = env.step(act(SHORT, FLAT))
        assert info["position"].tolist() == [1.0, 0.0]
        assert info["blocked"].tolist() == [True, False]
        assert info["blocked_share"].item() == 0.5
        assert info["transaction_cost"].tolist() == [0.0, 0.0]
    assert env.action_mask()[0].all()  # held 3 bars: free again
    _, _, _, info = env.step(act(SHORT, FLAT))
    assert info["position"].tolist() == [-1.0, 0.0] and not bool(info["blocked"].any())
    assert info["transaction_cost"][0].item() == pytest.approx(0.002)
    assert env.blocked_total.item() == 2 and env.steps_total == 8


def test_cooldown_blocks_reopening_after_a_close():
    cfg = EnvConfig(cooldown=2, episode_length=None)
    env = VecTradingEnv(market(np.r_[np.nan, np.full(20, 0.001)]), cfg, 1)
    env.reset(start=0)
    env.step(act(LONG))
    assert env.action_mask().all()  # no min_hold: may close at once
    env.step(act(FLAT))
    assert env.action_mask().tolist() == [[True, False, False]]  # staying flat is never blocked
    _, _, _, info = env.step(act(SHORT))
    assert info["blocked"].item() and info["position"].item() == 0.0  # flat during 2 bars after the close
    assert env.action_mask().all()
    _, _, _, info = env.step(act(SHORT))
    assert not info["blocked"].item() and info["position"].item() == -1.0
    assert env.blocked_total.item() == 1


def test_cooldown_does_not_apply_at_episode_start():
    env = VecTradingEnv(
        market(np.r_[np.nan, np.full(10, 0.001)]), EnvConfig(cooldown=5, episode_length=None), 1
    )
    env.reset(start=0)
    assert env.action_mask().all()


# ---------------------------------------------------------------- resets and data validation
def test_reset_start_validation_and_market_validation():
    m = market(np.r_[np.nan, np.full(30, 0.001)])
    env = VecTradingEnv(m, EnvConfig(context=5, episode_length=10), 4)
    assert env.reset(start=4).t.tolist() == [4] * 4
    with pytest.raises(ValueError, match="start"):
        env.reset(start=3)
    with pytest.raises(ValueError, match="too few|more than"):
        VecTradingEnv(m, EnvConfig(context=25, episode_length=10), 1)
    bad = np.r_[np.nan, 0.01, np.nan, 0.0]
    with pytest.raises(ValueError, match="row 2"):
        market(bad)
    with pytest.raises(ValueError, match="regime"):
        market([np.nan, 0.0, 0.0], regimes=[0, 4, 1])


@pytest.mark.parametrize(
    "reward", ["pnl", "sortino", "carry", "anti_overtrading", "balance", "adaptive_regime"]
)
def test_every_reward_runs_in_env(reward):
    rng = np.random.default_rng(5)
    m = market(np.r_[np.nan, rng.standard_normal(400) * 0.01], regimes=rng.integers(0, 4, 401))
    env = VecTradingEnv(m, EnvConfig(episode_length=50, reward=reward, min_hold=1, cooldown=2), 32, seed=1)
    env.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        _, rew, _, _ = env.step(torch.randint(0, 3, (32,), generator=g))
        assert rew.dtype == torch.float32 and rew.shape == (32,) and bool(torch.isfinite(rew).all())


def test_from_split_reads_dataset_split_arrays_and_dicts():
    from himari_pipeline.datasets.splits import SplitArrays

    n = 12
    rng = np.random.default_rng(0)
    ret = np.r_[np.nan, rng.standard_normal(n - 1) * 0.01]
    arrays = {
        "features_raw": rng.standard_normal((n, 3)).astype(np.float32),
        "features_denoised": rng.standard_normal((n, 3)).astype(np.float32),
        "regime_ids": rng.integers(0, 4, n).astype(np.int8),
        "regime_confidences": np.ones(n, dtype=np.float32),
        "prices": 100 * np.cumprod(1 + np.nan_to_num(ret)),
        "returns": ret,
        "timestamps": np.arange(n, dtype=np.int64) * 3_600_000_000_000,
    }
    m = MarketArrays.from_split(SplitArrays(**arrays))
    np.testing.assert_array_equal(m.features.numpy(), arrays["features_denoised"])
    assert m.regime_ids.dtype == torch.long and m.returns[0].item() == 0.0
    np.testing.assert_array_equal(m.returns[1:].numpy(), ret[1:])
    raw = MarketArrays.from_split(arrays, features_key="features_raw")
    np.testing.assert_array_equal(raw.features.numpy(), arrays["features_raw"])


@pytest.mark.parametrize("reward", ["sortino", "balance"])
def test_state_dict_resumes_exactly(reward):
    rng = np.random.default_rng(2)
    m = market(np.r_[np.nan, rng.standard_normal(300) * 0.01], regimes=rng.integers(0, 4, 301))
    cfg = EnvConfig(episode_length=25, reward=reward, min_hold=2, cooldown=3, reward_kwargs={"window": 7})
    actions = torch.randint(0, 3, (90, 8), generator=torch.Generator().manual_seed(0))
    env = VecTradingEnv(m, cfg, 8, seed=4)
    env.reset()
    for k in range(40):
        env.step(actions[k])
    state = env.state_dict()
    ref = [env.step(actions[k]) for k in range(40, 90)]
    fresh = VecTradingEnv(m, cfg, 8, seed=99)
    fresh.load_state_dict(state)
    for k, (obs, rew, _, info) in zip(range(40, 90), ref, strict=True):
        obs2, rew2, _, info2 = fresh.step(actions[k])
        torch.testing.assert_close(rew2, rew)
        torch.testing.assert_close(obs2.t, obs.t)
        torch.testing.assert_close(obs2.position_state, obs.position_state)
        torch.testing.assert_close(info2["equity"], info["equity"])
    assert fresh.blocked_total.item() == env.blocked_total.item() > 0


# ---------------------------------------------------------------- segments
def test_episodes_stay_inside_one_segment():
    """Two 60-row segments (a NaN first return in each): no episode starts, runs or ends across 60."""
    ret = np.r_[np.nan, np.full(59, 0.001), np.nan, np.full(59, -0.001)]
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((120, 2)).astype(np.float32)
    m = MarketArrays.from_numpy(feats, np.zeros(120), ret, np.ones(120), segment_starts=[0, 60])
    assert m.segments == [(0, 60), (60, 120)]
    env = VecTradingEnv(m, EnvConfig(context=5, episode_length=None), 64, seed=3)
    obs = env.reset()
    seg = (obs.t >= 60).long()
    assert set(seg.tolist()) == {0, 1}
    assert bool(((obs.t - 60 * seg) >= 4).all())  # context - 1 rows into the segment
    for _ in range(150):
        obs, _, done, info = env.step(torch.randint(0, 3, (64,)))
        end = info["final_obs"].t
        # an episode ends exactly at its segment's last row (t + 1 = segment end - 1), never past it
        assert bool((end[done] == 59 + 60 * seg[done]).all())
        assert bool(((info["final_obs"].t[~done] >= 60).long() == seg[~done]).all())
        seg = torch.where(done, (obs.t >= 60).long(), seg)
    fixed = EnvConfig(context=5, episode_length=20)
    assert bool((VecTradingEnv(m, fixed, 256, seed=1).reset().t.remainder(60) <= 58 - 19).all())


def test_segment_starts_are_checked():
    ret = np.r_[np.nan, np.full(9, 0.001)]
    feats = np.zeros((10, 2), dtype=np.float32)
    for bad in ([1, 5], [0, 5, 5], [0, 10]):
        with pytest.raises(ValueError, match="segment_starts"):
            MarketArrays.from_numpy(feats, np.zeros(10), ret, np.ones(10), segment_starts=bad)
    m = MarketArrays.from_numpy(feats, np.zeros(10), ret, np.ones(10), segment_starts=[0, 5])
    env = VecTradingEnv(m, EnvConfig(context=2, episode_length=None), 1)
    env.reset(start=6)  # the first decision row of the second segment
    with pytest.raises(ValueError, match="decision row"):
        env.reset(start=5)  # a segment's first row has no context
    with pytest.raises(ValueError, match="too short"):
        VecTradingEnv(m, EnvConfig(context=5, episode_length=None), 1)
