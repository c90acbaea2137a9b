{#
  The column `name` of `relation` if the relation has it, else a typed NULL. Lets staging models read
  contract columns that a writer may not have (yet), e.g. `dataset_key` on the per-experiment tables:
  the lake reserves `dataset` for the partition key, which there holds the experiment name.
#}
{% macro optional_column(relation, name, type='varchar') -%}
    {%- set found = false -%}
    {%- if execute -%}
        {%- set cols = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
        {%- set found = (name | lower) in cols -%}
    {%- endif -%}
    {%- if found -%}cast({{ adapter.quote(name) }} as {{ type }}){%- else -%}cast(null as {{ type }}){%- endif -%}
{%- endmacro %}
