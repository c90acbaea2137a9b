-- One row per dataset: bar count and range from raw_ohlcv, split version and coverage from the splits.
with bars as (
    select
        partition_key as dataset,
        count(*) as n_bars,
        count(distinct "timestamp") as n_distinct_timestamps,
        min("timestamp") as first_bar,
        max("timestamp") as last_bar
    from {{ source('lake', 'raw_ohlcv') }}
    group by partition_key
),

splits as (
    select
        dataset,
        count(*) as n_splits,
        sum(n_rows) as n_split_rows,
        max(embargo_bars) as embargo_bars,
        count(distinct split_version) as n_split_versions,
        min(split_version) as split_version
    from {{ ref('stg_dataset_splits') }}
    group by dataset
)

select
    coalesce(b.dataset, s.dataset) as dataset,
    regexp_extract(coalesce(b.dataset, s.dataset), '^(.*)_([^_]+)$', 1) as symbol,
    regexp_extract(coalesce(b.dataset, s.dataset), '^(.*)_([^_]+)$', 2) as timeframe,
    coalesce(b.n_bars, 0) as n_bars,
    b.n_distinct_timestamps,
    b.first_bar,
    b.last_bar,
    coalesce(s.n_splits, 0) as n_splits,
    s.n_split_rows,
    s.embargo_bars,
    s.n_split_versions,
    s.split_version
from bars as b
full outer join splits as s on b.dataset = s.dataset
