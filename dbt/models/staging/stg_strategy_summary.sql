-- Strategies judged by `himari evaluate`, in the columns of stg_validation_summary (no checkpoint).
select
    experiment,
    dataset,
    cast(null as bigint) as checkpoint_step,
    verdict,
    reasons,
    warnings,
    n_checkpoints,
    val_sharpe,
    test_sharpe,
    live_sharpe,
    live_bh_sharpe,
    live_max_drawdown,
    live_final_value,
    case when isnan(psr) then null else psr end as psr,
    case when isnan(dsr) then null else dsr end as dsr,
    case when isnan(pbo) then null else pbo end as pbo,
    case when isnan(perm_pvalue) then null else perm_pvalue end as perm_pvalue,
    leak_flags,
    report_path,
    bars_per_year,
    cast(null as varchar) as checkpoint_path
from {{ optional_source('lake', 'strategy_summary', {
    'experiment': 'varchar', 'dataset': 'varchar', 'verdict': 'varchar', 'reasons': 'varchar',
    'warnings': 'varchar', 'n_checkpoints': 'bigint', 'val_sharpe': 'double', 'test_sharpe': 'double',
    'live_sharpe': 'double', 'live_bh_sharpe': 'double', 'live_max_drawdown': 'double',
    'live_final_value': 'double', 'psr': 'double', 'dsr': 'double', 'pbo': 'double',
    'perm_pvalue': 'double', 'leak_flags': 'varchar', 'report_path': 'varchar', 'bars_per_year': 'double'
}) }}
