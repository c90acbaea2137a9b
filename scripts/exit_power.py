"""The exit gate's power and size: an exit rule or a PPO exit experiment on planted and null markets.

For each market seed, judges the subject on the built-in planted market (trend regimes) and on the
null market (a random walk with the same volatility), both hourly 2020-2025 with the pipeline's split
plan and breakout entries, and prints one markdown row per market. Subjects: the trend-reversal rule
(default; ``--window``/``--threshold``) or ``-e NAME`` (an exit experiment, trained per market).

Run: ``.venv/bin/python scripts/exit_power.py --seeds 0 1 2 3 4 [-e exit_default]``
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from himari_pipeline.exits.configs import EntryRule, ExitConfig
from himari_pipeline.exits.data import synthetic_data
from himari_pipeline.exits.verdict import evaluate_exits

COLUMNS = [
    "validation_sharpe",
    "test_sharpe",
    "live_sharpe",
    "live_buy_and_hold_sharpe",
    "dsr",
    "permutation_p",
    "live_permutation_p",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("-e", "--experiment", default=None, help="an exit experiment (default: the trend rule)")
    ap.add_argument("--window", type=int, default=120)
    ap.add_argument("--threshold", type=float, default=0.0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # thousands of tiny tensor ops: one thread is fastest, and fair to the timings
    print(f"| market | seed | verdict | {' | '.join(COLUMNS)} | test mean | fixed stops | s | reason |")
    print("|---" * (len(COLUMNS) + 7) + "|")
    for variant in ("planted", "null"):
        for seed in args.seeds:
            t0 = time.time()
            data = synthetic_data(variant, seed)
            if args.experiment:
                from himari_pipeline.exits.experiments import load_exit_experiment
                from himari_pipeline.exits.training import train_exit_experiment

                with tempfile.TemporaryDirectory() as tmp:
                    _, ev = train_exit_experiment(data, load_exit_experiment(args.experiment), tmp)
            else:
                from himari_pipeline.exits.training import rule_subject

                cfg = ExitConfig(stop_loss=0.03, take_profit=0.06, max_hold=96, min_exit_bar=3)
                subject = rule_subject(data, args.window, args.threshold)
                ev = evaluate_exits(data, EntryRule().entries(data.bars), cfg, subject)
            e = ev.evidence
            test = ev.table.loc["test"]
            reason = ev.verdict.reasons[0] if ev.verdict.reasons else ""
            print(
                f"| {variant} | {seed} | {'PASS' if ev.verdict.passed else 'FAIL'} | "
                + " | ".join(f"{e[c]:.3f}" for c in COLUMNS)
                + f" | {test.loc[ev.subject, 'mean_return']:+.3%}"
                + f" | {test.loc['fixed_stops', 'mean_return']:+.3%}"
                + f" | {time.time() - t0:.0f} | {reason} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
