-- One row per experiment (partition = experiment): verdict and significance evidence for its
-- selected checkpoint.
select
    coalesce(experiment, partition_key) as experiment,
    dataset,
    checkpoint_step,
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
    psr,
    dsr,
    pbo,
    perm_pvalue,
    leak_flags,
    report_path
from {{ source('lake', 'validation_summary') }}
