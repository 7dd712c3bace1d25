-- Orders as they are now in PostgreSQL (deleted ones left out), typed.
select
    cast(order_id as bigint) as order_id,
    cast(customer_id as bigint) as customer_id,
    status,
    cast(total as decimal(12, 2)) as total,
    from_iso8601_timestamp(created_at) as created_at,
    cast(from_iso8601_timestamp(created_at) as date) as order_date
from {{ source('silver', 'orders') }}
where not _cdc_deleted
