-- One row per pair judged by `himari pairs --dataset`: the strategy, verdict and evidence. A NaN
-- probability becomes NULL (missing evidence), so it cannot sort first.
select
    pair,
    leg_y,
    leg_x,
    subject,
    selected,
    verdict,
    reasons,
    warnings,
    {{ nan_as_null('dsr') }},
    {{ nan_as_null('permutation_p') }},
    validation_sharpe,
    test_sharpe,
    live_sharpe,
    live_buy_and_hold_sharpe,
    live_max_drawdown,
    timing_p,
    hedge,
    leverage,
    transaction_cost,
    borrow_rate_annual,
    bars_per_year,
    dropped_bars,
    report_path
from {{ optional_source('lake', 'pair_summary', {
    'pair': 'varchar', 'leg_y': 'varchar', 'leg_x': 'varchar', 'subject': 'varchar', 'selected': 'varchar',
    'verdict': 'varchar', 'reasons': 'varchar', 'warnings': 'varchar', 'dsr': 'double',
    'permutation_p': 'double', 'validation_sharpe': 'double', 'test_sharpe': 'double',
    'live_sharpe': 'double', 'live_buy_and_hold_sharpe': 'double', 'live_max_drawdown': 'double',
    'timing_p': 'double', 'hedge': 'varchar', 'leverage': 'double', 'transaction_cost': 'double',
    'borrow_rate_annual': 'double', 'bars_per_year': 'double', 'dropped_bars': 'bigint',
    'report_path': 'varchar'
}) }}
