"""A seed population against one seed: wall time of 5 seeds of ``default`` trained batched vs 1 seed.

Run: ``python benchmarks/bench_seeds.py [--timesteps 61440] [--seeds 1 2 3 4 5] [--threads 1 2]``.

Both runs go through :func:`~himari_pipeline.rl.training.train_experiment` on the default 1h
synthetic splits, validations and checkpoints included: the reference is ``default`` as shipped
(one seed, its ``torch_threads``), the population is the same experiment with ``ppo.seeds``. The
run is shortened to ``--timesteps`` env steps per seed (default 61,440: two of the shipped
validations, ``eval_every`` 30,720, as in the full 300,000-step run's proportion of validation to
training). ``--threads`` also times the population with more torch threads (the single seed is
timed with the experiment's own setting). Prints each wall time and its ratio to the one seed;
the target is a ratio of at most 2.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from himari_pipeline.rl.experiments import Experiment, load_experiment
from himari_pipeline.rl.training import build_synthetic_splits, train_experiment


def variant(exp: Experiment, timesteps: int, seeds: list[int] | None, threads: int | None) -> Experiment:
    d = exp.to_dict()
    d["ppo"]["total_timesteps"] = timesteps
    if seeds is not None:
        d["ppo"]["seeds"] = seeds
    if threads is not None:
        d["torch_threads"] = threads
    return Experiment.from_dict(d)


def wall_time(exp: Experiment, splits) -> tuple[float, object]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = train_experiment(exp, splits, out, progress=False, resume=False)
        return time.perf_counter() - start, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timesteps", type=int, default=61_440)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument(
        "--threads", type=int, nargs="*", default=[2], help="extra population runs with N threads"
    )
    args = ap.parse_args()

    splits = build_synthetic_splits("planted", seed=7, timeframe="1h")
    base = load_experiment("default")
    print(f"default, {args.timesteps:,} env steps per seed (shipped: {base.ppo['total_timesteps']:,}), "
          f"{torch.get_num_threads()} torch threads available")  # fmt: skip

    one, summary = wall_time(variant(base, args.timesteps, None, None), splits)
    print(f"1 seed  ({base.torch_threads} thread): {one:7.1f} s, best val Sharpe {summary.best_value:.2f}")
    runs = [(base.torch_threads, None), *[(t, t) for t in args.threads if t != base.torch_threads]]
    for threads, override in runs:
        elapsed, pop = wall_time(variant(base, args.timesteps, args.seeds, override), splits)
        best = ", ".join(f"{r.best_value:.2f}" for r in pop.runs)
        label = f"{len(args.seeds)} seeds ({threads} thread{'s' if threads > 1 else ''})"
        print(f"{label}: {elapsed:7.1f} s, ratio {elapsed / one:.2f}x one seed (target <= 2x); "
              f"best val Sharpe per seed {best}")  # fmt: skip


if __name__ == "__main__":
    main()
