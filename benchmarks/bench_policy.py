"""Policy encoder speed: one-pass stretch encoding vs naive per-step windows, and PPO-style throughput.

Run: ``python benchmarks/bench_policy.py [--rows 512] [--threads N]``.  Prints the speed-up of
``encode_stretch`` over ``encode_windows`` (same outputs, checked) for the full config at context 100,
and forward+backward samples/s of an env-minibatch PPO pass for the small and full configs.
"""

from __future__ import annotations

import argparse
import time

import torch

from himari_pipeline.rl.policy import PolicyConfig, RegimeConditionedPolicy, count_parameters


def _best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_encoders(cfg: PolicyConfig, rows: int, repeat: int) -> dict[str, float]:
    """Seconds to encode ``rows`` consecutive decision bars both ways (inference, no grad)."""
    torch.manual_seed(0)
    policy = RegimeConditionedPolicy(cfg).eval()
    c = cfg.context
    feats = torch.randn(rows + c - 1, cfg.n_features)
    regs = torch.randint(0, cfg.n_regimes, (rows + c - 1,))
    ends = torch.arange(c - 1, rows + c - 1)
    window = ends[:, None] + torch.arange(-c + 1, 1)[None, :]
    with torch.no_grad():
        stretch = policy.encode_indices(feats, regs, ends)
        naive = policy.encode_windows(feats[window], regs[window])
        max_diff = float((stretch - naive).abs().max())
        t_naive = _best_of(lambda: policy.encode_windows(feats[window], regs[window]), repeat)
        t_stretch = _best_of(lambda: policy.encode_indices(feats, regs, ends), repeat)
    return {
        "naive_s": t_naive,
        "stretch_s": t_stretch,
        "speedup": t_naive / t_stretch,
        "max_abs_diff": max_diff,
    }


def bench_ppo_pass(cfg: PolicyConfig, envs: int, steps: int, repeat: int) -> dict[str, float]:
    """Forward + backward of heads over ``envs`` contiguous stretches of ``steps`` decisions each."""
    torch.manual_seed(0)
    policy = RegimeConditionedPolicy(cfg).train()
    n_bars = 4 * envs * steps + cfg.context
    feats = torch.randn(n_bars, cfg.n_features)
    regs = torch.randint(0, cfg.n_regimes, (n_bars,))
    starts = cfg.context - 1 + torch.arange(envs) * 4 * steps  # disjoint stretches
    t = starts[None, :] + torch.arange(steps)[:, None]  # (steps, envs)
    state = torch.zeros(steps * envs, 3)

    def step() -> None:
        policy.zero_grad()
        enc = policy.encode_indices(feats, regs, t).reshape(-1, cfg.d_model)
        logits, value = policy.heads(enc, regs[t].reshape(-1), state)
        (torch.log_softmax(logits, -1)[:, 0].mean() + value.pow(2).mean()).backward()

    secs = _best_of(step, repeat)
    return {"seconds": secs, "samples_per_s": envs * steps / secs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=512, help="decision bars encoded per measurement")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    full = PolicyConfig.full()
    n_params = count_parameters(RegimeConditionedPolicy(full))
    print(f"full config: {n_params:,} parameters, attention windows {full.attn_windows}")
    r = bench_encoders(full, args.rows, args.repeat)
    print(
        f"encode {args.rows} bars at context {full.context}: naive windows {r['naive_s'] * 1e3:.1f} ms, "
        f"one-pass stretch {r['stretch_s'] * 1e3:.1f} ms -> speed-up {r['speedup']:.1f}x "
        f"(max |diff| {r['max_abs_diff']:.2e})"
    )
    for name, cfg, envs in (("small", PolicyConfig.small(), 8), ("full", full, 4)):
        p = bench_ppo_pass(cfg, envs=envs, steps=128, repeat=args.repeat)
        print(
            f"PPO minibatch fwd+bwd, {name} ({envs} envs x 128 steps): {p['seconds'] * 1e3:.1f} ms, "
            f"{p['samples_per_s']:.0f} samples/s"
        )


if __name__ == "__main__":
    main()
