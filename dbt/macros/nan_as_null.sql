{# A NaN probability or number becomes NULL (missing evidence), so it cannot sort first: DuckDB orders
   NaN above every number. #}
{% macro nan_as_null(column) -%}
    case when isnan({{ column }}) then null else {{ column }} end as {{ column }}
{%- endmacro %}
