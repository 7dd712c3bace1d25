{% macro ensure_lake_schema(schema_name) %}
  {#- Create the schema with its location on the lake: s3://<bucket>/<schema>. -#}
  {%- set bucket = env_var('LAKEHOUSE_BUCKET', 'lakehouse') -%}
  create schema if not exists {{ target.database }}.{{ schema_name }}
  with (location = 's3://{{ bucket }}/{{ schema_name }}')
{% endmacro %}
