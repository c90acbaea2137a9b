-- Validation numbers in long format (partition = experiment.dataset): one row per
-- (experiment, dataset, checkpoint, section, subject, regime, metric). Only a validation run writes
-- the table: on a lake without one it is empty (optional_source).
select
    coalesce(experiment, partition_key) as experiment,
    dataset,
    checkpoint_step,
    section,
    subject,
    regime,
    metric,
    value
from {{ optional_source('lake', 'validation_metrics', {
    'partition_key': 'varchar', 'experiment': 'varchar', 'dataset': 'varchar', 'checkpoint_step': 'bigint',
    'section': 'varchar', 'subject': 'varchar', 'regime': 'varchar', 'metric': 'varchar', 'value': 'double'
}) }}
