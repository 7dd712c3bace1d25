{% test between(model, column_name, min_value, max_value) %}
-- Rows whose value lies outside [min_value, max_value] (NULL passes; not_null says otherwise).
select *
from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}
