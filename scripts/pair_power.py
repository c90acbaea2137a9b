"""The pair gate's power and size: the z-score rule (or a PPO experiment) on planted and null pairs.

For each seed, judges the built-in planted pair (a mean-reverting spread) and the null pair (two
independent random walks), or, with ``--goog``, the real daily GOOG bars (2004-2012) with a planted
or independent synthetic partner, and prints one markdown row per pair.

Run: ``.venv/bin/python scripts/pair_power.py --seeds 0 1 2 3 4 [-e pairs_default] [--goog]``
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd

from himari_pipeline.pairs.evaluate import PairConfig, evaluate_pair
from himari_pipeline.pairs.legs import align_legs, pair_bars_per_year
from himari_pipeline.pairs.synthetic import SyntheticPair, partner_of, synthetic_pair

COLUMNS = [
    "validation_sharpe",
    "test_sharpe",
    "live_sharpe",
    "live_buy_and_hold_sharpe",
    "dsr",
    "permutation_p",
]


def goog_pair(planted: bool, seed: int):
    """GOOG's real daily closes 2004-2012 and a synthetic partner, on XNYS."""
    from backtesting.test import GOOG

    closes = GOOG.loc[GOOG.index < "2013-01-01", "Close"]
    closes.index = closes.index.tz_localize("UTC") + pd.Timedelta(days=1)  # open time -> close time
    partner = partner_of(closes, SyntheticPair(planted=planted, seed=seed))
    return align_legs({"PARTNER": partner, "GOOG": closes}, pair_bars_per_year("1d", "XNYS"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("-e", "--experiment", default=None, help="a pair experiment (default: the z-score rule)")
    ap.add_argument("--goog", action="store_true", help="real GOOG with a synthetic partner")
    args = ap.parse_args()
    cfg = PairConfig()
    print(f"| pair | seed | verdict | {' | '.join(COLUMNS)} | seconds | first reason |")
    print("|---" * (len(COLUMNS) + 5) + "|")
    for planted in (True, False):
        for seed in args.seeds:
            start = time.perf_counter()
            legs = goog_pair(planted, seed) if args.goog else synthetic_pair(SyntheticPair(planted, seed))
            if args.experiment is None:
                ev = evaluate_pair(legs, cfg)
            else:
                from himari_pipeline.pairs.training import load_pair_experiment, train_pair_policy

                with tempfile.TemporaryDirectory() as tmp:
                    ev = train_pair_policy(legs, load_pair_experiment(args.experiment), cfg, tmp).evaluation
            nums = " | ".join(f"{ev.evidence[c]:.3f}" for c in COLUMNS)
            verdict = "**PASS**" if ev.verdict.passed else "FAIL"
            reason = (ev.verdict.reasons or [""])[0]
            name = ("planted" if planted else "null") + (" (GOOG)" if args.goog else "")
            print(f"| {name} | {seed} | {verdict} | {nums} | {time.perf_counter() - start:.0f} | {reason} |")


if __name__ == "__main__":
    main()
