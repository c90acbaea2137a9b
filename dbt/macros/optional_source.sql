{#
  A lake table that exists only after its first materialization (training, validation, strategy,
  pair and exit evaluations): the source when the lake has it, else an empty relation with the same
  typed columns, so the marts build on a lake where nobody has trained, validated, run `himari
  evaluate`, `himari pairs` or an exit experiment yet. At parse time it is
  the source, so the lineage (and the Dagster asset it belongs to) is recorded either way.
#}
{% macro optional_source(source_name, table_name, columns) -%}
    {%- set src = source(source_name, table_name) -%}
    {%- if execute -%}
        {%- set rel = adapter.get_relation(database=src.database, schema=src.schema, identifier=src.identifier) -%}
    {%- else -%}
        {%- set rel = src -%}
    {%- endif -%}
    {%- if rel is not none -%}
        {{ src }}
    {%- else -%}
        (select {% for name, type in columns.items() %}cast(null as {{ type }}) as {{ name }}{% if not loop.last %}, {% endif %}{% endfor %} where false)
    {%- endif -%}
{%- endmacro %}
