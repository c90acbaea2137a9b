{# Fails for every non-null value of `column_name` outside [min_value, max_value]. #}
{% test between(model, column_name, min_value, max_value) %}
select {{ column_name }} as value
from {{ model }}
where {{ column_name }} is not null
  and ({{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }} or isnan({{ column_name }}))
{% endtest %}
