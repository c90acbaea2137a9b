"""Raw VecTradingEnv throughput on random actions against the 1M env-steps/s target.

Run: ``PYTHONPATH=. python benchmarks/bench_env.py [--num-envs 4096] [--steps 300] [--threads 1]``.
Prints the median steps/s of ``--repeats`` runs, with actions drawn inside the timed loop and with a
pre-drawn action pool, each as a ratio to the 1,000,000 env-steps/s target, for the plain env, with
min-hold/cooldown masks, with the stateful ``sortino`` reward, with ``adaptive_regime`` and with
carry and borrow charged across missing bars (1 % of bars follow a gap). The
machine is shared: run it a few times and with ``--threads 1`` (thread handoffs dominate under load).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from himari_pipeline.rl.env import EnvConfig, MarketArrays, VecTradingEnv

TARGET = 1_000_000


def synthetic_market(
    n_bars: int, n_features: int, device: str, seed: int = 0, gap_share: float = 0.0
) -> MarketArrays:
    rng = np.random.default_rng(seed)
    ret = rng.standard_t(4, n_bars) * 0.005
    ret[0] = np.nan
    prices = 100.0 * np.cumprod(1.0 + np.nan_to_num(ret))
    feats = rng.standard_normal((n_bars, n_features)).astype(np.float32)
    regimes = rng.integers(0, 4, n_bars).astype(np.int8)
    gaps = np.where(rng.random(n_bars) < gap_share, 3, 0) if gap_share else None
    return MarketArrays.from_numpy(feats, regimes, ret, prices, device=device, gap_before=gaps)


def bench(env: VecTradingEnv, steps: int, pooled: bool) -> float:
    n = env.num_envs
    gen = torch.Generator(device=env.device).manual_seed(1)
    pool = torch.randint(0, 3, (64, n), generator=gen, device=env.device)
    env.reset()
    for i in range(20):  # warm-up
        env.step(pool[i % 64])
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        a = pool[i % 64] if pooled else torch.randint(0, 3, (n,), generator=gen, device=env.device)
        env.step(a)
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--num-envs", type=int, default=4096)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--bars", type=int, default=50_000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case; the median is printed")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    market = synthetic_market(args.bars, 44, args.device)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
        f"num_envs {args.num_envs}, steps {args.steps}"
    )
    cases = [
        ("pnl, no masks", EnvConfig(context=100, episode_length=1024)),
        ("pnl, min_hold=2 cooldown=4", EnvConfig(context=100, episode_length=1024, min_hold=2, cooldown=4)),
        (
            "sortino, masks, carry+borrow",
            EnvConfig(
                context=100,
                episode_length=1024,
                min_hold=2,
                cooldown=4,
                carry_cost=5e-5,
                borrow_rate_annual=0.0675,
                reward="sortino",
            ),
        ),
        ("adaptive_regime", EnvConfig(context=100, episode_length=1024, reward="adaptive_regime")),
        (
            "carry+borrow, 1 % after gaps",
            EnvConfig(context=100, episode_length=1024, carry_cost=5e-5, borrow_rate_annual=0.0675),
        ),
    ]
    gapped = synthetic_market(args.bars, 44, args.device, gap_share=0.01)
    for name, cfg in cases:
        m = gapped if "gaps" in name else market
        env = VecTradingEnv(m, cfg, args.num_envs, device=args.device, seed=0)
        for pooled in (False, True):
            sps = float(np.median([bench(env, args.steps, pooled) for _ in range(args.repeats)]))
            how = "pre-drawn actions" if pooled else "randint per step"
            print(f"{name:32s} {how:18s} {sps:14,.0f} steps/s  ratio to 1M target {sps / TARGET:5.2f}")


if __name__ == "__main__":
    main()
