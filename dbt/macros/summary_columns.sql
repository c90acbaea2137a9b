{#
  The verdict and evidence columns shared by validation_summary and strategy_summary (the same
  report writes both). A NaN probability becomes NULL (missing evidence), so it cannot sort first
  (DuckDB orders NaN above every number).
#}
{% macro summary_columns() -%}
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
    report_path
{%- endmacro %}
