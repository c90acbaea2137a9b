-- Every saved checkpoint (partition = experiment.dataset). `dataset` falls back to the dataset whose
-- split version the checkpoint names (split versions are content hashes of one dataset's arrays).
-- Only a training run writes the table: on a lake without one it is empty (optional_source).
-- `seed` is the training seed of a seed population's rows (each seed has a checkpoint at every
-- step); null for single-seed runs, and on a lake where no population was trained (no such column).
with checkpoints as (
    select * from (select cast(null as bigint) as seed where false)
    union all by name
    select * from {{ optional_source('lake', 'checkpoints', {
        'partition_key': 'varchar', 'experiment': 'varchar', 'dataset': 'varchar', 'config_hash': 'varchar',
        'split_version': 'varchar', 'step': 'bigint', 'checkpoint_path': 'varchar', 'is_best': 'boolean',
        'collapsed': 'boolean', 'val_greedy_sharpe': 'double', 'val_sampled_sharpe': 'double',
        'val_total_return': 'double', 'val_entropy': 'double', 'val_share_flat': 'double',
        'val_share_long': 'double', 'val_share_short': 'double', 'weights_sha256': 'varchar'
    }) }}
),

split_datasets as (
    select distinct split_version, dataset from {{ ref('stg_dataset_splits') }}
)

select
    coalesce(c.experiment, c.partition_key) as experiment,
    coalesce(c.dataset, d.dataset) as dataset,
    c.config_hash,
    c.split_version,
    c.seed,
    c.step,
    c.checkpoint_path,
    c.is_best,
    c.collapsed,
    c.val_greedy_sharpe,
    c.val_sampled_sharpe,
    c.val_total_return,
    c.val_entropy,
    c.val_share_flat,
    c.val_share_long,
    c.val_share_short,
    c.weights_sha256,
    row_number() over (
        partition by coalesce(c.experiment, c.partition_key), coalesce(c.dataset, d.dataset)
        order by c.val_greedy_sharpe desc nulls last, c.step
    ) as raw_val_sharpe_rank
from checkpoints as c
left join split_datasets as d on c.split_version = d.split_version
