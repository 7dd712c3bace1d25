{% macro generate_schema_name(custom_schema_name, node) -%}
  {#- Staging views and marts all live in the target (gold) schema; no `<target>_<custom>` names. -#}
  {{ target.schema }}
{%- endmacro %}
