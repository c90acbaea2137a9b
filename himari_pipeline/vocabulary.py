"""The project's shared words: actions, regimes and the thresholds several layers agree on.

One home for each: the env, the trainer, the report, the gate and the Dagster checks import these
names instead of restating them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# --------------------------------------------------------------------------- actions
#: Action ids of the trading policy: 0 flat, 1 long, 2 short (the order of the policy's logits).
FLAT, LONG, SHORT = 0, 1, 2
ACTIONS: tuple[str, ...] = ("flat", "long", "short")
NUM_ACTIONS: int = len(ACTIONS)

# --------------------------------------------------------------------------- regimes
#: Regime ids of the rule-based detector; ``WARMUP_ID`` marks rows before its indicators exist.
REGIMES: tuple[str, ...] = ("LOW_VOL", "TRENDING", "HIGH_VOL", "CRISIS")
LOW_VOL, TRENDING, HIGH_VOL, CRISIS = range(len(REGIMES))
REGIME_IDS: dict[str, int] = {name: i for i, name in enumerate(REGIMES)}
N_REGIMES: int = len(REGIMES)
WARMUP_ID: int = -1

# --------------------------------------------------------------------------- shared thresholds
#: A policy has collapsed when one action takes more than this share of its decisions.
COLLAPSE_MAX_SHARE: float = 0.95
#: Reward-scale diagnostic limits: ``max|reward|`` and the critic's value loss (log-003-size rewards).
REWARD_MAX_ABS: float = 1e4
REWARD_MAX_VALUE_LOSS: float = 1e6


def action_shares(actions: np.ndarray) -> dict[str, float]:
    """Share of each action (``{"flat": .., "long": .., "short": ..}``) among action ids."""
    counts = np.bincount(np.asarray(actions, dtype=np.int64).ravel(), minlength=NUM_ACTIONS)[:NUM_ACTIONS]
    total = max(int(counts.sum()), 1)
    return {name: float(c / total) for name, c in zip(ACTIONS, counts, strict=True)}


def position_actions(positions: np.ndarray) -> np.ndarray:
    """The action id of each position by its sign: LONG above 0, SHORT below, FLAT at 0."""
    p = np.asarray(positions)
    return np.select([p > 0, p < 0], [LONG, SHORT], FLAT)


def top_action(shares: Mapping[str, float]) -> tuple[str, float]:
    """The most frequent action and its share."""
    name = max(shares, key=lambda k: shares[k])
    return name, float(shares[name])


def regime_name(regime_id: int) -> str:
    """The regime's name, ``WARMUP`` for the warm-up id."""
    return REGIMES[regime_id] if 0 <= regime_id < N_REGIMES else "WARMUP"


__all__ = [
    "ACTIONS",
    "COLLAPSE_MAX_SHARE",
    "CRISIS",
    "FLAT",
    "HIGH_VOL",
    "LONG",
    "LOW_VOL",
    "NUM_ACTIONS",
    "N_REGIMES",
    "REGIMES",
    "REGIME_IDS",
    "REWARD_MAX_ABS",
    "REWARD_MAX_VALUE_LOSS",
    "SHORT",
    "TRENDING",
    "WARMUP_ID",
    "action_shares",
    "position_actions",
    "regime_name",
    "top_action",
]
