"""Single-env gymnasium wrapper around :class:`VecTradingEnv` (for stable-baselines3 and friends).

Observation: the flattened feature window ``features[t-context+1 : t+1]`` (context * F values)
followed by the 3 position-state values of :class:`~himari_pipeline.rl.env.Obs`; action space
``Discrete(3)`` (0 FLAT, 1 LONG, 2 SHORT). Same rules, costs, masks and rewards as the vector env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from himari_pipeline.rl.env import EnvConfig, MarketArrays, Obs, VecTradingEnv
from himari_pipeline.vocabulary import NUM_ACTIONS

__all__ = ["TradingGymEnv"]


class TradingGymEnv(gym.Env):
    """One trading episode at a time; ``reset(options={"start": t})`` pins the first decision row.

    ``info`` carries ``equity``, ``cost``, ``pnl``, ``position``, ``blocked`` and ``action_mask``;
    :meth:`action_masks` follows the sb3-contrib ``MaskablePPO`` convention. Masked actions are
    replaced by "keep the current position" inside the env either way.
    """

    metadata = {"render_modes": []}

    def __init__(self, market: MarketArrays, cfg: EnvConfig, seed: int = 0) -> None:
        super().__init__()
        self.market = market.to("cpu")
        self.cfg = cfg
        self.vec = VecTradingEnv(self.market, cfg, num_envs=1, device="cpu", seed=seed)
        self.context = cfg.context
        dim = cfg.context * self.market.num_features + 3
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        self._feats = self.market.features.numpy()

    def _flat(self, obs: Obs) -> np.ndarray:
        t = int(obs.t[0])
        window = self._feats[t - self.context + 1 : t + 1].reshape(-1)
        return np.concatenate([window, obs.position_state[0].numpy()]).astype(np.float32)

    def action_masks(self) -> np.ndarray:
        return self.vec.action_mask()[0].numpy().copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        start = (options or {}).get("start")
        obs = self.vec.reset(start=start, seed=seed)
        return self._flat(obs), {"action_mask": self.action_masks()}

    def step(self, action):
        a = torch.tensor([int(action)], dtype=torch.long)
        obs, reward, done, info = self.vec.step(a)
        terminated = bool(info["terminated"][0])
        truncated = bool(info["truncated"][0])
        out_obs = info["final_obs"] if bool(done[0]) else obs
        out_info = {
            "equity": float(info["equity"][0]),
            "cost": float(info["cost"][0]),
            "pnl": float(info["pnl"][0]),
            "position": float(info["position"][0]),
            "blocked": bool(info["blocked"][0]),
            "action_mask": self.action_masks(),
        }
        if bool(done[0]):
            out_info["episode_return"] = float(info["episode_return"][0])
        return self._flat(out_obs), float(reward[0]), terminated, truncated, out_info
