{% macro partition_window(column) -%}
  {#- The Dagster partition window as a filter: [min_date, max_date), from the dbt vars Dagster passes
      (`--vars '{"min_date": ..., "max_date": ...}'`); without them, every day. -#}
  {{ column }} >= date '{{ var("min_date", "1970-01-01") }}' and {{ column }} < date '{{ var("max_date", "9999-12-31") }}'
{%- endmacro %}

{% macro delete_partition_window(column) -%}
  {#- Pre-hook of the daily incremental models: drop the window's days before inserting them again,
      so re-running a partition replaces exactly that partition (an empty day stays empty). -#}
  {%- if is_incremental() -%}
    delete from {{ this }} where {{ partition_window(column) }}
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}
