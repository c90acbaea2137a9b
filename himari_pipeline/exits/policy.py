"""The exit policy: a small actor-critic MLP over the exit observation, with its action masks.

The observation (:func:`~himari_pipeline.exits.env.exit_observation`) is a flat vector: the last
``window`` side-adjusted returns and the trade's state. Two tanh hidden layers feed an actor (one logit
per exit action) and a critic (the value); orthogonal initialisation as in CleanRL's ``ppo.py``
(actor output gain 0.01, critic 1). Masks are applied to the logits (:func:`masked_logits`: a blocked
action gets probability exactly 0) wherever the policy acts or is updated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import Tensor, nn

from himari_pipeline.exits.env import EXIT_ACTIONS
from himari_pipeline.rl.policy import masked_logits


@dataclass
class ExitPolicyConfig:
    """Architecture of :class:`ExitPolicy`."""

    n_obs: int = 23
    hidden: int = 64
    layers: int = 2

    def __post_init__(self) -> None:
        if self.n_obs < 1 or self.hidden < 1 or self.layers < 1:
            raise ValueError("n_obs, hidden and layers must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ExitPolicyConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _layer(n_in: int, n_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _trunk(cfg: ExitPolicyConfig, out: int, out_gain: float) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = cfg.n_obs
    for _ in range(cfg.layers):
        mods += [_layer(width, cfg.hidden, float(np.sqrt(2))), nn.Tanh()]
        width = cfg.hidden
    return nn.Sequential(*mods, _layer(width, out, out_gain))


class ExitPolicy(nn.Module):
    """Separate actor and critic MLPs (CleanRL's layout)."""

    def __init__(self, cfg: ExitPolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.actor = _trunk(cfg, len(EXIT_ACTIONS), 0.01)
        self.critic = _trunk(cfg, 1, 1.0)

    def forward(self, obs: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Masked logits (N, 5) and values (N,)."""
        return masked_logits(self.actor(obs), mask), self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: Tensor, mask: Tensor, greedy: bool = True, generator=None) -> Tensor:
        """The argmax (or a sample) of the masked distribution."""
        logits, _ = self(obs, mask)
        if greedy:
            return logits.argmax(-1)
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
