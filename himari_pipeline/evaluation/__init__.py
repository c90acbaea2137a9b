"""Evaluation domain: backtest, metrics, baselines, significance, leakage probes and the verdict.

Pure numpy/pandas functions, no Dagster. Convention: ``positions[i]`` is decided at bar ``i``'s
close and earns ``returns[i+1]``; annualization uses the data's ``bars_per_year``.
"""

from himari_pipeline.evaluation.backtest import BacktestResult, backtest
from himari_pipeline.evaluation.baselines import (
    baseline_table,
    buy_and_hold_positions,
    flat_positions,
    ma_crossover_positions,
    random_positions_like,
)
from himari_pipeline.evaluation.leakage import (
    feature_return_correlations,
    input_ablation,
    next_returns,
    prices_from_returns,
    shuffle_test,
)
from himari_pipeline.evaluation.metrics import compute_stats, daily_returns, sharpe_ratio, stats_by_group
from himari_pipeline.evaluation.significance import (
    PBOResult,
    PermutationResult,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    per_bar_sharpes,
    permutation_pvalue,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    psr_from_moments,
)
from himari_pipeline.evaluation.verdict import Gates, Verdict, judge, total_variation
from himari_pipeline.trading.rules import TradingRules

__all__ = [
    "BacktestResult",
    "Gates",
    "PBOResult",
    "PermutationResult",
    "TradingRules",
    "Verdict",
    "backtest",
    "baseline_table",
    "buy_and_hold_positions",
    "compute_stats",
    "daily_returns",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "feature_return_correlations",
    "flat_positions",
    "input_ablation",
    "judge",
    "ma_crossover_positions",
    "next_returns",
    "per_bar_sharpes",
    "permutation_pvalue",
    "prices_from_returns",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "psr_from_moments",
    "random_positions_like",
    "sharpe_ratio",
    "shuffle_test",
    "stats_by_group",
    "total_variation",
]
