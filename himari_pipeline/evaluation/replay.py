"""Greedy replays of trained policies over dataset segments, as the report reads them.

The report needs the selected checkpoint on every split and on shuffled copies, and every checkpoint
on validation: :func:`replay_greedy` runs them through the RL layer's batched replay
(:mod:`himari_pipeline.rl.replay`) and returns :class:`Replay` rows, the form strategies' positions
take too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from himari_pipeline.rl.env import EnvConfig
from himari_pipeline.rl.experiments import Experiment
from himari_pipeline.rl.policy import RegimeConditionedPolicy
from himari_pipeline.rl.replay import Decisions, replay_policies
from himari_pipeline.trading.rules import TradingRules

__all__ = ["Replay", "costs_from_experiment", "replay_greedy"]


@dataclass
class Replay(Decisions):
    """One replay as the report reads it: a policy's greedy decisions (:class:`Decisions`) or a
    strategy's positions, which also carry their ``direction``."""

    direction: np.ndarray | None = None  # position / leverage per row from t0 (a strategy's); else sign


def replay_greedy(
    policies: Sequence[RegimeConditionedPolicy],
    series: Sequence[tuple[np.ndarray, ...]],
    env_cfg: EnvConfig,
) -> list[Replay]:
    """Greedy decisions of ``policies[i]`` over ``series[i] = (features, regime_ids, returns[,
    gap_before])``, all stepped together (:func:`himari_pipeline.rl.replay.replay_policies`): the env's
    trading rules, one episode from row ``env_cfg.context - 1`` to the last row with a next return (or
    the ruin step)."""
    return [
        Replay(d.t, d.action, d.position, d.net_return, d.ruined)
        for d in replay_policies(policies, series, env_cfg)
    ]


def costs_from_experiment(exp: Experiment | None, env_cfg: EnvConfig | None = None) -> TradingRules:
    """The trading rules of an experiment's env config (or of a checkpoint's; defaults without both)."""
    if exp is not None:
        return TradingRules.from_mapping(exp.env)
    return env_cfg.rules if env_cfg is not None else TradingRules()
