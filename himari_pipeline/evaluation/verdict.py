"""Promotion verdict: a policy passes only if every gate passes on the evidence given.

``judge`` fails closed: a gate whose evidence is missing or not a finite number fails with a
reason saying so. Evidence is a mapping (numbers/bools, action shares as ``{action: share}`` or a
sequence; percentages are normalized) or an object with a ``gate_view()`` giving one (the report's
:class:`~himari_pipeline.evaluation.report.Evidence`):

===========================  =================================================================
``truncation_invariant``     bool: features/denoised/regimes passed truncation invariance
``*_action_shares``          action shares per segment, e.g. ``train_action_shares``,
                             ``validation_action_shares``, ``test_action_shares``,
                             ``live_action_shares`` (each checked for collapse)
``dsr``                      Deflated Sharpe Ratio of the selected checkpoint over all evaluated
``permutation_p``            block permutation p-value of the selection/test Sharpe
``live_permutation_p``       the live segment's (only with the optional ``max_live_permutation_p``)
``live_ruined``              bool: equity hit 0 in the live year
``live_max_drawdown``        live-year max drawdown (negative fraction)
``live_sharpe``              live-year annualized Sharpe, net of costs
``live_buy_and_hold_sharpe`` live-year buy-and-hold Sharpe, net of the same costs
``leak_correlations``        ``{feature: {"pearson": .., "spearman": ..}}``: each feature at ``t``
                             against ``r[t+1]`` (the leakage gate)
``truncation_results``       optional ``{check: passed}``; any failure fails the leakage gate
``validation_sharpe``        optional, annualized; with ``test_sharpe`` feeds the warnings
``test_sharpe``              optional, annualized
``timing_p``                 one-sided HAC p-value of the test segment's timing (only with the
                             optional ``max_timing_p`` gate; see :mod:`.attribution`)
===========================  =================================================================

Why each default: a Sharpe above ~5 on a liquid market is almost always a bug or a leak, and test
beating validation by far is luck or leakage, not "no overfitting" (warnings); an honest feature's
correlation with the next return is of the order of ``1/sqrt(n)``, so ``|corr| > 0.3`` is a leak;
a policy trading 54/34/12 long/short/flat in training and 22/64/14 live (total variation 0.32) is
in a regime it never learned (drift gate at 0.20).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from himari_pipeline.vocabulary import COLLAPSE_MAX_SHARE, top_action


@dataclass(frozen=True)
class Gates:
    require_truncation_invariance: bool = True
    max_action_share: float = COLLAPSE_MAX_SHARE  # collapse: one action above this share of decisions
    min_dsr: float = 0.95  # Deflated Sharpe Ratio (probability) over all checkpoints evaluated
    max_permutation_p: float = 0.05
    # optional (off): the live segment's permutation p must pass too (the exit gate turns it on)
    max_live_permutation_p: float | None = None
    forbid_live_ruin: bool = True
    min_live_max_drawdown: float = -0.50  # live max drawdown must be above (less negative than) this
    live_sharpe_margin: float = 1.0  # live Sharpe >= live buy-and-hold Sharpe - margin (annualized)
    max_action_drift_tvd: float = 0.20  # total variation distance, train vs live action shares
    warn_test_over_validation: float = 1.1  # warn when test Sharpe > this x validation Sharpe (> 0)
    warn_test_over_validation_abs: float = 0.5  # ... and more than this above it (annualized)
    implausible_sharpe: float = 5.0  # warn when any annualized Sharpe exceeds this
    # optional (off): test-segment timing must be significant, i.e. the edge is not just market drift
    max_timing_p: float | None = None
    max_leak_abs_corr: float = 0.3  # leak: a feature's |Pearson| or |Spearman| with r[t+1] above this


class GateEvidence(Protocol):
    """Typed evidence that offers the mapping :func:`judge` reads."""

    def gate_view(self) -> Mapping[str, Any]: ...


@dataclass
class Verdict:
    passed: bool
    reasons: list[str] = field(default_factory=list)  # why it failed (empty when passed)
    warnings: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)  # gate name -> passed


def normalized_shares(value: Any) -> dict[str, float]:
    """Given action shares (a mapping or a sequence, any positive scale) normalized to sum 1."""
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    out = {str(k): float(v) for k, v in items}
    total = sum(out.values())
    if not total > 0 or any(v < 0 or not math.isfinite(v) for v in out.values()):
        raise ValueError(f"invalid action shares {value!r}")
    return {k: v / total for k, v in out.items()}


def total_variation(
    p: Mapping[str, float] | Sequence[float], q: Mapping[str, float] | Sequence[float]
) -> float:
    """``0.5 * sum |p_a - q_a|`` over the union of actions (shares normalized to sum 1)."""
    ps, qs = normalized_shares(p), normalized_shares(q)
    return 0.5 * sum(abs(ps.get(a, 0.0) - qs.get(a, 0.0)) for a in set(ps) | set(qs))


def _number(evidence: Mapping[str, Any], key: str) -> float | None:
    v = evidence.get(key)
    if v is None or isinstance(v, str):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def suspicious_features(
    correlations: Mapping[str, Mapping[str, float]], max_abs_corr: float
) -> dict[str, float]:
    """Features whose |Pearson| or |Spearman| with ``r[t+1]`` exceeds ``max_abs_corr``, largest
    first, each with its Pearson correlation."""
    worst = {k: max(abs(float(c["pearson"])), abs(float(c["spearman"]))) for k, c in correlations.items()}
    over = sorted((k for k in worst if worst[k] > max_abs_corr), key=lambda k: -worst[k])
    return {k: float(correlations[k]["pearson"]) for k in over}


def judge(evidence: Mapping[str, Any] | GateEvidence, gates: Gates | None = None) -> Verdict:
    """Apply every gate to ``evidence``; see the module doc for the keys."""
    if not isinstance(evidence, Mapping):
        evidence = evidence.gate_view()
    g = gates or Gates()
    v = Verdict(passed=True)

    def gate(name: str, ok: bool, reason: str) -> None:
        v.checks[name] = ok
        if not ok:
            v.reasons.append(reason)

    def missing(name: str, key: str) -> None:
        gate(name, False, f"{name}: missing or non-finite evidence {key!r}")

    if g.require_truncation_invariance:
        ti = evidence.get("truncation_invariant")
        if ti is None:
            missing("truncation_invariance", "truncation_invariant")
        else:
            gate("truncation_invariance", bool(ti), "truncation invariance failed: a feature sees the future")

    share_keys = sorted(k for k in evidence if k.endswith("action_shares"))
    if not share_keys:
        missing("no_collapse", "*_action_shares")
    for key in share_keys:
        top, top_share = top_action(normalized_shares(evidence[key]))
        gate(
            f"no_collapse[{key}]",
            top_share <= g.max_action_share,
            f"policy collapse in {key}: action {top} takes {top_share:.1%} of decisions "
            f"(> {g.max_action_share:.0%})",
        )

    dsr = _number(evidence, "dsr")
    if dsr is None:
        missing("deflated_sharpe", "dsr")
    else:
        gate("deflated_sharpe", dsr >= g.min_dsr, f"Deflated Sharpe Ratio {dsr:.3f} < {g.min_dsr}")

    p = _number(evidence, "permutation_p")
    if p is None:
        missing("permutation", "permutation_p")
    else:
        gate("permutation", p <= g.max_permutation_p, f"permutation p-value {p:.3g} > {g.max_permutation_p}")

    if g.max_live_permutation_p is not None:
        lp = _number(evidence, "live_permutation_p")
        if lp is None:
            missing("live_permutation", "live_permutation_p")
        else:
            gate(
                "live_permutation",
                lp <= g.max_live_permutation_p,
                f"live permutation p-value {lp:.3g} > {g.max_live_permutation_p}",
            )

    if g.forbid_live_ruin:
        ruined = evidence.get("live_ruined")
        if ruined is None:
            missing("live_not_ruined", "live_ruined")
        else:
            gate("live_not_ruined", not bool(ruined), "ruin in the live year: equity went to 0")

    mdd = _number(evidence, "live_max_drawdown")
    if mdd is None:
        missing("live_drawdown", "live_max_drawdown")
    else:
        gate(
            "live_drawdown",
            mdd > g.min_live_max_drawdown,
            f"live max drawdown {mdd:.1%} is not above {g.min_live_max_drawdown:.0%}",
        )

    live, bh = _number(evidence, "live_sharpe"), _number(evidence, "live_buy_and_hold_sharpe")
    if live is None or bh is None:
        missing("live_vs_buy_and_hold", "live_sharpe / live_buy_and_hold_sharpe")
    else:
        gate(
            "live_vs_buy_and_hold",
            live >= bh - g.live_sharpe_margin,
            f"underperforms buy-and-hold in the live year: Sharpe {live:.2f} vs buy-and-hold {bh:.2f} "
            f"(margin {g.live_sharpe_margin})",
        )

    train_s, live_s = evidence.get("train_action_shares"), evidence.get("live_action_shares")
    if train_s is None or live_s is None:
        missing("action_drift", "train_action_shares / live_action_shares")
    else:
        tvd = total_variation(train_s, live_s)
        gate(
            "action_drift",
            tvd <= g.max_action_drift_tvd,
            f"action distribution drift train -> live: total variation {tvd:.2f} > {g.max_action_drift_tvd}",
        )

    if g.max_timing_p is not None:
        tp = _number(evidence, "timing_p")
        if tp is None:
            missing("timing", "timing_p")
        else:
            gate(
                "timing",
                tp <= g.max_timing_p,
                f"timing not significant on test: p-value {tp:.3g} > {g.max_timing_p} (the P&L is "
                "market exposure, not timing)",
            )

    corr = evidence.get("leak_correlations")
    if corr is None:
        missing("leakage", "leak_correlations")
    else:
        leak_reasons = []
        sus = suspicious_features(corr, g.max_leak_abs_corr)
        if sus:
            worst = ", ".join(f"{k} ({v:+.2f})" for k, v in list(sus.items())[:5])
            leak_reasons.append(
                f"leakage: {len(sus)} feature(s) correlate with r[t+1] beyond |corr| "
                f"{g.max_leak_abs_corr}: {worst}"
            )
        failed = [k for k, ok in (evidence.get("truncation_results") or {}).items() if not ok]
        if failed:
            leak_reasons.append(f"leakage: truncation invariance failed for {', '.join(failed)}")
        v.checks["leakage"] = not leak_reasons
        v.reasons.extend(leak_reasons)

    val, test = _number(evidence, "validation_sharpe"), _number(evidence, "test_sharpe")
    if (
        val is not None
        and test is not None
        and val > 0
        and test > max(g.warn_test_over_validation * val, val + g.warn_test_over_validation_abs)
    ):
        v.warnings.append(
            f"test Sharpe {test:.2f} beats validation {val:.2f} by far: luck, leakage or a regime "
            "gift, not evidence of no overfitting"
        )
    for key in ("validation_sharpe", "test_sharpe", "live_sharpe"):
        s = _number(evidence, key)
        if s is not None and s > g.implausible_sharpe:
            v.warnings.append(
                f"{key} {s:.2f} > {g.implausible_sharpe}: implausible on a liquid market, look for a leak"
            )
    v.passed = not v.reasons
    return v
