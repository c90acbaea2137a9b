"""The gate's power and size across market seeds: one experiment on planted and null markets.

Runs ``himari run -e EXPERIMENT -d SYNTH-PLANTED-S<n>_<tf>`` and ``... -d SYNTH-NULL-S<n>_<tf>`` for each
market seed (one subprocess and one lake per dataset, ``--jobs`` at a time), then prints one markdown
row per dataset from its validation summary and writes them to ``<out>/gate_power.csv``. A powerful,
well-sized gate passes most planted seeds and no null seed.

Run: ``.venv/bin/python scripts/gate_power.py -e default --seeds 0 1 2 3 4 --jobs 2 --out /tmp/power``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from himari_pipeline.defs.partitions import lake_partition
from himari_pipeline.defs.validation_assets import SUMMARY
from himari_pipeline.storage.lake import Lake

HIMARI = str(Path(sys.executable).with_name("himari"))
COLUMNS = ["val_sharpe", "test_sharpe", "live_sharpe", "live_bh_sharpe", "dsr", "perm_pvalue"]


def run_one(experiment: str, key: str, out: Path) -> dict:
    """``himari run`` of ``experiment`` on ``key`` in its own lake; the summary row (or the error)."""
    home = out / key
    env = {**os.environ, "HIMARI_LAKE_ROOT": str(home / "lake"), "DAGSTER_HOME": str(home / "dagster_home")}
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    done = subprocess.run(
        [HIMARI, "run", "-e", experiment, "-d", key], env=env, capture_output=True, text=True
    )
    (home / "himari_run.log").write_text(done.stdout + done.stderr)
    row = {"dataset": key, "seconds": round(time.perf_counter() - start)}
    if done.returncode != 0:
        return {**row, "verdict": "ERROR", "reasons": (done.stdout + done.stderr)[-300:]}
    summary = Lake(home / "lake").read_table(SUMMARY, lake_partition(experiment, key)).iloc[-1]
    return {**row, "verdict": summary["verdict"], **{c: float(summary[c]) for c in COLUMNS},
            "reasons": str(summary["reasons"] or "")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-e", "--experiment", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--timeframe", default="1h")
    ap.add_argument("--variants", nargs="+", default=["PLANTED", "NULL"], choices=["PLANTED", "NULL"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("gate_power"))
    args = ap.parse_args()
    keys = [f"SYNTH-{v}-S{s}_{args.timeframe}" for v in args.variants for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda k: run_one(args.experiment, k, args.out), keys))
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "gate_power.csv", index=False)
    print(f"| dataset | verdict | {' | '.join(COLUMNS)} | reasons |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    for r in rows:
        nums = " | ".join(f"{r[c]:.2f}" if c in r else "" for c in COLUMNS)
        print(f"| {r['dataset']} | {r['verdict']} | {nums} | {r['reasons'][:120]} |")
    planted = [r for r in rows if "PLANTED" in r["dataset"]]
    null = [r for r in rows if "NULL" in r["dataset"]]
    passed = [sum(r["verdict"] == "PASS" for r in rows_) for rows_ in (planted, null)]
    print(
        f"\n{args.experiment}: PASS on {passed[0]}/{len(planted)} planted seeds, {passed[1]}/{len(null)} null"
    )


if __name__ == "__main__":
    main()
