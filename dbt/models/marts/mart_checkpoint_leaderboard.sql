-- One row per experiment and dataset, ranked by the deflated Sharpe ratio of its selected checkpoint: the DSR
-- deflates the Sharpe for the number of checkpoints tried, so an experiment that found a high raw
-- Sharpe by trying many checkpoints does not outrank one with honest evidence. The raw best
-- validation Sharpe is kept next to it, for contrast only.
-- Strategies judged by `himari evaluate` (experiment `strategy:NAME`) rank in the same list, without
-- checkpoint columns: their DSR deflates for the variants their authors said they tried.
with summary as (
    select * from {{ ref('stg_validation_summary') }}
    union all by name
    select * from {{ ref('stg_strategy_summary') }}
),

checkpoint_stats as (
    select
        experiment,
        dataset,
        count(*) as n_checkpoints_saved,
        max(val_greedy_sharpe) as best_raw_val_sharpe,
        max(case when raw_val_sharpe_rank = 1 then step end) as best_raw_val_step,
        sum(case when collapsed then 1 else 0 end) as n_collapsed_checkpoints
    from {{ ref('stg_checkpoints') }}
    group by experiment, dataset
),

joined as (
    select
        s.experiment,
        s.dataset,
        s.checkpoint_step as selected_step,
        c.checkpoint_path as selected_checkpoint_path,
        c.weights_sha256 as selected_weights_sha256,
        c.split_version,
        c.config_hash,
        c.collapsed as selected_collapsed,
        s.verdict,
        s.verdict = 'PASS' as promotable,
        s.reasons,
        s.warnings,
        s.dsr,
        s.psr,
        s.pbo,
        s.perm_pvalue,
        s.val_sharpe,
        s.test_sharpe,
        s.live_sharpe,
        s.live_bh_sharpe,
        s.live_sharpe - s.live_bh_sharpe as live_sharpe_vs_bh,
        s.live_max_drawdown,
        s.live_final_value,
        s.leak_flags,
        s.n_checkpoints as n_checkpoints_evaluated,
        cs.n_checkpoints_saved,
        cs.n_collapsed_checkpoints,
        cs.best_raw_val_sharpe,
        cs.best_raw_val_step,
        cs.best_raw_val_sharpe - s.val_sharpe as raw_sharpe_minus_selected,
        s.report_path,
        s.bars_per_year
    from summary as s
    left join {{ ref('stg_checkpoints') }} as c
        on s.experiment = c.experiment and s.dataset = c.dataset
        -- the selected checkpoint by its path (a seed population has a checkpoint per seed at each
        -- step); summaries written before the path was recorded match by step
        and (s.checkpoint_path = c.checkpoint_path or (s.checkpoint_path is null and s.checkpoint_step = c.step))
    left join checkpoint_stats as cs on s.experiment = cs.experiment and s.dataset = cs.dataset
)

select
    row_number() over (
        order by dsr desc nulls last, psr desc nulls last, experiment, dataset
    ) as dsr_rank,
    row_number() over (
        order by best_raw_val_sharpe desc nulls last, experiment, dataset
    ) as raw_sharpe_rank,
    *
from joined
order by dsr_rank
