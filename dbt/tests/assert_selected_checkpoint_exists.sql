-- Every validation summary names a checkpoint that exists in the checkpoints table, so the
-- leaderboard's weights and split version trace back to a saved checkpoint.
select s.experiment, s.dataset, s.checkpoint_step
from {{ ref('stg_validation_summary') }} as s
left join {{ ref('stg_checkpoints') }} as c
    on s.experiment = c.experiment and s.dataset = c.dataset and s.checkpoint_step = c.step
where c.step is null
