-- One row per dataset and split, ordered train < val < test < live.
select
    partition_key as dataset,
    split,
    case split when 'train' then 1 when 'val' then 2 when 'test' then 3 when 'live' then 4 end as split_order,
    n_rows,
    first_timestamp,
    last_timestamp,
    embargo_bars,
    share_low_vol,
    share_trending,
    share_high_vol,
    share_crisis,
    split_version
from {{ source('lake', 'dataset_split_summary') }}
