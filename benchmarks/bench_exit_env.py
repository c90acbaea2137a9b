"""VecExitEnv throughput (4,096 trades at once, masked random actions) against the 1M steps/s target,
next to the trading env on the same machine in the same run.

Run: ``PYTHONPATH=. python benchmarks/bench_exit_env.py [--num-envs 4096] [--steps 300] [--threads 1]``.
Prints the median steps/s of ``--repeats`` runs and the ratios to the target and to ``VecTradingEnv``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from himari_pipeline.exits.env import ExitConfig, ExitMarket, VecExitEnv
from himari_pipeline.rl.env import EnvConfig, MarketArrays, VecTradingEnv

TARGET = 1_000_000


def bars(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.r_[close[0], close[:-1]]
    return {
        "open": open_,
        "high": np.maximum(open_, close) * 1.001,
        "low": np.minimum(open_, close) * 0.999,
        "close": close,
    }


def time_exit_env(n_envs: int, steps: int, n_bars: int) -> float:
    b = bars(n_bars)
    rng = np.random.default_rng(1)
    entries = np.sort(rng.choice(np.arange(20, n_bars - 100), 5_000, replace=False))
    env = VecExitEnv(
        ExitMarket.from_numpy(b, entries, rng.choice([-1.0, 1.0], len(entries))), ExitConfig(), n_envs
    )
    gen = torch.Generator().manual_seed(0)
    uniforms = torch.rand((64, n_envs, 5), generator=gen)
    for i in range(20):
        env.step((uniforms[i % 64] * env.action_mask()).argmax(1))
    t0 = time.perf_counter()
    for i in range(steps):
        env.step((uniforms[i % 64] * env.action_mask()).argmax(1))  # a random allowed action
    return steps * n_envs / (time.perf_counter() - t0)


def time_trading_env(n_envs: int, steps: int, n_bars: int) -> float:
    rng = np.random.default_rng(0)
    ret = rng.normal(0, 0.003, n_bars)
    ret[0] = np.nan
    market = MarketArrays.from_numpy(
        rng.standard_normal((n_bars, 8)).astype(np.float32), np.zeros(n_bars, np.int8), ret, np.ones(n_bars)
    )
    env = VecTradingEnv(market, EnvConfig(episode_length=256), n_envs)
    pool = torch.randint(0, 3, (64, n_envs), generator=torch.Generator().manual_seed(1))
    env.reset()
    for i in range(20):
        env.step(pool[i % 64])
    t0 = time.perf_counter()
    for i in range(steps):
        env.step(pool[i % 64])
    return steps * n_envs / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--num-envs", type=int, default=4096)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--bars", type=int, default=50_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    exit_sps = statistics.median(
        time_exit_env(args.num_envs, args.steps, args.bars) for _ in range(args.repeats)
    )
    trade_sps = statistics.median(
        time_trading_env(args.num_envs, args.steps, args.bars) for _ in range(args.repeats)
    )
    print(f"exit env: {exit_sps:,.0f} steps/s with {args.num_envs} trades ({exit_sps / TARGET:.2f}x target)")
    print(f"trading env: {trade_sps:,.0f} steps/s; exit / trading = {exit_sps / trade_sps:.2f}")


if __name__ == "__main__":
    main()
