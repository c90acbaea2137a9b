-- One row per experiment and dataset (partition = experiment.dataset): verdict and significance
-- evidence for its selected checkpoint, and the dataset's bars per year the Sharpe ratios use. A NaN
-- probability becomes NULL (missing evidence), so it cannot sort first (DuckDB orders NaN above every
-- number). Only a validation run writes the table: on a lake without one it is empty (optional_source).
-- Summaries written before `bars_per_year` and `checkpoint_path` were recorded lack those columns.
{%- set columns = {
    'partition_key': 'varchar', 'experiment': 'varchar', 'dataset': 'varchar', 'checkpoint_step': 'bigint',
    'verdict': 'varchar', 'reasons': 'varchar', 'warnings': 'varchar', 'n_checkpoints': 'bigint',
    'val_sharpe': 'double', 'test_sharpe': 'double', 'live_sharpe': 'double', 'live_bh_sharpe': 'double',
    'live_max_drawdown': 'double', 'live_final_value': 'double', 'psr': 'double', 'dsr': 'double',
    'pbo': 'double', 'perm_pvalue': 'double', 'leak_flags': 'bigint', 'report_path': 'varchar',
    'bars_per_year': 'double', 'checkpoint_path': 'varchar'
} %}
{%- set src = source('lake', 'validation_summary') %}
{%- set rel = adapter.get_relation(database=src.database, schema=src.schema, identifier=src.identifier) if execute else none %}
{%- set cols = adapter.get_columns_in_relation(rel) | map(attribute='name') | list if rel is not none else columns.keys() | list %}
select
    coalesce(experiment, partition_key) as experiment,
    dataset,
    checkpoint_step,
    {{ summary_columns() }},
    {% if 'bars_per_year' in cols %}bars_per_year{% else %}cast(null as double) as bars_per_year{% endif %},
    {% if 'checkpoint_path' in cols %}checkpoint_path{% else %}cast(null as varchar) as checkpoint_path{% endif %}
from {{ optional_source('lake', 'validation_summary', columns) }}
