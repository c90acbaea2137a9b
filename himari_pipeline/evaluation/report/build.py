"""The report's orchestration: what is judged, its replays, the probes, the evidence, the verdict."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from himari_pipeline.datasets.splits import DatasetSplits
from himari_pipeline.evaluation.leakage import ablation_is_constant, shuffle_sharpe_positive
from himari_pipeline.evaluation.replay import Replay, costs_from_experiment
from himari_pipeline.evaluation.report import probes, sections
from himari_pipeline.evaluation.report.checkpoints import (
    LoadedCheckpoint,
    load_policy_checkpoint,
    resolve_checkpoints,
)
from himari_pipeline.evaluation.report.document import Section, ValidationReport
from himari_pipeline.evaluation.report.evidence import Findings, collect_evidence, metric_rows
from himari_pipeline.evaluation.report.segments import replay_on_validation, replay_selected, run_segments
from himari_pipeline.evaluation.verdict import Gates, Verdict, judge
from himari_pipeline.rl.checkpoints import WeightsCatalog
from himari_pipeline.rl.experiments import Experiment
from himari_pipeline.trading.rules import TradingRules

__all__ = ["StrategySubject", "build_validation_report"]


@dataclass
class StrategySubject:
    """A strategy's positions in place of a checkpoint (see :mod:`~himari_pipeline.evaluation.strategy`)."""

    name: str
    dataset: str
    replays: dict[str, Replay]  # per segment, from Replay rows 0 .. n-2
    n_trials: int = 1  # variants the user tried (counted by the Deflated Sharpe)
    source: str = ""  # the positions file


@dataclass(frozen=True)
class _Settings:
    """The report's settings, passed once."""

    gates: Gates
    bars_per_year: float
    n_perm: int
    perm_block: int
    shuffle_block: int
    pbo_blocks: int
    ablation_batch: int
    seed: int


@dataclass
class _Judged:
    """What the report judges: the selected checkpoint (or a strategy) and its replays."""

    name: str
    dataset: str
    path: Path
    costs: TradingRules
    replays: dict[str, Replay]
    n_trials: int
    selected: LoadedCheckpoint | None = None
    others: list[Path] = field(default_factory=list)
    features_key: str = "features_denoised"
    warnings: list[str] = field(default_factory=list)
    n_shuffles: int = 0  # shuffled test copies among the replays

    @property
    def step(self) -> int:
        return self.selected.step if self.selected else 0

    def n_features(self, splits: DatasetSplits) -> int:
        return int(np.asarray(splits["val"][self.features_key]).shape[1])

    def describe(self) -> str:
        """The sentence saying what is judged and how it was selected."""
        if self.selected is None:
            return (
                f"Positions of strategy `{self.name}` from `{self.path.name}` "
                f"({self.n_trials} variant(s) tried)."
            )
        names = self.selected.meta.get("experiment_config", {}).get("features")  # a chosen subset
        inputs = (
            f" The policy reads {len(names)} `{self.features_key}` columns: {', '.join(names)}."
            if names
            else ""
        )
        return (
            f"Checkpoint `{self.path.name}` (step {self.selected.step}) was selected by the run's best "
            f"pointer on VALIDATION; it is never re-selected on test.{inputs} {self.selected.training()}"
        )

    @property
    def recorded_sharpe(self) -> float | None:
        """The validation Sharpe the checkpoint recorded in training (None for a strategy)."""
        return self.selected.meta.get("metrics", {}).get("greedy_sharpe") if self.selected else None

    def trials(self, splits: DatasetSplits) -> tuple[probes.Trial, list[probes.Trial]]:
        """The selection and the other evaluated checkpoints, each replayed on validation."""
        chosen = probes.Trial(self.path.name, self.step, self.replays["val"])
        loaded = [load_policy_checkpoint(p) for p in self.others]
        env_cfg = self.selected.env_cfg if self.selected else None
        reps = replay_on_validation([x.policy for x in loaded], splits, self.features_key, env_cfg)
        return chosen, [probes.Trial(x.path.name, x.step, r) for x, r in zip(loaded, reps, strict=True)]


def _checkpoint(
    run: str | Path | Sequence[str | Path],
    splits: DatasetSplits,
    experiment: Experiment | None,
    costs: TradingRules | None,
    split_version: str | None,
    weights: WeightsCatalog | None,
    cfg: _Settings,
    n_shuffles: int,
) -> tuple[_Judged, DatasetSplits]:
    """The run's selected checkpoint, checked against the catalog, replayed on every segment; and
    ``splits`` cut to the feature columns it reads."""
    selected_path, evaluated, n_trials = resolve_checkpoints(run)
    if weights is not None:  # before anything is evaluated
        for path in evaluated:
            weights.verify(path)
    sel = load_policy_checkpoint(selected_path)
    fkey = experiment.features_key if experiment is not None else sel.features_key
    split_version = split_version or splits.content_hash()[:16]  # of the whole splits, as training's
    splits = sel.inputs(splits)  # the columns the policy reads (an experiment's ``features``)
    warnings = []
    if sel.meta.get("split_version") not in (None, split_version):
        warnings.append(
            f"the checkpoint was trained on split version {sel.meta.get('split_version')}, "
            f"this report evaluates split version {split_version}"
        )
    replays = replay_selected(
        sel.policy,
        splits,
        fkey,
        sel.env_cfg,
        n_shuffles=n_shuffles,
        shuffle_block=cfg.shuffle_block,
        seed=cfg.seed,
    )
    judged = _Judged(
        name=experiment.name if experiment is not None else sel.meta.get("experiment", "unknown"),
        dataset=experiment.dataset if experiment is not None else "unknown",
        path=selected_path,
        costs=costs or costs_from_experiment(experiment, sel.env_cfg),
        replays=replays,
        n_trials=n_trials,
        selected=sel,
        others=[p for p in evaluated if p != selected_path],
        features_key=fkey,
        warnings=warnings,
        n_shuffles=n_shuffles,
    )
    return judged, splits


def build_validation_report(
    run_dir_or_checkpoints: str | Path | Sequence[str | Path] | None,
    splits: DatasetSplits,
    experiment: Experiment | None,
    *,
    bars_per_year: float,
    costs: TradingRules | None = None,
    truncation_results: Mapping[str, bool] | None = None,
    gates: Gates | None = None,
    n_perm: int = 1000,
    perm_block: int = 100,
    n_shuffles: int = 5,
    shuffle_block: int = 1,
    pbo_blocks: int = 16,
    ablation_batch: int = 512,
    seed: int = 0,
    split_version: str | None = None,
    weights: WeightsCatalog | None = None,
    strategy: StrategySubject | None = None,
    n_trials: int | None = None,
) -> ValidationReport:
    """Judge the run's best-by-validation checkpoint on ``splits`` (see the package doc).

    ``split_version`` names the splits as the checkpoints recorded them (the lake's version of the
    ``.npz``); by default the splits' own content hash, as :func:`train_experiment` records it.
    ``weights``: the catalog's record of the run's checkpoints; every checkpoint the report would load
    is checked against it first (a changed or unregistered one raises ``CheckpointIntegrityError``).
    ``strategy``: judge these positions instead of a checkpoint (``run_dir_or_checkpoints`` is then
    ignored): the same sections, with the model-only ones (3, 4a) marked not applicable. The leak bar
    is ``gates.max_leak_abs_corr``. ``n_trials``: count at least this many trials in the Deflated
    Sharpe (a seed population counts every checkpoint of every seed).
    """
    cfg = _Settings(
        gates or Gates(), bars_per_year, n_perm, perm_block, shuffle_block, pbo_blocks, ablation_batch, seed
    )
    clock, timings = time.perf_counter(), {}
    if strategy is not None:
        judged = _Judged(
            f"strategy:{strategy.name}",
            strategy.dataset,
            Path(strategy.source or strategy.name),
            costs or costs_from_experiment(experiment),
            dict(strategy.replays),
            strategy.n_trials,
            n_shuffles=0,
        )
    else:
        judged, splits = _checkpoint(
            run_dir_or_checkpoints, splits, experiment, costs, split_version, weights, cfg, n_shuffles
        )
        if n_trials is not None:  # e.g. every checkpoint of every seed of a population
            judged.n_trials = max(judged.n_trials, int(n_trials))
    findings = _probe(judged, splits, cfg, truncation_results)
    evidence = collect_evidence(findings, judged.n_trials, judged.step)
    verdict = judge(evidence, cfg.gates)
    verdict.warnings.extend(_warnings(judged, findings))
    timings["total"] = time.perf_counter() - clock
    return ValidationReport(
        experiment=judged.name,
        dataset=judged.dataset,
        checkpoint_step=judged.step,
        checkpoint_path=str(judged.path),
        evidence=evidence,
        verdict=verdict,
        sections=_sections(judged, findings, verdict, cfg, splits),
        metrics=metric_rows(findings),
        n_checkpoints=judged.n_trials,
        bars_per_year=bars_per_year,
        timings=timings,
    )


def _probe(
    judged: _Judged, splits: DatasetSplits, cfg: _Settings, truncation_results: Mapping[str, bool] | None
) -> Findings:
    """Backtests of every segment and every test of the report."""
    sel, bpy = judged.selected, cfg.bars_per_year
    runs = run_segments(splits, judged.replays, judged.costs, bpy, cfg.seed)
    chosen, others = judged.trials(splits)
    return Findings(
        runs=runs,
        leakage=probes.probe_leakage(splits, cfg.gates.max_leak_abs_corr, truncation_results),
        ablation=None
        if sel is None
        else probes.policy_ablation(sel.policy, judged.n_features(splits), cfg.seed, cfg.ablation_batch),
        shuffle_sharpes=probes.shuffle_sharpes(judged.replays, judged.n_shuffles, bpy),
        permutation=probes.permutation_of_test(
            runs["test"],
            splits["test"].returns,
            judged.costs,
            bpy,
            n_perm=cfg.n_perm,
            block=cfg.perm_block,
            seed=cfg.seed,
        ),
        multiple=probes.multiple_testing(
            chosen,
            others,
            runs["test"].replay.net_return,
            n_trials=judged.n_trials,
            trial_spread_known=sel is not None,
            pbo_blocks=cfg.pbo_blocks,
            bars_per_year=bpy,
        ),
        attribution=probes.attribution_by_segment(runs, splits),
    )


def _warnings(judged: _Judged, findings: Findings) -> list[str]:
    """The report's own warnings, after the verdict's: split version, constant bias, shuffle."""
    warnings = list(judged.warnings)
    if findings.ablation is not None and ablation_is_constant(findings.ablation):
        warnings.append("the policy picks the same action whatever its input (constant bias)")
    if shuffle_sharpe_positive(findings.shuffle_sharpes):
        warnings.append(
            f"shuffled-test Sharpe mean {findings.shuffle_sharpes.mean():.2f} > 0 by more than 2 standard "
            "errors: the evaluation may pay returns the inputs already see"
        )
    return warnings


def _sections(
    judged: _Judged, findings: Findings, verdict: Verdict, cfg: _Settings, splits: DatasetSplits
) -> list[Section]:
    sel, g = judged.selected, cfg.gates
    return [
        sections.segments_section(
            findings, judged.describe(), judged.recorded_sharpe, judged.costs, cfg.bars_per_year
        ),
        sections.leakage_section(findings, g.max_leak_abs_corr),
        sections.ablation_section(
            findings, sel.policy.cfg.context if sel else 0, judged.n_features(splits), cfg.ablation_batch
        ),
        sections.shuffle_section(
            findings,
            has_model=sel is not None,
            shuffle_block=cfg.shuffle_block,
            perm_block=cfg.perm_block,
            n_perm=cfg.n_perm,
        ),
        sections.live_section(findings, g),
        sections.multiple_testing_section(findings, g, cfg.pbo_blocks, strategy=sel is None),
        sections.attribution_section(findings, g),
        sections.verdict_section(verdict),
    ]
