-- Validation numbers in long format (partition = experiment.dataset): one row per
-- (experiment, dataset, checkpoint, section, subject, regime, metric).
select
    coalesce(experiment, partition_key) as experiment,
    dataset,
    checkpoint_step,
    section,
    subject,
    regime,
    metric,
    value
from {{ source('lake', 'validation_metrics') }}
