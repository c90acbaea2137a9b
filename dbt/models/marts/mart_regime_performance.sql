-- Per experiment, dataset, section and regime, for the selected checkpoint: the policy's Sharpe, return and
-- action shares next to buy-and-hold (and the other baselines' Sharpe) on the same bars.
{% set sharpe = ['sharpe'] %}
{% set ret = ['cumulative_return', 'total_return'] %}
with selected as (
    select m.*
    from {{ ref('stg_validation_metrics') }} as m
    inner join {{ ref('stg_validation_summary') }} as s
        on m.experiment = s.experiment and m.dataset = s.dataset and m.checkpoint_step = s.checkpoint_step
)

select
    experiment,
    dataset,
    min(checkpoint_step) as checkpoint_step,
    section,
    regime,
    {{ metric('policy', ['bars']) }} as bars,
    {{ metric('policy', ['share_of_bars']) }} as share_of_bars,
    {{ metric('policy', sharpe) }} as policy_sharpe,
    {{ metric('policy', ret) }} as policy_return,
    {{ metric('policy', ['max_drawdown']) }} as policy_max_drawdown,
    {{ metric('policy', ['long_share', 'share_long']) }} as policy_long_share,
    {{ metric('policy', ['short_share', 'share_short']) }} as policy_short_share,
    {{ metric('policy', ['flat_share', 'share_flat']) }} as policy_flat_share,
    {{ metric('buy_and_hold', sharpe) }} as bh_sharpe,
    {{ metric('buy_and_hold', ret) }} as bh_return,
    {{ metric('buy_and_hold', ['long_share', 'share_long']) }} as bh_long_share,
    {{ metric('policy', sharpe) }} - {{ metric('buy_and_hold', sharpe) }} as sharpe_vs_bh,
    {{ metric('policy', ret) }} - {{ metric('buy_and_hold', ret) }} as return_vs_bh,
    {{ metric('flat', sharpe) }} as flat_sharpe,
    {{ metric('ma_crossover', sharpe) }} as ma_crossover_sharpe,
    {{ metric('random_same_turnover', sharpe) }} as random_same_turnover_sharpe
from selected
group by experiment, dataset, section, regime
order by
    experiment,
    dataset,
    case section when 'validation' then 1 when 'test' then 2 when 'live' then 3 else 4 end,
    section,
    case regime when 'ALL' then 0 when 'LOW_VOL' then 1 when 'TRENDING' then 2 when 'HIGH_VOL' then 3
        when 'CRISIS' then 4 else 5 end
