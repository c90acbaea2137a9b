{#
  The verdict and evidence columns shared by validation_summary and strategy_summary (the same
  report writes both), the probabilities NaN-free (nan_as_null).
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
    {{ nan_as_null('psr') }},
    {{ nan_as_null('dsr') }},
    {{ nan_as_null('pbo') }},
    {{ nan_as_null('perm_pvalue') }},
    leak_flags,
    report_path
{%- endmacro %}
