-- Strategies judged by `himari evaluate`, in the columns of stg_validation_summary (no checkpoint).
select
    experiment,
    dataset,
    cast(null as bigint) as checkpoint_step,
    {{ summary_columns() }},
    bars_per_year,
    cast(null as varchar) as checkpoint_path
from {{ optional_source('lake', 'strategy_summary', {
    'experiment': 'varchar', 'dataset': 'varchar', 'verdict': 'varchar', 'reasons': 'varchar',
    'warnings': 'varchar', 'n_checkpoints': 'bigint', 'val_sharpe': 'double', 'test_sharpe': 'double',
    'live_sharpe': 'double', 'live_bh_sharpe': 'double', 'live_max_drawdown': 'double',
    'live_final_value': 'double', 'psr': 'double', 'dsr': 'double', 'pbo': 'double',
    'perm_pvalue': 'double', 'leak_flags': 'varchar', 'report_path': 'varchar', 'bars_per_year': 'double'
}) }}
