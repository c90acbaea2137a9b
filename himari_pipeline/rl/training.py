"""One training entry point: an :class:`Experiment` + dataset splits -> checkpoints and a summary.

Kept whole: the run's lifecycle (build, resume, train, summarise, replay a checkpoint) for one seed
and for a population, whose steps share helpers here.

:func:`train_experiment` builds the train/val markets, the policy and the PPO trainer, trains with
validation every ``eval_every`` env steps, writes safetensors checkpoints under ``out_dir`` whose
``checkpoint.json`` also records the experiment's config hash and the split version, and resumes from
the last checkpoint found there. :func:`evaluate_checkpoint` replays a saved policy over any split.
:func:`build_synthetic_splits` runs the data stages (synthetic bars -> features -> EKF -> regimes ->
splits) in memory, as the Dagster assets do, for scripts, tests and benchmarks.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from himari_pipeline.datasets.splits import (
    FRACTION_PRESETS,
    DatasetSplits,
    SplitArrays,
    SplitConfig,
    build_splits,
    plan_splits,
    required_warmup,
)
from himari_pipeline.rl.checkpoints import META_FILE, best_checkpoint, load_checkpoint
from himari_pipeline.rl.env import EnvConfig, MarketArrays, VecTradingEnv
from himari_pipeline.rl.experiments import Experiment
from himari_pipeline.rl.policy import PolicyConfig, RegimeConditionedPolicy
from himari_pipeline.rl.ppo import PPOTrainer, action_shares, return_metrics, seed_everything
from himari_pipeline.rl.rewards import RewardScaleError, reward_scale_diagnostic
from himari_pipeline.rl.runtime import runtime_info

if TYPE_CHECKING:
    from himari_pipeline.rl.stacked_ppo import StackedPPOTrainer

__all__ = [
    "PopulationSummary",
    "TrainingSummary",
    "build_synthetic_splits",
    "evaluate_checkpoint",
    "last_checkpoint",
    "reward_scale_preflight",
    "synthetic_bars",
    "train_experiment",
]

LogFn = Callable[[int, dict[str, float]], None]


# --------------------------------------------------------------------------- data
def synthetic_bars(
    variant: str = "planted",
    seed: int = 7,
    timeframe: str = "1h",
    start: str = "2020-01-01",
    end: str = "2025-12-31",
):
    """The built-in synthetic market's bars (what :func:`build_synthetic_splits` starts from)."""
    from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars

    cfg = SyntheticConfig(seed=seed, variant=variant, start=start, end=end, timeframe=timeframe)
    return generate_synthetic_bars(cfg)


def build_synthetic_splits(
    variant: str = "planted",
    seed: int = 7,
    timeframe: str = "1h",
    start: str = "2020-01-01",
    end: str = "2025-12-31",
    fractions: str | tuple[float, float, float] = "default",
    context: int = 100,
    live_year: int | None = None,
) -> DatasetSplits:
    """Synthetic bars -> features -> EKF-denoised features -> regimes -> splits, all in memory."""
    from himari_pipeline.ekf import EKFParams, denoise_features
    from himari_pipeline.features.catalog import FEATURE_NAMES
    from himari_pipeline.features.compute import compute_features
    from himari_pipeline.regimes.detect import detect_regimes

    bars = synthetic_bars(variant, seed, timeframe, start, end)
    feats = compute_features(bars)
    den = denoise_features(feats, EKFParams.for_features(FEATURE_NAMES))
    regs = detect_regimes(bars, timeframe)
    split_cfg = SplitConfig(fractions=fractions, live_year=live_year, context=context)
    plan = plan_splits(bars["timestamp"], required_warmup(feats, den, regs), split_cfg)
    inputs = {
        "synthetic": {"variant": variant, "seed": seed, "timeframe": timeframe, "start": start, "end": end}
    }
    return build_splits(bars, feats, den, regs, list(FEATURE_NAMES), plan, input_versions=inputs)


# --------------------------------------------------------------------------- summary
@dataclass
class TrainingSummary:
    """What one :func:`train_experiment` call produced.

    ``evaluations`` holds every validation of the run (resumed history included) as ``(step, metrics)``;
    ``steps_per_s`` counts this call's env steps over its whole training time, validations included.
    """

    experiment: str
    config_hash: str
    split_version: str
    out_dir: str
    global_step: int
    iterations: int
    best_checkpoint: str | None
    best_step: int | None
    best_metric: str
    best_value: float | None
    best_metrics: dict[str, float]
    evaluations: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    collapsed: bool = False
    collapse_reasons: list[str] = field(default_factory=list)
    early_stopped: bool = False
    stop_reason: str | None = None
    resumed_from_step: int | None = None
    wall_time_s: float = 0.0
    steps_per_s: float = 0.0

    def to_dict(self) -> dict:
        from himari_pipeline.rl.checkpoints import to_jsonable

        return to_jsonable(self)


@dataclass
class PopulationSummary:
    """What a seed population's :func:`train_experiment` call produced: one summary per seed.

    ``steps_per_s`` counts the env steps of all seeds together over the training time.
    """

    experiment: str
    config_hash: str
    split_version: str
    out_dir: str
    seeds: list[int]
    runs: list[TrainingSummary]
    wall_time_s: float = 0.0
    steps_per_s: float = 0.0

    def to_dict(self) -> dict:
        from himari_pipeline.rl.checkpoints import to_jsonable

        return to_jsonable(self)


# --------------------------------------------------------------------------- run folders
def last_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint directory with the highest step under ``out_dir`` (None if there is none)."""
    out = Path(out_dir)
    if not out.is_dir():
        return None
    found = [p for p in out.glob("step_*") if (p / META_FILE).is_file() and not p.name.startswith(".")]
    return max(found, key=lambda p: int(p.name.split("_")[1])) if found else None


def _market(split: SplitArrays, features_key: str, device: str) -> MarketArrays:
    return MarketArrays.from_split(split, device=device, features_key=features_key)


def _check_splits(exp: Experiment, splits: DatasetSplits, policy_cfg: PolicyConfig) -> None:
    meta = splits.metadata
    want = list(FRACTION_PRESETS[exp.split])
    have = meta.get("config", {}).get("fractions")
    if have is not None and not np.allclose(have, want):
        raise ValueError(
            f"experiment {exp.name!r} wants split preset {exp.split!r} {want}, splits have {have}"
        )
    split_ctx = meta.get("config", {}).get("context")
    if split_ctx is not None and policy_cfg.context > int(split_ctx):
        raise ValueError(
            f"policy context {policy_cfg.context} exceeds the splits' context {split_ctx}: the embargo "
            "between splits would no longer cover the model's input window"
        )


def _evaluations(history: list[dict]) -> list[tuple[int, dict[str, float]]]:
    return [(int(h["step"]), {k: v for k, v in h.items() if k != "step"}) for h in history]


def training_env_config(exp: Experiment, train: SplitArrays) -> EnvConfig:
    """The env config training uses: ``exp``'s, with the demeaned reward's drift set when not given.

    For ``reward: demeaned_pnl`` without a ``drift`` in ``reward_kwargs`` the drift is the mean
    per-bar return of the training segment (fixed before the first decision; training only).
    """
    cfg = exp.env_config()
    if cfg.reward == "demeaned_pnl" and "drift" not in cfg.reward_kwargs:
        returns = np.asarray(train.returns, dtype=np.float64)[1:]  # returns[0] has no previous close
        drift = float(np.mean(returns)) if returns.size else 0.0
        cfg = dataclasses.replace(cfg, reward_kwargs={**cfg.reward_kwargs, "drift": drift})
    return cfg


def training_markets(
    exp: Experiment, splits: DatasetSplits, mirror: DatasetSplits | None, device: str
) -> list[MarketArrays]:
    """The train segment, and its mirror image's when the experiment asks for mirror augmentation."""
    markets = [_market(splits["train"], exp.features_key, device)]
    if exp.ppo_config().mirror:
        if mirror is None:
            raise ValueError(
                f"experiment {exp.name!r} trains on the mirror image too (ppo.mirror: true): pass the "
                "mirrored splits (himari_pipeline.datasets.mirror.mirrored_splits)"
            )
        if mirror["train"].n_samples != splits["train"].n_samples:
            raise ValueError("the mirrored splits do not line up with the splits")
        markets.append(_market(mirror["train"], exp.features_key, device))
    return markets


def _check_resumable(last: Path, exp: Experiment, chash: str, version: str) -> None:
    meta = json.loads((last / META_FILE).read_text())
    if meta.get("config_hash") != chash:
        raise ValueError(
            f"{last}: written by config hash {meta.get('config_hash')}, experiment {exp.name!r} "
            f"has {chash}; use another out_dir or resume=False"
        )
    if meta.get("split_version") != version:
        raise ValueError(f"{last}: trained on split version {meta.get('split_version')}, not {version}")


def _progress_log(exp: Experiment, total: int, initial: int, progress: bool, user_log: LogFn | None):
    """A log function that also moves a tqdm bar (when ``progress``), and the bar (or None)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=initial, unit="step", desc=exp.name, dynamic_ncols=True)

    def _log(step: int, metrics: dict[str, float]) -> None:
        if bar is not None:
            bar.update(step - bar.n)
            if "eval/greedy_sharpe" in metrics:
                bar.set_postfix(val_sharpe=f"{metrics['eval/greedy_sharpe']:.2f}")
        if user_log is not None:
            user_log(step, metrics)

    return _log, bar


def _train_with_progress(
    trainer: PPOTrainer | StackedPPOTrainer,
    exp: Experiment,
    progress: bool,
    log_fn: LogFn | None,
    max_iterations: int | None,
) -> tuple[int, float]:
    """Train (a single-seed or population trainer) with the progress bar; the start step and seconds."""
    cfg = trainer.cfg
    trainer.log_fn, bar = _progress_log(
        exp, cfg.num_iterations * cfg.batch_size, trainer.global_step, progress, log_fn
    )
    start_step, t_train = trainer.global_step, time.time()
    try:
        trainer.train(max_iterations=max_iterations)
    finally:
        if bar is not None:
            bar.close()
    return start_step, time.time() - t_train


def train_experiment(
    exp: Experiment,
    splits: DatasetSplits,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    log_fn: LogFn | None = None,
    progress: bool = True,
    resume: bool = True,
    max_iterations: int | None = None,
    split_version: str | None = None,
    mirror: DatasetSplits | None = None,
) -> TrainingSummary | PopulationSummary:
    """Train ``exp`` on ``splits['train']``, validating on ``splits['val']``; checkpoints under ``out_dir``.

    ``split_version`` (default: ``splits.content_hash()[:16]``) is written into every checkpoint's
    JSON with the experiment's config hash. With ``resume`` the run continues from the last checkpoint
    in ``out_dir`` (which must have been written by the same experiment config). ``max_iterations``
    caps the PPO updates of this call; a checkpoint is written at the end of every call so a later
    call continues where this one stopped. ``mirror`` (the mirror image's splits) is needed when the
    experiment sets ``ppo.mirror``. An experiment with ``ppo.seeds`` trains the whole population
    batched (:mod:`himari_pipeline.rl.stacked_ppo`), seed ``s`` under ``out_dir/seed_<s>``, and
    returns a :class:`PopulationSummary`.
    """
    t0 = time.time()
    if exp.torch_threads:
        torch.set_num_threads(int(exp.torch_threads))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chash = exp.config_hash()
    version = split_version or splits.content_hash()[:16]
    splits = exp.input_splits(splits)  # the columns the policy sees (the version names the whole splits)
    mirror = exp.input_splits(mirror) if mirror is not None else None
    n_features = splits["train"][exp.features_key].shape[1]
    policy_cfg = exp.policy_config(n_features=n_features)
    _check_splits(exp, splits, policy_cfg)
    ppo_cfg = exp.ppo_config(device=device)
    env_cfg = training_env_config(exp, splits["train"])
    markets = training_markets(exp, splits, mirror, device)
    provenance = {
        "experiment": exp.name,
        "experiment_config": exp.to_dict(),
        "config_hash": chash,
        "split_version": version,
        "features_key": exp.features_key,
        "feature_names": splits.feature_names,
        "drift_neutral": drift_neutral_options(exp, env_cfg),
        "runtime": runtime_info(),
    }
    if ppo_cfg.seeds is not None:
        return _train_population(
            exp, splits, out, markets, env_cfg, ppo_cfg, policy_cfg, provenance, device,
            log_fn=log_fn, progress=progress, resume=resume, max_iterations=max_iterations, t0=t0,
        )  # fmt: skip

    seed_everything(ppo_cfg.seed, ppo_cfg.torch_deterministic)
    policy = RegimeConditionedPolicy(policy_cfg)
    trainer = PPOTrainer(
        policy,
        markets,
        env_cfg,
        ppo_cfg,
        val_market=_market(splits["val"], exp.features_key, device),
        checkpoint_dir=out,
        provenance=provenance,
    )
    resumed_from = None
    last = last_checkpoint(out) if resume else None
    if last is not None:
        _check_resumable(last, exp, chash, version)
        trainer.load(last)
        resumed_from = trainer.global_step

    start_step, train_time = _train_with_progress(trainer, exp, progress, log_fn, max_iterations)
    end_ck = out / f"step_{trainer.global_step:09d}"
    if trainer.global_step > start_step and not end_ck.exists():
        trainer.save(end_ck, metrics={})
    return _run_summary(
        exp, chash, version, out, trainer.global_step, trainer.iteration, trainer.best, trainer.eval_history,
        trainer.collapsed, trainer.collapse_reasons, trainer.stop_reason, resumed_from,
        time.time() - t0, (trainer.global_step - start_step) / max(train_time, 1e-9),
    )  # fmt: skip


def drift_neutral_options(exp: Experiment, env_cfg: EnvConfig) -> dict:
    """Which drift-neutral training options a run used (recorded in its checkpoints and the report)."""
    demeaned = env_cfg.reward == "demeaned_pnl"
    return {
        "mirror": bool(exp.ppo_config().mirror),
        "demeaned_reward": demeaned,
        "drift_per_bar": float(env_cfg.reward_kwargs["drift"]) if demeaned else None,
    }


def _run_summary(
    exp, chash, version, out, global_step, iterations, best, history, collapsed, reasons, stop, resumed,
    wall, sps,
) -> TrainingSummary:  # fmt: skip
    best_dir = best_checkpoint(out)
    best_metrics: dict[str, float] = {}
    if best_dir is not None:
        best_metrics = load_checkpoint_meta(best_dir).get("metrics", {})
    return TrainingSummary(
        experiment=exp.name,
        config_hash=chash,
        split_version=version,
        out_dir=str(out),
        global_step=global_step,
        iterations=iterations,
        best_checkpoint=None if best_dir is None else str(best_dir),
        best_step=best.best_step,
        best_metric=best.metric,
        best_value=best.best_value,
        best_metrics=best_metrics,
        evaluations=_evaluations(history),
        collapsed=collapsed,
        collapse_reasons=list(reasons),
        early_stopped=stop is not None,
        stop_reason=stop,
        resumed_from_step=resumed,
        wall_time_s=wall,
        steps_per_s=sps,
    )


def _train_population(
    exp, splits, out, markets, env_cfg, ppo_cfg, policy_cfg, provenance, device, *, log_fn, progress,
    resume, max_iterations, t0,
) -> PopulationSummary:  # fmt: skip
    from himari_pipeline.rl.stacked_ppo import StackedPPOTrainer, seed_run_dir

    trainer = StackedPPOTrainer(
        markets,
        env_cfg,
        ppo_cfg,
        policy_cfg,
        val_market=_market(splits["val"], exp.features_key, device),
        checkpoint_dir=out,
        provenance=provenance,
    )
    runs = [seed_run_dir(out, s) for s in trainer.seeds]
    lasts = [last_checkpoint(r) for r in runs] if resume else []
    resumed_from = None
    if lasts and all(p is not None for p in lasts):
        for p in lasts:
            _check_resumable(p, exp, provenance["config_hash"], provenance["split_version"])
        trainer.load(lasts)
        resumed_from = trainer.global_step
    elif any(p is not None for p in lasts):
        raise ValueError(f"{out}: checkpoints of some seeds only; use another out_dir or resume=False")
    start_step, train_time = _train_with_progress(trainer, exp, progress, log_fn, max_iterations)
    if trainer.global_step > start_step and not (runs[0] / f"step_{trainer.global_step:09d}").exists():
        trainer.save_all(out)
    sps = (trainer.global_step - start_step) / max(train_time, 1e-9)
    seeds = [
        _run_summary(
            exp,
            provenance["config_hash"],
            provenance["split_version"],
            runs[s],
            trainer.global_step,
            trainer.iteration,
            trainer.best[s],
            trainer.eval_history[s],
            trainer.collapsed[s],
            trainer.collapse_reasons[s],
            trainer.stop_reason[s],
            resumed_from,
            time.time() - t0,
            sps,
        )  # fmt: skip
        for s in range(trainer.n)
    ]
    return PopulationSummary(
        experiment=exp.name,
        config_hash=provenance["config_hash"],
        split_version=provenance["split_version"],
        out_dir=str(out),
        seeds=list(trainer.seeds),
        runs=seeds,
        wall_time_s=time.time() - t0,
        steps_per_s=sps * trainer.n,
    )


def reward_scale_preflight(
    exp: Experiment, splits: DatasetSplits, steps: int = 64, num_envs: int = 64
) -> None:
    """Fail before training when ``exp``'s reward is absurdly scaled on the train split (its input columns).

    Steps ``num_envs`` envs with uniformly random actions for ``steps`` steps (fixed seeds) and runs
    :func:`~himari_pipeline.rl.rewards.reward_scale_diagnostic` on the rewards; raises
    :class:`~himari_pipeline.rl.rewards.RewardScaleError` naming the experiment and its reward.
    """
    market = MarketArrays.from_split(exp.input_splits(splits)["train"], features_key=exp.features_key)
    env = VecTradingEnv(market, exp.env_config(), num_envs=num_envs, seed=0)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    rewards = [env.step(torch.randint(0, 3, (num_envs,), generator=gen))[1] for _ in range(steps)]
    try:
        reward_scale_diagnostic(torch.stack(rewards))
    except RewardScaleError as exc:
        raise RewardScaleError(f"experiment {exp.name!r}, reward {exp.env.get('reward')!r}: {exc}") from None


def load_checkpoint_meta(checkpoint_dir: str | Path) -> dict:
    """The JSON metadata of one checkpoint directory."""
    return json.loads((Path(checkpoint_dir) / META_FILE).read_text())


# --------------------------------------------------------------------------- evaluation of a checkpoint
def evaluate_checkpoint(
    checkpoint_dir: str | Path,
    split: SplitArrays,
    *,
    features_key: str | None = None,
    temperature: float = 0.5,
    seed: int | None = None,
    device: str = "cpu",
) -> dict:
    """Replay a checkpoint's policy over a whole split (greedy and sampled at ``temperature``).

    Returns ``{"metrics": {...}, "greedy": series, "temp": series}`` where each series is a dict of numpy
    arrays aligned per decision: ``t`` (row in the split), ``timestamp``, ``action`` (0 flat, 1 long,
    2 short), ``position``, ``net_return`` (position * returns[t+1] - costs) and ``regime``. Costs and
    rules come from the checkpoint's env config; ``features_key`` defaults to the one it was trained on.
    A checkpoint trained on an experiment's ``features`` needs the split cut to them
    (``splits.select_features(meta["feature_names"])``).
    """
    ck = load_checkpoint(checkpoint_dir, device=device)
    meta = ck.meta
    pcfg = PolicyConfig.from_dict(meta["policy_config"])
    policy = RegimeConditionedPolicy(pcfg)
    policy.load_state_dict(ck.model, strict=True)
    env_cfg = EnvConfig(**meta["env_config"])
    from himari_pipeline.rl.ppo import PPOConfig, evaluate_policies

    ppo_cfg = PPOConfig.from_dict(
        {**meta["ppo_config"], "device": device, "eval_temperature": temperature, "eval_greedy": True}
    )
    if seed is not None:
        ppo_cfg = dataclasses.replace(ppo_cfg, eval_seed=seed)
    key = features_key or meta.get("features_key", "features_denoised")
    market = _market(split, key, device)
    if market.features.shape[1] != pcfg.n_features:
        raise ValueError(
            f"{checkpoint_dir}: the policy reads {pcfg.n_features} features, the split has "
            f"{market.features.shape[1]}; pass splits.select_features({meta.get('feature_names')})[segment]"
        )
    result = evaluate_policies([policy], market, env_cfg, ppo_cfg, [ppo_cfg.seed])[0]
    out: dict = {"metrics": result.metrics, "checkpoint": str(checkpoint_dir), "step": int(meta["step"])}
    ts = np.asarray(split.timestamps)
    for mode, s in result.series.items():
        series = {k: v.detach().cpu().numpy() for k, v in s.items()}
        series["timestamp"] = ts[series["t"]]
        out[mode] = series
    return out


def series_metrics(net: np.ndarray, actions: np.ndarray, bars_per_year: float) -> dict[str, float]:
    """Annualized Sharpe, total return and action shares of one replayed series."""
    m = return_metrics(torch.as_tensor(net, dtype=torch.float64), bars_per_year)
    m.update(action_shares(torch.as_tensor(actions, dtype=torch.long)))
    return m
