-- Orders as they are now in PostgreSQL (deleted ones left out); silver carries the source's types.
select
    order_id,
    customer_id,
    status,
    total,
    created_at,
    cast(created_at as date) as order_date
from {{ source('silver', 'orders') }}
where not _cdc_deleted
