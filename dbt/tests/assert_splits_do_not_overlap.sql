-- No split overlaps another in time, and they come in the order train < val < test < live: for every
-- pair of non-empty splits of a dataset, the later one starts strictly after the earlier one ends.
select a.dataset, a.split as earlier, b.split as later, a.last_timestamp as earlier_ends, b.first_timestamp as later_starts
from {{ ref('stg_dataset_splits') }} as a
inner join {{ ref('stg_dataset_splits') }} as b
    on a.dataset = b.dataset and a.split_order < b.split_order
where a.n_rows > 0
  and b.n_rows > 0
  and b.first_timestamp <= a.last_timestamp
