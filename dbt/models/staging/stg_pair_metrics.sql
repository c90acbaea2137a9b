-- Log 004's table per pair: one row per segment and strategy.
select
    pair,
    segment,
    strategy,
    is_subject,
    final_value,
    cumulative_return,
    sharpe,
    turnover_per_bar,
    max_drawdown,
    avg_bar_return,
    avg_daily_return,
    annual_return
from {{ optional_source('lake', 'pair_metrics', {
    'pair': 'varchar', 'segment': 'varchar', 'strategy': 'varchar', 'is_subject': 'boolean',
    'final_value': 'double', 'cumulative_return': 'double', 'sharpe': 'double',
    'turnover_per_bar': 'double', 'max_drawdown': 'double', 'avg_bar_return': 'double',
    'avg_daily_return': 'double', 'annual_return': 'double'
}) }}
