"""A seed population judged as one: per-seed rows, the spread of the test Sharpe, the population rule.

One training seed is one draw: reruns of one config can land anywhere from a Sharpe near 0 to a
large one. A population (``ppo.seeds`` in the experiment) is therefore reported and gated as a whole:

* every seed's selected checkpoint gets the full validation report, and each of those reports counts
  **every evaluated checkpoint of every seed** as a trial in its Deflated Sharpe (selecting among
  S seeds is S times the search of one);
* the distribution of the test Sharpe across seeds: median, interquartile mean (IQM: the mean of the
  middle half), min-max and a bootstrap interval of the median (seeds resampled with replacement);
* the **population rule** (:data:`POPULATION_RULE`): the population passes when the median seed
  passes, i.e. at least half of the seeds pass the gate, and no seed is ruined in the live year.
  One lucky seed cannot pass a population, and one ruined seed fails it.

The report shown for a population is the report of its median seed (by test Sharpe) with a
population section added and the population's verdict in place of the seed's.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "POPULATION_RULE",
    "SEED_COLUMNS",
    "PopulationReport",
    "PopulationVerdict",
    "SeedResult",
    "SharpeDistribution",
    "build_population_report",
    "build_run_report",
    "interquartile_mean",
    "judge_population",
    "population_trials",
    "seed_run_dirs",
    "sharpe_distribution",
]

POPULATION_RULE = (
    "a seed population passes when its median seed passes the gate (at least half of the seeds pass) "
    "and no seed is ruined in the live year"
)
SEED_COLUMNS: tuple[str, ...] = (
    "seed",
    "selected_step",
    "val_sharpe",
    "test_sharpe",
    "live_sharpe",
    "dsr",
    "psr",
    "verdict",
    "ruined",
    "reasons",
)
_SEED_DIR = re.compile(r"^seed_(-?\d+)$")


@dataclass(frozen=True)
class SeedResult:
    """One seed's row: its selected checkpoint's report numbers and verdict."""

    seed: int
    selected_step: int
    val_sharpe: float
    test_sharpe: float
    live_sharpe: float
    dsr: float
    psr: float
    passed: bool
    ruined: bool
    reasons: tuple[str, ...] = ()

    @classmethod
    def from_report(cls, seed: int, report) -> SeedResult:
        """From a seed's :class:`~himari_pipeline.evaluation.report.ValidationReport`."""
        ev = report.evidence
        return cls(
            seed=int(seed),
            selected_step=int(report.checkpoint_step),
            val_sharpe=float(ev.validation_sharpe),
            test_sharpe=float(ev.test_sharpe),
            live_sharpe=float(ev.live_sharpe),
            dsr=float(ev.dsr),
            psr=float(ev.psr),
            passed=bool(report.verdict.passed),
            ruined=bool(ev.live_ruined),
            reasons=tuple(report.verdict.reasons),
        )

    def row(self) -> dict:
        d = dataclasses.asdict(self)
        d["verdict"] = "PASS" if d.pop("passed") else "FAIL"
        d["reasons"] = "; ".join(self.reasons)
        return {k: d[k] for k in SEED_COLUMNS}


def seed_table(rows: Sequence[SeedResult]) -> pd.DataFrame:
    """The per-seed rows (columns :data:`SEED_COLUMNS`)."""
    table = pd.DataFrame([r.row() for r in rows], columns=list(SEED_COLUMNS))
    return table.astype({"seed": "int64", "selected_step": "int64", "ruined": bool})


# --------------------------------------------------------------------------- distribution
def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the middle half (25 % trimmed from each end, fractional weights at the cut points)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0:
        return float("nan")
    lo, hi = 0.25 * n, 0.75 * n
    edges = np.arange(n + 1)  # value i covers [i, i + 1) of the sorted ranks
    weight = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, 1.0)
    return float(np.sum(weight * x) / np.sum(weight))


@dataclass(frozen=True)
class SharpeDistribution:
    """The test Sharpe across seeds: median, IQM, min-max and a bootstrap interval of the median."""

    n: int
    median: float
    iqm: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    level: float

    def table(self) -> pd.DataFrame:
        pct = f"{self.level:.0%}"
        return pd.DataFrame(
            {
                "statistic": [
                    "seeds",
                    "median",
                    "IQM",
                    "min",
                    "max",
                    f"median {pct} low",
                    f"median {pct} high",
                ],
                "test Sharpe": [self.n, self.median, self.iqm, self.min, self.max, self.ci_low, self.ci_high],
            }
        )


def sharpe_distribution(
    sharpes: Sequence[float], level: float = 0.9, n_boot: int = 2000, seed: int = 0
) -> SharpeDistribution:
    """Median, IQM, range and a percentile-bootstrap ``level`` interval of the median (NaN seeds dropped)."""
    x = np.asarray([v for v in sharpes if math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        nan = float("nan")
        return SharpeDistribution(0, nan, nan, nan, nan, nan, nan, level)
    rng = np.random.default_rng(seed)
    boots = np.median(x[rng.integers(0, x.size, size=(n_boot, x.size))], axis=1)
    tail = (1 - level) / 2
    return SharpeDistribution(
        n=int(x.size),
        median=float(np.median(x)),
        iqm=interquartile_mean(x),
        min=float(x.min()),
        max=float(x.max()),
        ci_low=float(np.quantile(boots, tail)),
        ci_high=float(np.quantile(boots, 1 - tail)),
        level=level,
    )


# --------------------------------------------------------------------------- the rule
@dataclass(frozen=True)
class PopulationVerdict:
    passed: bool
    n_passed: int
    n_seeds: int
    reasons: tuple[str, ...] = ()
    rule: str = POPULATION_RULE


def judge_population(rows: Sequence[SeedResult]) -> PopulationVerdict:
    """:data:`POPULATION_RULE` applied to the seeds' rows."""
    n = len(rows)
    n_passed = sum(r.passed for r in rows)
    reasons = []
    if n == 0:
        reasons.append("no seed was judged")
    elif 2 * n_passed < n:
        reasons.append(f"only {n_passed} of {n} seeds pass the gate; the median seed fails")
    ruined = [r.seed for r in rows if r.ruined]
    if ruined:
        reasons.append(f"seed(s) {', '.join(map(str, ruined))} ruined in the live year")
    return PopulationVerdict(not reasons, n_passed, n, tuple(reasons))


# --------------------------------------------------------------------------- run folders
def seed_run_dirs(run_dir: str | Path) -> dict[int, Path]:
    """A population run's seed folders (``seed_<s>``), by seed; empty for a single-seed run."""
    run = Path(run_dir)
    found = {}
    for p in run.iterdir() if run.is_dir() else ():
        m = _SEED_DIR.match(p.name)
        if m and p.is_dir():
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def population_trials(run_dirs: Sequence[str | Path]) -> int:
    """Every evaluated checkpoint of every seed: the trials the Deflated Sharpe counts."""
    from himari_pipeline.evaluation.report.checkpoints import resolve_checkpoints

    return sum(resolve_checkpoints(d)[2] for d in run_dirs)


# --------------------------------------------------------------------------- equity curves
def seed_equity_curves(selected: dict[int, Path], splits, segments: Sequence[str] = ("test", "live")) -> dict:
    """Greedy net returns of each seed's selected checkpoint per segment, in one batched replay.

    Returns ``{segment: {seed: net returns}}``.
    """
    from himari_pipeline.evaluation.report.checkpoints import load_policy_checkpoint
    from himari_pipeline.rl.env import MarketArrays
    from himari_pipeline.rl.ppo import PPOConfig
    from himari_pipeline.rl.stacked_policies import StackedPolicies
    from himari_pipeline.rl.stacked_ppo import evaluate_stack

    seeds = list(selected)
    loaded = [load_policy_checkpoint(selected[s]) for s in seeds]
    stack = StackedPolicies([x.policy for x in loaded])
    first = loaded[0]
    cfg = PPOConfig.from_dict({**first.meta["ppo_config"], "seeds": None, "device": "cpu"})
    out: dict[str, dict[int, np.ndarray]] = {}
    for seg in segments:
        market = MarketArrays.from_split(first.inputs(splits)[seg], features_key=first.features_key)
        results = evaluate_stack(stack, market, first.env_cfg, cfg, seeds)
        mode = "greedy" if cfg.eval_greedy else "temp"
        out[seg] = {s: r.series[mode]["net_return"].numpy() for s, r in zip(seeds, results, strict=True)}
    return out


def equity_curves_plot(curves: dict[str, dict[int, np.ndarray]], title: str) -> bytes:
    """One panel per segment, one compounded equity line per seed."""
    from himari_pipeline.plots import _png, pyplot

    plt = pyplot()

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3), squeeze=False)
    for ax, (seg, by_seed) in zip(axes[0], curves.items(), strict=True):
        for seed, net in by_seed.items():
            ax.plot(np.cumprod(1.0 + np.asarray(net, dtype=np.float64)), lw=0.8, label=f"seed {seed}")
        ax.axhline(1.0, color="#999", lw=0.5)
        ax.set_title(f"{seg}: equity per seed (net)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------- the report
@dataclass
class PopulationReport:
    """Every seed's report, the rows, the distribution and the population verdict."""

    reports: dict[int, object]  # seed -> ValidationReport
    rows: list[SeedResult]
    distribution: SharpeDistribution
    verdict: PopulationVerdict
    n_trials: int
    equity_png: bytes | None = None

    @property
    def representative_seed(self) -> int:
        """The median seed by test Sharpe (the lower one of the middle two)."""
        ordered = sorted(self.rows, key=lambda r: (not math.isfinite(r.test_sharpe), r.test_sharpe))
        return ordered[(len(ordered) - 1) // 2].seed

    def table(self) -> pd.DataFrame:
        return seed_table(self.rows)

    def section(self):
        """The report's population section: rule, verdict, per-seed rows, distribution, equity curves."""
        from himari_pipeline.evaluation.report.document import Plot, Section

        v = self.verdict
        head = (
            f"**{'PASS' if v.passed else 'FAIL'}** ({v.n_passed} of {v.n_seeds} seeds pass the gate). "
            f"Rule: {v.rule}. Each seed's Deflated Sharpe counts all {self.n_trials} evaluated checkpoints "
            f"of all seeds as trials. The sections above are the median seed's "
            f"(seed {self.representative_seed})."
        )
        blocks: list = [head]
        if v.reasons:
            blocks.append("Why it fails: " + "; ".join(v.reasons) + ".")
        blocks += [self.table().drop(columns="reasons"), self.distribution.table()]
        if self.equity_png is not None:
            blocks.append(
                Plot("Equity of each seed's selected checkpoint", self.equity_png, "population_equity")
            )
        return Section("Seed population", blocks)

    def as_validation_report(self):
        """The median seed's report with the population section and the population's verdict."""
        from himari_pipeline.evaluation.verdict import Verdict

        base = self.reports[self.representative_seed]
        seed_verdict = base.verdict
        verdict = Verdict(
            passed=self.verdict.passed,
            reasons=list(self.verdict.reasons),
            warnings=[*seed_verdict.warnings, *(f"median seed: {r}" for r in seed_verdict.reasons)],
            checks={**seed_verdict.checks, "population_rule": self.verdict.passed},
        )
        return dataclasses.replace(base, verdict=verdict, sections=[*base.sections, self.section()])


def build_population_report(
    run_dir: str | Path,
    splits,
    experiment,
    *,
    bars_per_year: float,
    equity_curves: bool = True,
    **report_kwargs,
) -> PopulationReport:
    """Judge every seed of the population run in ``run_dir`` and the population as a whole.

    ``report_kwargs`` go to :func:`~himari_pipeline.evaluation.report.build_validation_report` for
    each seed (``weights``, ``split_version``, ``truncation_results``, ...).
    """
    from himari_pipeline.evaluation.report import build_validation_report
    from himari_pipeline.rl.checkpoints import best_checkpoint

    dirs = seed_run_dirs(run_dir)
    if not dirs:
        raise FileNotFoundError(f"{run_dir}: no seed_<s> folders (not a seed population run)")
    trials = population_trials(list(dirs.values()))
    reports = {
        seed: build_validation_report(
            d, splits, experiment, bars_per_year=bars_per_year, n_trials=trials, **report_kwargs
        )
        for seed, d in dirs.items()
    }
    rows = [SeedResult.from_report(seed, r) for seed, r in reports.items()]
    selected = {seed: best_checkpoint(d) for seed, d in dirs.items()}
    png = None
    if equity_curves:
        name = getattr(experiment, "name", "population")
        png = equity_curves_plot(seed_equity_curves(selected, splits), f"{name}: seed population")
    return PopulationReport(
        reports=reports,
        rows=rows,
        distribution=sharpe_distribution([r.test_sharpe for r in rows]),
        verdict=judge_population(rows),
        n_trials=trials,
        equity_png=png,
    )


def build_run_report(run_dir: str | Path, splits, experiment, *, bars_per_year: float, **report_kwargs):
    """The report of a training run: a population's (:meth:`PopulationReport.as_validation_report`)
    when ``run_dir`` holds seed folders, else the single run's. Returns ``(report, population or None)``."""
    from himari_pipeline.evaluation.report import build_validation_report

    if seed_run_dirs(run_dir):
        population = build_population_report(
            run_dir, splits, experiment, bars_per_year=bars_per_year, **report_kwargs
        )
        return population.as_validation_report(), population
    return build_validation_report(
        run_dir, splits, experiment, bars_per_year=bars_per_year, **report_kwargs
    ), None
