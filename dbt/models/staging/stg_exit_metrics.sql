-- The exit optimizer's per-trade metrics (net of costs): one row per exit experiment x dataset (`key`),
-- segment and strategy (the judged policy, `is_subject`, or a baseline). Empty until the first exit run.
select
    key,
    segment,
    case segment when 'train' then 1 when 'val' then 2 when 'test' then 3 when 'live' then 4 end as segment_order,
    strategy,
    is_subject,
    cast(trades as bigint) as trades,
    mean_return,
    win_rate,
    profit_factor,
    sharpe,
    avg_holding,
    min_holding,
    median_holding,
    quick_exit_share,
    exit_agent,
    exit_stop_loss,
    exit_take_profit,
    exit_time
from {{ optional_source('lake', 'exit_metrics', {
    'key': 'varchar', 'segment': 'varchar', 'strategy': 'varchar', 'trades': 'double',
    'mean_return': 'double', 'win_rate': 'double', 'profit_factor': 'double', 'sharpe': 'double',
    'avg_holding': 'double', 'min_holding': 'double', 'median_holding': 'double',
    'quick_exit_share': 'double', 'exit_agent': 'double', 'exit_stop_loss': 'double',
    'exit_take_profit': 'double', 'exit_time': 'double', 'is_subject': 'boolean'
}) }}
