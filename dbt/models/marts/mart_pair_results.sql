-- One row per pair, ranked by the deflated Sharpe ratio of its judged strategy, with log 004's
-- numbers (final value, cumulative return, Sharpe, average turnover, max drawdown, annualized
-- return) on the test segment and the live year next to both legs' buy-and-hold.
with summary as (
    select * from {{ ref('stg_pair_summary') }}
),

metrics as (
    select * from {{ ref('stg_pair_metrics') }}
),

subject as (
    select * from metrics where is_subject
),

buy_and_hold as (
    select * from metrics where strategy = 'buy_and_hold_legs'
)

select
    row_number() over (order by s.dsr desc nulls last, s.pair) as dsr_rank,
    s.pair,
    s.leg_y,
    s.leg_x,
    s.subject,
    s.verdict,
    s.verdict = 'PASS' as promotable,
    s.reasons,
    s.dsr,
    s.permutation_p,
    s.validation_sharpe,
    t.final_value as test_final_value,
    t.cumulative_return as test_cumulative_return,
    t.sharpe as test_sharpe,
    t.turnover_per_bar as test_avg_turnover,
    t.max_drawdown as test_max_drawdown,
    t.annual_return as test_annual_return,
    l.final_value as live_final_value,
    l.cumulative_return as live_cumulative_return,
    l.sharpe as live_sharpe,
    l.turnover_per_bar as live_avg_turnover,
    l.max_drawdown as live_max_drawdown,
    l.annual_return as live_annual_return,
    b.sharpe as live_buy_and_hold_sharpe,
    b.cumulative_return as live_buy_and_hold_return,
    s.hedge,
    s.leverage,
    s.transaction_cost,
    s.borrow_rate_annual,
    s.bars_per_year,
    s.dropped_bars,
    s.report_path
from summary as s
left join subject as t on t.pair = s.pair and t.segment = 'test'
left join subject as l on l.pair = s.pair and l.segment = 'live'
left join buy_and_hold as b on b.pair = s.pair and b.segment = 'live'
order by dsr_rank
