-- One row per exit experiment and dataset judged by the exit optimizer, ranked by the deflated Sharpe
-- ratio of the judged exit policy (NULL ranks last), with its per-trade numbers on the test segment and
-- the live year (net of costs) next to the fixed-stops baseline (the same entries held with the initial
-- stops to the maximum hold: what the policy must beat), the verdict and the evidence.
{% set per_trade = ['trades', 'mean_return', 'win_rate', 'profit_factor', 'sharpe', 'avg_holding',
                    'median_holding', 'quick_exit_share', 'exit_agent', 'exit_stop_loss',
                    'exit_take_profit', 'exit_time'] %}
with summary as (
    select * from {{ ref('stg_exit_summary') }}
),

metrics as (
    select * from {{ ref('stg_exit_metrics') }}
),

subject as (
    select * from metrics where is_subject
),

fixed_stops as (
    select * from metrics where strategy = 'fixed_stops'
)

select
    row_number() over (order by s.dsr desc nulls last, s.experiment, s.dataset) as dsr_rank,
    s.experiment,
    s.dataset,
    s.key,
    s.subject,
    s.verdict,
    s.verdict = 'PASS' as promotable,
    s.reasons,
    s.warnings,
    s.dsr,
    s.permutation_p,
    s.live_permutation_p,
    s.validation_sharpe,
    {%- for seg in ['test', 'live'] %}
    {%- for m in per_trade %}
    {{ seg[0] }}.{{ m }} as {{ seg }}_{{ m }},
    {%- endfor %}
    {{ seg[0] }}f.mean_return as {{ seg }}_fixed_stops_mean_return,
    {{ seg[0] }}f.sharpe as {{ seg }}_fixed_stops_sharpe,
    {{ seg[0] }}.mean_return - {{ seg[0] }}f.mean_return as {{ seg }}_mean_return_vs_fixed_stops,
    {{ seg[0] }}.sharpe - {{ seg[0] }}f.sharpe as {{ seg }}_sharpe_vs_fixed_stops,
    {%- endfor %}
    s.live_max_drawdown,
    s.test_blocked_rate,
    s.steps,
    s.config,
    s.report_path
from summary as s
left join subject as t on t.key = s.key and t.segment = 'test'
left join subject as l on l.key = s.key and l.segment = 'live'
left join fixed_stops as tf on tf.key = s.key and tf.segment = 'test'
left join fixed_stops as lf on lf.key = s.key and lf.segment = 'live'
order by dsr_rank
