-- One row per dataset: bars and their range, and for each split its size, time range and regime shares.
{% set splits = ['train', 'val', 'test', 'live'] %}
{% set regimes = ['low_vol', 'trending', 'high_vol', 'crisis'] %}
with splits as (
    select * from {{ ref('stg_dataset_splits') }}
),

experiments as (
    select dataset, count(distinct experiment) as n_experiments
    from {{ ref('stg_checkpoints') }}
    group by dataset
)

select
    d.dataset,
    d.symbol,
    d.timeframe,
    d.n_bars,
    d.first_bar,
    d.last_bar,
    d.split_version,
    d.embargo_bars,
    d.n_split_rows,
    d.n_split_rows / nullif(d.n_bars, 0) as split_coverage,
    coalesce(e.n_experiments, 0) as n_experiments,
    {%- for s in splits %}
    max(case when sp.split = '{{ s }}' then sp.n_rows end) as {{ s }}_rows,
    max(case when sp.split = '{{ s }}' then sp.first_timestamp end) as {{ s }}_first,
    max(case when sp.split = '{{ s }}' then sp.last_timestamp end) as {{ s }}_last,
    {%- for r in regimes %}
    max(case when sp.split = '{{ s }}' then sp.share_{{ r }} end) as {{ s }}_share_{{ r }},
    {%- endfor %}
    {%- endfor %}
    count(sp.split) as n_splits
from {{ ref('stg_datasets') }} as d
left join splits as sp on d.dataset = sp.dataset
left join experiments as e on d.dataset = e.dataset
group by all
order by d.dataset
