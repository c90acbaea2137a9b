"""Reinforcement learning: vectorized trading env, rewards, gymnasium wrapper, policy and PPO."""

from himari_pipeline.rl.env import EnvConfig, MarketArrays, Obs, VecTradingEnv
from himari_pipeline.rl.rewards import (
    REWARDS,
    RewardFn,
    RewardScaleError,
    StepContext,
    reward_scale_diagnostic,
)
from himari_pipeline.vocabulary import FLAT, LONG, SHORT

__all__ = [
    "FLAT",
    "LONG",
    "REWARDS",
    "SHORT",
    "EnvConfig",
    "MarketArrays",
    "Obs",
    "RewardFn",
    "RewardScaleError",
    "StepContext",
    "VecTradingEnv",
    "reward_scale_diagnostic",
]
