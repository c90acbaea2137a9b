"""PPO training throughput (small vs full policy, 1 vs 2 torch threads) and peak memory of the full profile.

Run: ``python benchmarks/bench_training.py [--iterations 3] [--skip-5m]``.

1. Builds the default 1h synthetic splits (SYNTH-PLANTED, 2020-2025) and measures PPO env-steps/s
   (rollout + update, no validation) of the ``default`` (small) and ``log001_full`` (full) experiments
   for a few iterations each. The small policy runs with 1 and with 2 torch threads (the reference
   it is compared against in the same run); the full one with its rollout shape cut to fit a CPU.
2. Generates the 5-minute synthetic market 2020-2025 (~631k bars), runs features -> EKF -> regimes
   -> splits and a couple of PPO iterations of ``log001_full`` through ``train_experiment``, and
   prints the process's peak resident memory (``resource.getrusage``) after each stage.
3. One validation of the ``default`` policy over the 1h validation split, greedy and tempered: the
   batched numpy replay the trainer uses (``rl/replay.py``) against its reference, the env stepped
   bar by bar (``replay_in_env``), with the ratio.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time

import torch

from himari_pipeline.rl.env import MarketArrays
from himari_pipeline.rl.experiments import Experiment, load_experiment
from himari_pipeline.rl.policy import RegimeConditionedPolicy, count_parameters
from himari_pipeline.rl.ppo import PPOTrainer, evaluate_policies, seed_everything
from himari_pipeline.rl.replay import replay_in_env
from himari_pipeline.rl.training import build_synthetic_splits, train_experiment


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def with_ppo(exp: Experiment, **ppo: object) -> Experiment:
    d = exp.to_dict()
    for k, v in ppo.items():
        (d["selection"] if k in d["selection"] else d["ppo"])[k] = v
    return Experiment.from_dict(d)


def ppo_steps_per_s(exp: Experiment, splits, iterations: int, threads: int) -> tuple[float, int]:
    """Env steps/s of ``iterations`` PPO iterations after one warm-up iteration (no validation)."""
    torch.set_num_threads(threads)
    market = MarketArrays.from_split(splits["train"], features_key=exp.features_key)
    ppo = exp.ppo_config()
    seed_everything(ppo.seed)
    policy = RegimeConditionedPolicy(exp.policy_config(n_features=market.num_features))
    trainer = PPOTrainer(policy, market, exp.env_config(), ppo)
    trainer.train(max_iterations=1)
    start_step, start = trainer.global_step, time.perf_counter()
    trainer.train(max_iterations=iterations)
    return (trainer.global_step - start_step) / (time.perf_counter() - start), count_parameters(policy)


def validation_seconds(exp: Experiment, splits) -> tuple[float, float]:
    """Seconds of one validation (greedy + tempered) by the batched replay and by the env reference."""
    torch.set_num_threads(1)
    market = MarketArrays.from_split(splits["val"], features_key=exp.features_key)
    seed_everything(1)
    policy = RegimeConditionedPolicy(exp.policy_config(n_features=market.num_features))
    env_cfg, ppo = exp.env_config(), exp.ppo_config()
    t0 = time.perf_counter()
    evaluate_policies([policy], market, env_cfg, ppo, [ppo.seed])
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for temperature in (None, ppo.eval_temperature):
        replay_in_env(policy, market, env_cfg, temperature, ppo.seed)
    return batched, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--skip-5m", action="store_true", help="skip the 5-minute peak-memory run")
    args = ap.parse_args()

    t0 = time.perf_counter()
    splits = build_synthetic_splits("planted", seed=7, timeframe="1h")
    print(f"1h splits built in {time.perf_counter() - t0:.1f}s: "
          f"{ {k: v.n_samples for k, v in splits.splits.items()} }")  # fmt: skip

    small = load_experiment("default")
    batched, stepped = validation_seconds(small, splits)
    print(f"validation of default over {splits['val'].n_samples:,} bars (greedy + tempered): batched replay "
          f"{batched:.2f}s, env stepped bar by bar {stepped:.2f}s: {stepped / batched:.1f}x")  # fmt: skip
    for threads in (1, 2):
        sps, n_params = ppo_steps_per_s(small, splits, args.iterations, threads)
        print(f"small policy ({n_params:,} params), {small.ppo['num_envs']}x{small.ppo['num_steps']} "
              f"rollout, {threads} thread(s): {sps:,.0f} env-steps/s")  # fmt: skip

    full = with_ppo(load_experiment("log001_full"), num_envs=8, num_steps=64, num_minibatches=2)
    env = dict(full.env, bars_per_year=8760.0, episode_length=512)
    full_1h = Experiment.from_dict({**full.to_dict(), "env": env})
    for threads in (1, 2):
        sps, n_params = ppo_steps_per_s(full_1h, splits, max(1, args.iterations - 1), threads)
        print(f"full policy ({n_params:,} params), 8x64 rollout on 1h, {threads} thread(s): "
              f"{sps:,.0f} env-steps/s")  # fmt: skip
    del splits

    if args.skip_5m:
        return
    print(f"peak RSS before the 5m run: {peak_rss_mib():,.0f} MiB")
    t0 = time.perf_counter()
    splits5 = build_synthetic_splits("planted", seed=7, timeframe="5m")
    n_bars = sum(v.n_samples for v in splits5.splits.values())
    print(f"5m splits built in {time.perf_counter() - t0:.1f}s ({n_bars:,} bars in the four splits); "
          f"peak RSS {peak_rss_mib():,.0f} MiB")  # fmt: skip
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = train_experiment(
            with_ppo(load_experiment("log001_full"), num_envs=8, num_steps=64, num_minibatches=2),
            splits5,
            out,
            progress=False,
            max_iterations=2,
        )
        print(f"log001_full (8x64 rollout) on 5m: {summary.global_step} steps in "
              f"{time.perf_counter() - t0:.1f}s ({summary.steps_per_s:,.0f} env-steps/s); "
              f"peak RSS {peak_rss_mib():,.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
