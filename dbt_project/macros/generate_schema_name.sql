{% macro generate_schema_name(custom_schema_name, node) -%}
  {#- Staging, intermediate and mart models all live in the target (gold) schema; failing test rows
      (store_failures) go to `<gold>_dbt_test__audit`. -#}
  {%- if custom_schema_name -%}{{ target.schema }}_{{ custom_schema_name | trim }}{%- else -%}{{ target.schema }}{%- endif -%}
{%- endmacro %}
