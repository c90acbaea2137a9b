{# Pivot one metric out of the long validation_metrics format: first non-null of `names`. #}
{% macro metric(subject, names) -%}
    max(case when subject = '{{ subject }}' and metric in (
        {%- for n in names %}'{{ n }}'{% if not loop.last %}, {% endif %}{% endfor -%}
    ) then value end)
{%- endmacro %}
