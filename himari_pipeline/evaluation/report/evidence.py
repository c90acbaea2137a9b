"""What a report found, typed: the verdict's inputs and every number of the metrics table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from himari_pipeline.evaluation.attribution import Attribution
from himari_pipeline.evaluation.baselines import SUBJECTS
from himari_pipeline.evaluation.report.probes import LeakageProbe, MultipleTesting
from himari_pipeline.evaluation.report.segments import GapHolds, SegmentRun
from himari_pipeline.evaluation.significance import PermutationResult
from himari_pipeline.evaluation.verdict import total_variation
from himari_pipeline.vocabulary import ACTIONS

__all__ = ["METRIC_ROW_COLUMNS", "Evidence", "Findings", "collect_evidence", "metric_rows"]

METRIC_ROW_COLUMNS: tuple[str, ...] = ("section", "subject", "regime", "metric", "value")


@dataclass
class Findings:
    """The probes' full results, which the sections show and the evidence condenses."""

    runs: dict[str, SegmentRun]
    leakage: LeakageProbe
    ablation: pd.DataFrame | None  # None: no model to feed constant windows
    shuffle_sharpes: np.ndarray
    permutation: PermutationResult
    multiple: MultipleTesting
    attribution: dict[str, Attribution]  # by section name

    @property
    def action_drift_tvd(self) -> float:
        train, live = self.runs.get("train"), self.runs["live"]
        return total_variation(train.action_shares, live.action_shares) if train else float("nan")


@dataclass
class Evidence:
    """The report's evidence; :meth:`gate_view` is what :func:`~himari_pipeline.evaluation.judge` reads."""

    validation_sharpe: float
    test_sharpe: float
    live_sharpe: float
    live_buy_and_hold_sharpe: float
    live_max_drawdown: float
    live_final_value: float
    live_ruined: bool
    action_shares: dict[str, dict[str, float]]  # per section: train (when replayed), validation, test, live
    action_drift_tvd: float
    psr: float
    dsr: float
    pbo: float
    permutation_p: float
    attribution: dict[str, dict[str, float]]  # per section
    shuffle_sharpes: list[float]
    ablation: dict[str, dict[str, float]]  # input kind -> action shares (empty without a model)
    leak_correlations: dict[str, dict[str, float]]  # feature -> pearson, spearman; largest first
    leak_max_abs_corr: float
    leak_suspicious_features: dict[str, float]
    gap_holds: dict[str, GapHolds]  # per section: positions held across missing bars
    truncation_results: dict[str, bool] = field(default_factory=dict)
    n_checkpoints: int = 1
    selected_step: int = 0

    @property
    def truncation_invariant(self) -> bool | None:
        return all(self.truncation_results.values()) if self.truncation_results else None

    @property
    def timing_p(self) -> float:
        return self.attribution["test"]["timing_p"]

    @property
    def leak_flags(self) -> int:
        return len(self.leak_suspicious_features) + sum(not ok for ok in self.truncation_results.values())

    def gate_view(self) -> dict[str, Any]:
        """The mapping the gates read (see :mod:`~himari_pipeline.evaluation.verdict`)."""
        view: dict[str, Any] = {
            "truncation_invariant": self.truncation_invariant,
            "truncation_results": self.truncation_results,
            "leak_correlations": self.leak_correlations,
            "dsr": self.dsr,
            "psr": self.psr,
            "pbo": self.pbo,
            "permutation_p": self.permutation_p,
            "live_ruined": self.live_ruined,
            "live_max_drawdown": self.live_max_drawdown,
            "live_sharpe": self.live_sharpe,
            "live_buy_and_hold_sharpe": self.live_buy_and_hold_sharpe,
            "validation_sharpe": self.validation_sharpe,
            "test_sharpe": self.test_sharpe,
            "timing_p": self.timing_p,
        }
        view.update({f"{seg}_action_shares": s for seg, s in self.action_shares.items()})
        return view


def collect_evidence(f: Findings, n_checkpoints: int, selected_step: int) -> Evidence:
    val, test, live = f.runs["val"], f.runs["test"], f.runs["live"]
    shares = {run.section: run.action_shares for run in f.runs.values()}
    return Evidence(
        validation_sharpe=val.stats["policy"]["sharpe"],
        test_sharpe=test.stats["policy"]["sharpe"],
        live_sharpe=live.stats["policy"]["sharpe"],
        live_buy_and_hold_sharpe=live.stats["buy_and_hold"]["sharpe"],
        live_max_drawdown=live.stats["policy"]["max_drawdown"],
        live_final_value=live.stats["policy"]["final_value"],
        live_ruined=bool(live.policy.ruined),
        action_shares=shares,
        action_drift_tvd=f.action_drift_tvd,
        psr=f.multiple.psr,
        dsr=f.multiple.dsr,
        pbo=f.multiple.pbo,
        permutation_p=f.permutation.p_value,
        attribution={k: a.as_dict() for k, a in f.attribution.items()},
        shuffle_sharpes=[float(s) for s in f.shuffle_sharpes],
        ablation={}
        if f.ablation is None
        else {k: {a: float(v) for a, v in r.items()} for k, r in f.ablation.iterrows()},
        leak_correlations=f.leakage.correlations,
        leak_max_abs_corr=f.leakage.max_abs_corr,
        leak_suspicious_features=dict(f.leakage.suspicious),
        gap_holds={run.section: run.gap_holds for run in f.runs.values()},
        truncation_results=dict(f.leakage.truncation),
        n_checkpoints=n_checkpoints,
        selected_step=selected_step,
    )


def _rows(section: str, subject: str, regime: str, values: Mapping[str, float]) -> list[tuple]:
    return [(section, subject, regime, k, float(v)) for k, v in values.items()]


def metric_rows(f: Findings) -> pd.DataFrame:
    """Every number of the report in long format (section, subject, regime, metric, value)."""
    rows: list[tuple] = []
    for run in f.runs.values():
        for subject in SUBJECTS:
            rows += _rows(run.section, subject, "ALL", run.stats[subject])
            for regime, r in run.by_regime[subject].iterrows():
                rows += _rows(run.section, subject, str(regime), r.to_dict())
    lk = f.leakage
    rows += _rows(
        "leakage",
        "policy",
        "ALL",
        {
            "max_abs_corr": lk.max_abs_corr,
            "n_flagged": float(lk.table["flagged"].sum()),
            "n_suspicious": float(len(lk.suspicious)),
            "threshold": lk.threshold,
        },
    )
    if f.ablation is not None:
        for kind, r in f.ablation.iterrows():
            rows += _rows("ablation", "policy", "ALL", {f"{kind}_share_{a}": r[a] for a in ACTIONS})
    rows += _rows(
        "shuffle", "policy", "ALL", {f"sharpe_shuffle_{i + 1}": s for i, s in enumerate(f.shuffle_sharpes)}
    )
    perm = f.permutation
    rows += _rows("significance", "policy", "ALL", {"perm_pvalue": perm.p_value, "perm_sharpe": perm.sharpe})
    rows += [("live", "policy", "ALL", "action_drift_tvd", f.action_drift_tvd)]
    mt = f.multiple
    rows += _rows(
        "significance",
        "policy",
        "ALL",
        {"psr": mt.psr, "psr_test": mt.psr_test, "dsr": mt.dsr, "pbo": mt.pbo, "n_trials": mt.n_trials},
    )
    for seg, a in f.attribution.items():
        rows += _rows(seg, "policy", "ALL", {f"attribution_{k}": v for k, v in a.as_dict().items()})
    return pd.DataFrame(rows, columns=list(METRIC_ROW_COLUMNS))
