"""Training on several markets at once (e.g. a market and its mirror image) without crossing them.

:func:`concat_markets` stacks segments into one :class:`MarketArrays` (the policy encodes bars by
their row in it). :class:`SegmentedEnv` splits its envs over the segments, one
:class:`VecTradingEnv` per segment, and reports bar indices in the concatenated rows: an episode
starts, runs and ends inside its own segment, and the trainer steps it like one vector env.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from himari_pipeline.rl.env import EnvConfig, MarketArrays, Obs, VecTradingEnv

__all__ = ["SegmentedEnv", "concat_markets"]

SEED_STRIDE = 1_000_003  # segment i's env is seeded ``seed + i * SEED_STRIDE``


def concat_markets(markets: Sequence[MarketArrays]) -> tuple[MarketArrays, list[int]]:
    """The segments stacked row-wise, and the first row of each in the stacked market."""
    if not markets:
        raise ValueError("need at least one market")
    if len({m.num_features for m in markets}) != 1:
        raise ValueError("segments must have the same number of features")
    offsets, row = [], 0
    for m in markets:
        offsets.append(row)
        row += m.num_bars
    dev = markets[0].device
    joined = MarketArrays(
        torch.cat([m.features.to(dev) for m in markets]),
        torch.cat([m.regime_ids.to(dev) for m in markets]),
        torch.cat([m.returns.to(dev) for m in markets]),
        torch.cat([m.prices.to(dev) for m in markets]),
    )
    return joined, offsets


def _cat_obs(parts: list[Obs], offsets: list[int]) -> Obs:
    return Obs(
        t=torch.cat([o.t + off for o, off in zip(parts, offsets, strict=True)]),
        position_state=torch.cat([o.position_state for o in parts]),
        regime=torch.cat([o.regime for o in parts]),
    )


class SegmentedEnv:
    """``num_envs`` envs split evenly over ``markets`` (the first segments take the remainder).

    The interface is :class:`VecTradingEnv`'s as the trainer uses it (``reset``, ``step``,
    ``action_mask``, ``state_dict``); ``Obs.t`` and ``info["final_obs"].t`` are rows of
    :func:`concat_markets` ``(markets)``.
    """

    def __init__(
        self,
        markets: Sequence[MarketArrays],
        cfg: EnvConfig,
        num_envs: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        k = len(markets)
        if num_envs < k:
            raise ValueError(f"{num_envs} envs cannot cover {k} segments")
        base, extra = divmod(int(num_envs), k)
        self.counts = [base + (1 if i < extra else 0) for i in range(k)]
        self.envs = [
            VecTradingEnv(m, cfg, n, device=device, seed=int(seed) + i * SEED_STRIDE)
            for i, (m, n) in enumerate(zip(markets, self.counts, strict=True))
        ]
        _, self.offsets = concat_markets(markets)
        self.num_envs = int(num_envs)
        self.cfg = cfg

    def reset(self) -> Obs:
        return _cat_obs([e.reset() for e in self.envs], self.offsets)

    def observe(self) -> Obs:
        return _cat_obs([e.observe() for e in self.envs], self.offsets)

    def action_mask(self) -> Tensor:
        return torch.cat([e.action_mask() for e in self.envs])

    def step(self, actions: Tensor) -> tuple[Obs, Tensor, Tensor, dict]:
        parts = [
            e.step(a) for e, a in zip(self.envs, torch.as_tensor(actions).split(self.counts), strict=True)
        ]
        obs = _cat_obs([p[0] for p in parts], self.offsets)
        reward = torch.cat([p[1] for p in parts])
        done = torch.cat([p[2] for p in parts])
        info: dict = {}
        for key, first in parts[0][3].items():
            if key == "final_obs":
                info[key] = _cat_obs([p[3][key] for p in parts], self.offsets)
            elif first.ndim:
                info[key] = torch.cat([p[3][key] for p in parts])
        info["blocked_share"] = info["blocked"].float().mean()
        return obs, reward, done, info

    def state_dict(self) -> dict:
        return {f"segment{i}.{k}": v for i, e in enumerate(self.envs) for k, v in e.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        for i, e in enumerate(self.envs):
            prefix = f"segment{i}."
            e.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
