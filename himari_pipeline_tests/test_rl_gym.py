"""TradingGymEnv: gymnasium's env checker, observation layout, episode end, and SB3 PPO on it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from himari_pipeline.rl.env import EnvConfig, MarketArrays
from himari_pipeline.rl.gym_env import TradingGymEnv
from himari_pipeline.vocabulary import LONG, SHORT


def tiny_market(n: int = 300, n_features: int = 3, seed: int = 0) -> MarketArrays:
    rng = np.random.default_rng(seed)
    ret = np.r_[np.nan, rng.standard_normal(n - 1) * 0.01]
    feats = rng.standard_normal((n, n_features)).astype(np.float32)
    prices = 100 * np.cumprod(1 + np.nan_to_num(ret))
    return MarketArrays.from_numpy(feats, rng.integers(0, 4, n), ret, prices)


def test_check_env_passes():
    env = TradingGymEnv(tiny_market(), EnvConfig(context=8, episode_length=40, min_hold=2, cooldown=2))
    check_env(env, skip_render_check=True)


def test_observation_layout_and_episode_end():
    m = tiny_market()
    cfg = EnvConfig(context=5, episode_length=3, transaction_cost=0.0, reward_kwargs={"scale": 1.0})
    env = TradingGymEnv(m, cfg)
    obs, info = env.reset(options={"start": 10})
    assert obs.shape == (5 * 3 + 3,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:15], m.features[6:11].numpy().reshape(-1))
    np.testing.assert_array_equal(obs[15:], [0.0, 0.0, 0.0])
    assert info["action_mask"].tolist() == [True, True, True]
    rets = m.returns.numpy()
    for i, a in enumerate([LONG, LONG, SHORT]):
        obs, reward, terminated, truncated, info = env.step(a)
        sign = 1.0 if a == LONG else -1.0
        assert reward == pytest.approx(sign * rets[11 + i], rel=1e-6)
        np.testing.assert_array_equal(obs[:15], m.features[7 + i : 12 + i].numpy().reshape(-1))
        assert not terminated and truncated == (i == 2)
    assert obs[15] == -1.0  # the terminal observation is the pre-reset state
    expected = (1 + rets[11]) * (1 + rets[12]) * (1 - rets[13]) - 1
    assert info["episode_return"] == pytest.approx(expected, rel=1e-9)
    assert math.isclose(info["equity"], expected + 1, rel_tol=1e-9)


def test_sb3_ppo_trains_a_few_hundred_steps():
    sb3 = pytest.importorskip("stable_baselines3")
    env = TradingGymEnv(tiny_market(), EnvConfig(context=8, episode_length=50))
    model = sb3.PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=256)
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert int(action) in (0, 1, 2)
    assert model.num_timesteps >= 256
