-- Between consecutive non-empty splits at least `embargo_bars` raw bars are dropped (the embargo that
-- keeps feature warm-up and model context from reaching across a boundary).
with splits as (
    select
        *,
        lead(split) over w as next_split,
        lead(first_timestamp) over w as next_first_timestamp
    from {{ ref('stg_dataset_splits') }}
    where n_rows > 0
    window w as (partition by dataset order by split_order)
),

gaps as (
    select
        s.dataset,
        s.split,
        s.next_split,
        s.embargo_bars,
        (
            select count(*)
            from {{ source('lake', 'raw_ohlcv') }} as r
            where r.partition_key = s.dataset
              and r."timestamp" > s.last_timestamp
              and r."timestamp" < s.next_first_timestamp
        ) as bars_between
    from splits as s
    where s.next_split is not null
)

select * from gaps where bars_between < embargo_bars
