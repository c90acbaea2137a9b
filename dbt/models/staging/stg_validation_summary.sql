-- One row per experiment and dataset (partition = experiment.dataset): verdict and significance
-- evidence for its selected checkpoint, and the dataset's bars per year the Sharpe ratios use. A NaN probability becomes NULL (missing evidence), so it cannot sort first
-- (DuckDB orders NaN above every number).
select
    coalesce(experiment, partition_key) as experiment,
    dataset,
    checkpoint_step,
    {{ summary_columns() }},
    {% set cols = adapter.get_columns_in_relation(source('lake', 'validation_summary')) | map(attribute='name') | list -%}
    {% if 'bars_per_year' in cols %}bars_per_year{% else %}cast(null as double) as bars_per_year{% endif %},
    {% if 'checkpoint_path' in cols %}checkpoint_path{% else %}cast(null as varchar) as checkpoint_path{% endif %}
from {{ source('lake', 'validation_summary') }}
