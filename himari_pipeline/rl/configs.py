"""The configuration dataclasses of training, free of torch: the env (:class:`EnvConfig`), the policy
(:class:`PolicyConfig`) and PPO (:class:`PPOConfig`).

Experiments, partitions and the Dagster definitions read them without importing torch (about 1.5 s
per process); :mod:`.env`, :mod:`.policy` and :mod:`.ppo` re-export them next to the code that uses them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields

from himari_pipeline.trading.rules import TradingRules
from himari_pipeline.vocabulary import COLLAPSE_MAX_SHARE, NUM_ACTIONS

__all__ = ["REWARD_NAMES", "EnvConfig", "PPOConfig", "PolicyConfig", "split_receptive_field"]

#: The rewards :data:`himari_pipeline.rl.rewards.REWARDS` registers (checked there at import).
REWARD_NAMES: tuple[str, ...] = (
    "pnl",
    "demeaned_pnl",
    "sortino",
    "carry",
    "anti_overtrading",
    "balance",
    "adaptive_regime",
)


def split_receptive_field(context: int, n_layers: int) -> tuple[int, ...]:
    """Per-layer attention widths whose stacked receptive field is exactly ``context`` bars."""
    if context < 1 or n_layers < 1:
        raise ValueError("context and n_layers must be >= 1")
    span = context - 1
    base, rem = divmod(span, n_layers)
    # the remainder goes to the top layers
    return tuple(1 + base + (1 if layer >= n_layers - rem else 0) for layer in range(n_layers))


@dataclass
class PolicyConfig:
    """Every architecture hyperparameter of :class:`RegimeConditionedPolicy`."""

    n_features: int = 44
    n_regimes: int = 4
    context: int = 100
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 3
    ff_dim: int = 1024
    dropout: float = 0.0
    actor_hidden: int = 256
    critic_hidden: int = 256
    position_state_dim: int = 3
    actor_bias_init: tuple[float, float, float] | None = None
    attn_windows: tuple[int, ...] | None = None  # None: split_receptive_field(context, n_layers)
    chunk_rows: int = 512  # query rows per chunk when encoding long stretches (memory bound)
    chunk_batch: int = 64  # chunks encoded per batched pass

    def __post_init__(self) -> None:
        if self.actor_bias_init is not None:
            self.actor_bias_init = tuple(float(b) for b in self.actor_bias_init)
            if len(self.actor_bias_init) != NUM_ACTIONS:
                raise ValueError("actor_bias_init needs one value per action")
        if self.attn_windows is None:
            self.attn_windows = split_receptive_field(self.context, self.n_layers)
        self.attn_windows = tuple(int(w) for w in self.attn_windows)
        if len(self.attn_windows) != self.n_layers or min(self.attn_windows) < 1:
            raise ValueError("attn_windows needs one width >= 1 per layer")
        if sum(w - 1 for w in self.attn_windows) + 1 != self.context:
            raise ValueError(f"attn_windows {self.attn_windows} do not span context {self.context}")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")

    @classmethod
    def full(cls, **overrides) -> PolicyConfig:
        """The full-size architecture: context 100, d 256, 3 layers, 4 heads."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides) -> PolicyConfig:
        """A CPU-sized default: context 32, d 64, 2 layers, 4 heads."""
        base = dict(
            context=32, d_model=64, n_layers=2, n_heads=4, ff_dim=128, actor_hidden=64, critic_hidden=64
        )
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PolicyConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class EnvConfig:
    """Episode, context and reward choice plus the trading rules as flat fields (the experiment YAML's
    ``env:`` keys and the checkpoints' ``env_config``); :attr:`rules` is them as :class:`TradingRules`,
    which validates them. Costs are fractions of equity (0.0015 = 0.15 %)."""

    transaction_cost: float = 0.0015  # per unit of |position change|
    carry_cost: float = 0.0  # per bar, per unit of |position| held
    borrow_rate_annual: float = 0.0  # shorts, per year, per unit of |short position|
    bars_per_year: float = 8760.0  # 24/7 hourly bars; 105_120 for 5-minute crypto bars
    leverage: float = 1.0  # |position| of LONG and SHORT
    max_leverage: float = 5.0
    min_hold: int = 0  # bars a position must be held before it may change (0 = off)
    cooldown: int = 0  # bars flat after a close before a new position may open (0 = off)
    episode_length: int | None = 1024  # decisions per episode; None = to the end of the data
    context: int = 1  # feature window length: decisions start at t >= context - 1
    reward: str = "pnl"
    reward_kwargs: dict = field(default_factory=dict)
    ruin_equity: float = 0.0  # equity <= this ends the episode

    def __post_init__(self) -> None:
        self.rules  # noqa: B018 - validates the trading rules
        if self.episode_length is not None and self.episode_length < 1:
            raise ValueError(f"episode_length must be >= 1 or None, got {self.episode_length}")
        if self.context < 1:
            raise ValueError(f"context must be >= 1, got {self.context}")
        if self.reward not in REWARD_NAMES:
            raise ValueError(f"unknown reward {self.reward!r}; choose one of {sorted(REWARD_NAMES)}")

    @property
    def rules(self) -> TradingRules:
        return TradingRules.from_mapping(vars(self))

    @property
    def borrow_per_bar(self) -> float:
        return self.rules.borrow_per_bar


@dataclass
class PPOConfig:
    """Every PPO hyperparameter (CleanRL names); defaults are the full-size profile."""

    exp_name: str = "himari_ppo"
    seed: int = 1
    torch_deterministic: bool = True
    device: str = "cpu"
    # algorithm
    total_timesteps: int = 500_000
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    num_envs: int = 8
    num_steps: int = 128
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4  # minibatches are groups of envs: num_envs must be divisible by this
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef_start: float = 0.10
    ent_coef_end: float = 0.02  # linear annealing over the updates
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.05
    adam_eps: float = 1e-5
    bootstrap_truncated: bool = True  # add gamma * V(final obs) to the reward of time-limit ends
    # a seed population, trained batched in one process (``seed`` is then unused); None: one seed
    seeds: tuple[int, ...] | None = None
    mirror: bool = False  # train on the market and its mirror image, one segment each (make_train_env)
    # evaluation, selection, collapse
    eval_every: int = 20_000  # environment steps between validations
    # the first validation's step (None: eval_every): weights before it are never candidates
    eval_start: int | None = None
    eval_temperature: float = 0.5
    eval_greedy: bool = True
    eval_seed: int | None = None  # None: seed; the same sampling noise at every evaluation
    bars_per_year: float | None = None  # None: env_cfg.bars_per_year
    select_metric: str = "greedy_sharpe"
    select_mode: str = "max"
    patience: int | None = None  # evaluations without improvement before stopping
    collapse_max_share: float = COLLAPSE_MAX_SHARE
    collapse_entropy_floor: float = 0.1
    stop_on_collapse: bool = False

    def __post_init__(self) -> None:
        if self.seeds is not None:
            self.seeds = tuple(int(s) for s in self.seeds)
            if not self.seeds or len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds must be a non-empty list of distinct integers, got {self.seeds}")
        if self.num_envs % self.num_minibatches:
            raise ValueError("num_envs must be divisible by num_minibatches (minibatches are env groups)")
        if self.eval_temperature <= 0:
            raise ValueError("eval_temperature must be > 0")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.eval_start is not None and not 1 <= self.eval_start <= self.total_timesteps:
            raise ValueError(
                f"eval_start must be None or in [1, total_timesteps={self.total_timesteps}] (no validation, "
                f"no checkpoint would run after it), got {self.eval_start}"
            )

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def first_eval(self) -> int:
        """The env step at (or after) which the first validation runs."""
        return self.eval_every if self.eval_start is None else self.eval_start

    @property
    def num_iterations(self) -> int:
        return max(1, self.total_timesteps // self.batch_size)

    @classmethod
    def from_dict(cls, d: dict) -> PPOConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
