-- One row per experiment and dataset (partition = experiment.dataset): verdict and significance
-- evidence for its selected checkpoint, and the dataset's bars per year the Sharpe ratios use. A NaN probability becomes NULL (missing evidence), so it cannot sort first
-- (DuckDB orders NaN above every number).
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
    case when isnan(psr) then null else psr end as psr,
    case when isnan(dsr) then null else dsr end as dsr,
    case when isnan(pbo) then null else pbo end as pbo,
    case when isnan(perm_pvalue) then null else perm_pvalue end as perm_pvalue,
    leak_flags,
    report_path,
    {% set cols = adapter.get_columns_in_relation(source('lake', 'validation_summary')) | map(attribute='name') | list -%}
    {% if 'bars_per_year' in cols %}bars_per_year{% else %}cast(null as double) as bars_per_year{% endif %},
    {% if 'checkpoint_path' in cols %}checkpoint_path{% else %}cast(null as varchar) as checkpoint_path{% endif %}
from {{ source('lake', 'validation_summary') }}
