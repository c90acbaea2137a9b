-- One row per exit experiment and dataset judged by the exit optimizer (lake partition
-- `exit-EXPERIMENT.DATASET`, key EXPERIMENT.DATASET): the judged exit policy, its verdict and
-- evidence. `experiment` is the one recorded with the checkpoint, else the key's EXPERIMENT part. A NaN
-- probability becomes NULL (missing evidence), so it cannot sort first. Empty until the first exit run.
select
    key,
    coalesce(
        nullif(experiment, ''),
        case when suffix(key, '.' || dataset) then left(key, length(key) - length(dataset) - 1) else key end
    ) as experiment,
    dataset,
    data,
    subject,
    verdict,
    reasons,
    warnings,
    {{ nan_as_null('dsr') }},
    {{ nan_as_null('permutation_p') }},
    {{ nan_as_null('live_permutation_p') }},
    validation_sharpe,
    test_sharpe,
    live_sharpe,
    live_buy_and_hold_sharpe,
    live_max_drawdown,
    test_mean_return,
    {{ nan_as_null('test_blocked_rate') }},
    test_trades,
    test_fixed_stops_mean_return,
    steps,
    config,
    report_path
from {{ optional_source('lake', 'exit_summary', {
    'key': 'varchar', 'dataset': 'varchar', 'data': 'varchar', 'subject': 'varchar', 'experiment': 'varchar',
    'verdict': 'varchar', 'reasons': 'varchar', 'warnings': 'varchar', 'dsr': 'double',
    'permutation_p': 'double', 'live_permutation_p': 'double', 'validation_sharpe': 'double',
    'test_sharpe': 'double', 'live_sharpe': 'double', 'live_buy_and_hold_sharpe': 'double',
    'live_max_drawdown': 'double', 'test_mean_return': 'double', 'test_blocked_rate': 'double',
    'test_trades': 'bigint', 'test_fixed_stops_mean_return': 'double', 'steps': 'bigint',
    'config': 'varchar', 'report_path': 'varchar'
}) }}
