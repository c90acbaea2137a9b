"""The validation report of one training run (or of a strategy's positions), in seven sections.

:func:`build_validation_report` judges the checkpoint the run selected on VALIDATION (its best
pointer; never the best on test) and collects the :class:`Evidence` that
:func:`~himari_pipeline.evaluation.judge` reads:

1. validation / test evaluation, overall and per regime, with the action mix per regime and the
   baselines (buy-and-hold, flat, MA crossover, random with the same turnover) net of the same costs;
2. leakage: correlation of every raw and denoised feature at ``t`` with ``r[t+1]`` on train+val+test
   (never live), the chance threshold, flagged rows, and the upstream truncation-invariance results;
3. zero / noise / all-ones inputs: the policy's action mix on constant windows;
4. shuffle: (a) the policy re-run on time-shuffled test bars, (b) the block permutation p-value;
5. the live year: equity vs buy-and-hold, metrics, action drift training -> live, per regime;
6. multiple testing: PSR and DSR of the selection over every checkpoint the run evaluated, and PBO
   (6b: return attribution, market exposure vs timing, in every segment);
7. the verdict with reasons, warnings and every gate's outcome (the leak bar included).

Modules: ``checkpoints`` (which checkpoint, loading it), ``segments`` (replays and backtests per
segment), ``probes`` (the tests, calls of the evaluation library), ``evidence`` (typed findings),
``sections`` (prose, tables, plots), ``document`` (rendering), ``build`` (the orchestration) and
``store`` (the report's files in the lake). The greedy replay lives in
:mod:`~himari_pipeline.evaluation.replay`.
"""

from himari_pipeline.evaluation.baselines import SUBJECTS
from himari_pipeline.evaluation.code_modules import REPORT_CODE_MODULES
from himari_pipeline.evaluation.replay import Replay, costs_from_experiment, replay_greedy
from himari_pipeline.evaluation.report.build import StrategySubject, build_validation_report
from himari_pipeline.evaluation.report.checkpoints import (
    LoadedCheckpoint,
    load_policy_checkpoint,
    resolve_checkpoints,
)
from himari_pipeline.evaluation.report.document import (
    METRICS_COLUMNS,
    SUMMARY_COLUMNS,
    Plot,
    Section,
    ValidationReport,
)
from himari_pipeline.evaluation.report.evidence import Evidence
from himari_pipeline.evaluation.report.store import StoredReport, store_report

_load = load_policy_checkpoint  # the name the replay tests load checkpoints by

#: Every module whose code shapes a report, by name: an asset's code version hashes them all.
CODE_MODULES = REPORT_CODE_MODULES

__all__ = [
    "CODE_MODULES",
    "METRICS_COLUMNS",
    "SUBJECTS",
    "SUMMARY_COLUMNS",
    "Evidence",
    "LoadedCheckpoint",
    "Plot",
    "Replay",
    "Section",
    "StoredReport",
    "StrategySubject",
    "ValidationReport",
    "build_validation_report",
    "costs_from_experiment",
    "load_policy_checkpoint",
    "replay_greedy",
    "resolve_checkpoints",
    "store_report",
]
